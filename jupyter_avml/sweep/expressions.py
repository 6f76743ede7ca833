"""The spec's search expressions (section 9): one class per expression, which knows everything about itself.

An expression is a small frozen object (``Distribution``). Whatever a sweep needs from an expression is a
method of its class, so a new expression is one class (plus its user-facing function below):

* ``signature`` (its argument names, in order: arity checks, keyword arguments and ``str()``), registered
  under ``kind`` by ``Distribution.__init_subclass__`` so that ``parse_expression`` finds it;
* ``sample(rng)`` (random sampling) and ``representative()`` (the value the configuration is checked with
  before the sweep starts);
* ``finite_values()`` / ``bounds()`` / ``gives_integers()`` / ``contains(value)``: what it can produce, used to
  check a search range against the parameter table before the sweep starts and by the sampler contract;
* ``grid_values()`` (grid sampling: only ``choice`` has them);
* ``bayesian`` and ``suggest`` / ``optuna_distribution`` / ``to_optuna`` / ``from_optuna`` (Bayesian
  sampling: only ``choice``, ``uniform`` and ``quniform``, the spec's rule).

Nothing here imports optuna at import time: the Bayesian methods import it when called.

Why one module of about 700 lines: it is a catalogue of ten small classes built alike, read one class at a
time; split up, what an expression does would again be scattered over several files (issue 11, item 11).
"""

from __future__ import annotations

import copy
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import numpy as np

from jupyter_avml.errors import ConfigError

__all__ = [
    "Distribution", "Choice", "RandInt", "Uniform", "QUniform", "LogUniform", "QLogUniform", "Normal",
    "QNormal", "LogNormal", "QLogNormal", "LogUniformBoundsWarning", "choice", "randint", "uniform",
    "quniform", "loguniform", "qloguniform", "normal", "qnormal", "lognormal", "qlognormal", "quantize",
    "EXPRESSION_CLASSES",
]

#: Every expression class by its name (``"uniform"`` -> ``Uniform``), filled as the classes are defined.
EXPRESSION_CLASSES: dict[str, type[Distribution]] = {}


class LogUniformBoundsWarning(UserWarning):
    """``loguniform``/``qloguniform`` bounds that look like values although they are exponents."""


# --------------------------------------------------------------------------------------------------------
class Distribution(ABC):
    """One search expression. Subclasses are frozen dataclasses.

    ``kind`` is the expression's name (``"uniform"``...); ``str()`` and ``repr()`` give back the expression
    text, which ``parse_expression`` reads back to an equal object.
    """

    kind: ClassVar[str]
    #: The argument names, in order.
    signature: ClassVar[tuple[str, ...]] = ()
    #: Whether Bayesian sampling takes this expression (spec section 9: choice, uniform, quniform).
    bayesian: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            EXPRESSION_CLASSES[cls.kind] = cls

    # -- drawing --------------------------------------------------------------------------------------
    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """Draw one value (a plain Python value, never a numpy scalar)."""

    @abstractmethod
    def representative(self) -> Any:
        """A typical value (a choice's first value, the centre of a range): the configuration is validated
        with it before the sweep starts."""

    # -- what it can produce --------------------------------------------------------------------------
    def finite_values(self) -> tuple | None:
        """Every value it can produce when there are finitely many (``choice``, ``randint``), else None."""
        return None

    @abstractmethod
    def bounds(self) -> tuple[float, float]:
        """The smallest and largest value it can produce (``-inf``/``inf`` when unbounded)."""

    def gives_integers(self) -> bool | None:
        """True when every value is an integer, False when (almost) none is, None when some are."""
        return False

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this expression can produce (sampler contract checks)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        low, high = self.bounds()
        slack = 1e-9 * max(1.0, abs(low) if math.isfinite(low) else 0.0, abs(high) if math.isfinite(high) else 0.0)
        return low - slack <= value <= high + slack

    # -- grid and Bayesian sampling -------------------------------------------------------------------
    def grid_values(self, key: str) -> tuple:
        """The values a grid enumerates; only ``choice`` has them (spec section 9)."""
        raise ConfigError(f"grid sampling supports only choice(); {key} is {self}", field=key, value=str(self))

    def _not_bayesian(self, key: str) -> ConfigError:
        return ConfigError(f"bayesian sampling supports only choice(), uniform() and quniform(); {key} is {self}",
                           field=key, value=str(self))

    def suggest(self, otrial, name: str) -> Any:
        """Ask an Optuna trial for this parameter (under ``name``); returns Optuna's raw value."""
        raise self._not_bayesian(name)

    def optuna_distribution(self):
        """The Optuna distribution that ``suggest`` uses (to record a finished trial in a study)."""
        raise self._not_bayesian("this parameter")

    def to_optuna(self, value: Any) -> Any:
        """A value of this expression as Optuna stores it (the inverse of ``from_optuna``)."""
        return value

    def from_optuna(self, raw: Any) -> Any:
        """Optuna's raw value -> the configuration's plain value."""
        return raw

    # -- text -----------------------------------------------------------------------------------------
    def _args(self) -> tuple:
        return tuple(getattr(self, name) for name in self.signature)

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(repr(a) for a in self._args())})"

    __repr__ = __str__


# --------------------------------------------------------------------------------------------------------
def _number(kind: str, name: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{kind}(): {name} must be a finite number, got {value!r}", value=value)
    return value


def _check_bounds(kind: str, low: Any, high: Any) -> None:
    _number(kind, "low", low)
    _number(kind, "high", high)
    if low >= high:
        raise ConfigError(f"{kind}(): low must be less than high, got low={low!r}, high={high!r}",
                          value=(low, high))


def _check_q(kind: str, q: Any) -> None:
    _number(kind, "q", q)
    if q <= 0:
        raise ConfigError(f"{kind}(): q must be greater than 0, got {q!r}", value=q)


def _check_sigma(kind: str, mu: Any, sigma: Any) -> None:
    _number(kind, "mu", mu)
    _number(kind, "sigma", sigma)
    if sigma <= 0:
        raise ConfigError(f"{kind}(): sigma must be greater than 0, got {sigma!r}", value=sigma)


# exp() of anything larger overflows a float.
_MAX_EXPONENT = 709.0


def _check_exponent(kind: str, high: float) -> None:
    if high > _MAX_EXPONENT:
        raise ConfigError(f"{kind}(): high is an exponent and exp({high!r}) overflows; the bounds of {kind} are "
                          f"exponents (value = exp(uniform(low, high))), e.g. {kind}(-9.21, -2.303"
                          f"{', q' if kind.startswith('q') else ''}) for 1e-4 .. 0.1", value=high)


def quantize(value: float, q: float | int) -> float | int:
    """``round(value / q) * q`` (round half to even, like the spec's ``round``), without float residue.

    With an integer ``q`` the result is an ``int`` (``quniform(16, 128, 16)`` gives batch sizes, not
    ``32.0``); with a float ``q`` it is the float nearest to the decimal multiple (``0.3``, not
    ``0.30000000000000004``).
    """
    k = round(value / q)
    if isinstance(q, int):
        return int(k * q)
    return float(Decimal(repr(float(q))) * k)


def _sample_value(value: Any, rng: np.random.Generator) -> Any:
    if isinstance(value, Distribution):
        return value.sample(rng)
    return copy.deepcopy(value)


def _same(a: Any, b: Any) -> bool:
    """Equality that tells ``True`` from ``1`` and ``1.0`` from ``1`` (a choice keeps the values as written).

    Lists and tuples compare alike: a value read back from JSON (``state.json``) is a list.
    """
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and repr(a) == repr(b)


def _is_plain_categorical(values: tuple) -> bool:
    """Whether Optuna can store these choices as they are: JSON primitives, pairwise distinct, no NaN.

    ``True == 1`` in Python and Optuna finds a choice by equality, so repeated or colliding values (and
    lists, dicts, tuples) go through an index instead.
    """
    if not all(v is None or isinstance(v, (str, int, float, bool)) for v in values):
        return False
    if any(isinstance(v, float) and math.isnan(v) for v in values):
        return False
    return all(a != b for i, a in enumerate(values) for b in values[i + 1:])


# --------------------------------------------------------------------------------------------------------
class _Quantized:
    """What the ``q`` expressions share: their values are multiples of ``q``."""

    q: float

    def gives_integers(self) -> bool | None:
        return True if float(self.q).is_integer() else None

    def contains(self, value: Any) -> bool:
        if not super().contains(value):  # type: ignore[misc]
            return False
        k = value / self.q
        return abs(k - round(k)) < 1e-6


@dataclass(frozen=True, repr=False)
class Choice(Distribution):
    """``choice(*values)``: one of ``values``, each equally likely.

    Values are plain values, or (for a conditional space) dicts, each a sub-space with its own
    ``model_name``. A choice cannot hold other expressions. Bayesian sampling suggests it as a categorical
    (by index when the values are not distinct JSON primitives, e.g. lists, or ``True`` next to ``1``).
    """

    values: tuple
    kind: ClassVar[str] = "choice"
    bayesian: ClassVar[bool] = True

    def __post_init__(self):
        if not isinstance(self.values, tuple):
            object.__setattr__(self, "values", tuple(self.values))
        if not self.values:
            raise ConfigError("choice() needs at least one value")
        for value in self.values:
            if isinstance(value, Distribution):
                raise ConfigError(f"choice() values are plain values or sub-space dicts, got {value}", value=value)
        n_dicts = sum(isinstance(v, Mapping) for v in self.values)
        if 0 < n_dicts < len(self.values):
            raise ConfigError("choice() of sub-spaces must hold only dicts (one per sub-space), got "
                              f"{', '.join(repr(v) for v in self.values)}", value=self.values)

    @property
    def is_subspaces(self) -> bool:
        """True when the values are sub-space dicts (a conditional space)."""
        return isinstance(self.values[0], Mapping)

    def sample(self, rng: np.random.Generator) -> Any:
        value = self.values[int(rng.integers(len(self.values)))]
        if isinstance(value, Mapping):  # a sub-space: draw each of its parameters
            return {k: _sample_value(v, rng) for k, v in value.items()}
        return copy.deepcopy(value)

    def representative(self) -> Any:
        return copy.deepcopy(self.values[0])

    def finite_values(self) -> tuple | None:
        return self.values

    def bounds(self) -> tuple[float, float]:
        numbers = [v for v in self.values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return (min(numbers), max(numbers)) if numbers else (math.nan, math.nan)

    def gives_integers(self) -> bool | None:
        flags = {(isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
                 for v in self.values}
        return flags.pop() if len(flags) == 1 else None

    def contains(self, value: Any) -> bool:
        return any(_same(value, v) for v in self.values)

    def grid_values(self, key: str) -> tuple:
        return self.values

    def _plain(self) -> bool:
        return _is_plain_categorical(self.values)

    def _optuna_choices(self) -> list:
        return list(self.values) if self._plain() else list(range(len(self.values)))

    def suggest(self, otrial, name: str) -> Any:
        return otrial.suggest_categorical(name, self._optuna_choices())

    def optuna_distribution(self):
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(self._optuna_choices())

    def to_optuna(self, value: Any) -> Any:
        if self._plain():
            return value
        for index, candidate in enumerate(self.values):
            if _same(candidate, value):
                return index
        raise ValueError(f"{value!r} is not one of {self}")

    def from_optuna(self, raw: Any) -> Any:
        return copy.deepcopy(raw if self._plain() else self.values[int(raw)])

    def __str__(self) -> str:
        return f"choice({', '.join(repr(v) for v in self.values)})"

    __repr__ = __str__


@dataclass(frozen=True, repr=False)
class RandInt(Distribution):
    """``randint(upper)``: an integer in ``0 .. upper - 1``."""

    upper: int
    kind: ClassVar[str] = "randint"
    signature: ClassVar[tuple[str, ...]] = ("upper",)

    def __post_init__(self):
        upper = self.upper
        if isinstance(upper, float) and upper.is_integer():
            object.__setattr__(self, "upper", int(upper))
        if isinstance(self.upper, bool) or not isinstance(self.upper, int) or self.upper < 1:
            raise ConfigError(f"randint(): upper must be an integer >= 1, got {upper!r}", value=upper)

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(0, self.upper))

    def representative(self) -> int:
        return 0

    def finite_values(self) -> tuple | None:
        return tuple(range(self.upper)) if self.upper <= 1000 else None

    def bounds(self) -> tuple[float, float]:
        return 0, self.upper - 1

    def gives_integers(self) -> bool | None:
        return True

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < self.upper


@dataclass(frozen=True, repr=False)
class Uniform(Distribution):
    """``uniform(low, high)``: a float uniformly in ``[low, high]``."""

    low: float
    high: float
    kind: ClassVar[str] = "uniform"
    signature: ClassVar[tuple[str, ...]] = ("low", "high")
    bayesian: ClassVar[bool] = True

    def __post_init__(self):
        _check_bounds(self.kind, self.low, self.high)

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def representative(self) -> float:
        return (self.low + self.high) / 2

    def bounds(self) -> tuple[float, float]:
        return self.low, self.high

    def suggest(self, otrial, name: str) -> float:
        return otrial.suggest_float(name, float(self.low), float(self.high))

    def optuna_distribution(self):
        from optuna.distributions import FloatDistribution

        return FloatDistribution(float(self.low), float(self.high))

    def to_optuna(self, value: Any) -> float:
        return float(value)

    def from_optuna(self, raw: Any) -> float:
        return float(raw)


@dataclass(frozen=True, repr=False)
class QUniform(_Quantized, Distribution):
    """``quniform(low, high, q)``: ``round(uniform(low, high) / q) * q``.

    As in the spec, rounding can land up to ``q / 2`` outside ``[low, high]`` when a bound is not a
    multiple of ``q``. An integer ``q`` gives integers. Bayesian sampling takes the multiples of ``q`` inside
    ``[low, high]`` (``optuna_bounds``).
    """

    low: float
    high: float
    q: float
    kind: ClassVar[str] = "quniform"
    signature: ClassVar[tuple[str, ...]] = ("low", "high", "q")
    bayesian: ClassVar[bool] = True

    def __post_init__(self):
        _check_bounds(self.kind, self.low, self.high)
        _check_q(self.kind, self.q)

    def sample(self, rng: np.random.Generator) -> float | int:
        return quantize(float(rng.uniform(self.low, self.high)), self.q)

    def representative(self) -> float | int:
        return quantize((self.low + self.high) / 2, self.q)

    def bounds(self) -> tuple[float, float]:
        return quantize(self.low, self.q), quantize(self.high, self.q)

    def optuna_bounds(self) -> tuple[float, float]:
        """The multiples of ``q`` inside ``[low, high]``, as the bounds of Optuna's stepped float.

        Optuna takes values ``low + k * step`` and needs ``high - low`` divisible by ``step``. The spec's
        ``round(uniform(low, high) / q) * q`` gives multiples of ``q``; so the lower bound is moved up to the
        first multiple of ``q`` and the upper bound down to the last one. (Random sampling can round up to
        ``q / 2`` past a bound; the Bayesian sampler stays inside.) When no multiple of ``q`` lies inside,
        the one nearest the middle is the only value.
        """
        q = Decimal(repr(float(self.q)))
        low, high = Decimal(repr(float(self.low))), Decimal(repr(float(self.high)))
        k_low = math.ceil(low / q)
        k_high = math.floor(high / q)
        if k_low > k_high:
            k_low = k_high = round((low + high) / 2 / q)
        return float(k_low * q), float(k_high * q)

    def suggest(self, otrial, name: str) -> float:
        low, high = self.optuna_bounds()
        return otrial.suggest_float(name, low, high, step=float(self.q))

    def optuna_distribution(self):
        from optuna.distributions import FloatDistribution

        low, high = self.optuna_bounds()
        return FloatDistribution(low, high, step=float(self.q))

    def to_optuna(self, value: Any) -> float:
        return float(value)

    def from_optuna(self, raw: Any) -> float | int:
        return quantize(float(raw), self.q)


def _warn_if_bounds_look_like_values(dist: LogUniform | QLogUniform) -> None:
    low, high = dist.low, dist.high
    if not ((0 < low < high <= 1) or high > 20):
        return
    q = f", {dist.q!r}" if isinstance(dist, QLogUniform) else ""
    top = f"{math.exp(high):.5g}"  # high <= _MAX_EXPONENT was checked first
    if low > 0:
        fix = (f"for values between {low!r} and {high!r} write "
               f"{dist.kind}({math.log(low):.4g}, {math.log(high):.4g}{q})")
    else:
        fix = f"a {dist.kind} cannot reach {low!r}; use uniform({low!r}, {high!r}) for values in that range"
    warnings.warn(
        f"{dist}: the bounds of {dist.kind} are EXPONENTS (value = exp(uniform(low, high))), so this samples "
        f"values between {math.exp(low):.5g} and {top}; {fix}.",
        LogUniformBoundsWarning, stacklevel=5)


@dataclass(frozen=True, repr=False)
class LogUniform(Distribution):
    """``loguniform(low, high)`` = ``exp(uniform(low, high))``.

    **The bounds are EXPONENTS, not values** (spec section 9, as in the cloud system and hyperopt): for a
    learning rate between 1e-4 and 1e-1 write ``loguniform(-9.21, -2.303)`` (``ln(1e-4)``, ``ln(0.1)``);
    ``loguniform(0.0001, 0.1)`` would sample values between 1.0001 and 1.105. Bounds that look like values
    (both in (0, 1], or ``high > 20``) raise a ``LogUniformBoundsWarning`` saying what range the expression
    really gives and what to write instead.
    """

    low: float
    high: float
    kind: ClassVar[str] = "loguniform"
    signature: ClassVar[tuple[str, ...]] = ("low", "high")

    def __post_init__(self):
        _check_bounds(self.kind, self.low, self.high)
        _check_exponent(self.kind, self.high)
        _warn_if_bounds_look_like_values(self)

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(self.low, self.high)))

    def representative(self) -> float:
        return math.exp((self.low + self.high) / 2)

    def bounds(self) -> tuple[float, float]:
        return math.exp(self.low), math.exp(self.high)


@dataclass(frozen=True, repr=False)
class QLogUniform(_Quantized, Distribution):
    """``qloguniform(low, high, q)`` = ``round(exp(uniform(low, high)) / q) * q``.

    **The bounds are EXPONENTS** (see ``LogUniform``); the same warning applies.
    """

    low: float
    high: float
    q: float
    kind: ClassVar[str] = "qloguniform"
    signature: ClassVar[tuple[str, ...]] = ("low", "high", "q")

    def __post_init__(self):
        _check_bounds(self.kind, self.low, self.high)
        _check_q(self.kind, self.q)
        _check_exponent(self.kind, self.high)
        _warn_if_bounds_look_like_values(self)

    def sample(self, rng: np.random.Generator) -> float | int:
        return quantize(math.exp(rng.uniform(self.low, self.high)), self.q)

    def representative(self) -> float | int:
        return quantize(math.exp((self.low + self.high) / 2), self.q)

    def bounds(self) -> tuple[float, float]:
        return quantize(math.exp(self.low), self.q), quantize(math.exp(self.high), self.q)


@dataclass(frozen=True, repr=False)
class Normal(Distribution):
    """``normal(mu, sigma)``: a float from the normal distribution."""

    mu: float
    sigma: float
    kind: ClassVar[str] = "normal"
    signature: ClassVar[tuple[str, ...]] = ("mu", "sigma")

    def __post_init__(self):
        _check_sigma(self.kind, self.mu, self.sigma)

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.normal(self.mu, self.sigma))

    def representative(self) -> float:
        return self.mu

    def bounds(self) -> tuple[float, float]:
        return -math.inf, math.inf


@dataclass(frozen=True, repr=False)
class QNormal(_Quantized, Distribution):
    """``qnormal(mu, sigma, q)`` = ``round(normal(mu, sigma) / q) * q``."""

    mu: float
    sigma: float
    q: float
    kind: ClassVar[str] = "qnormal"
    signature: ClassVar[tuple[str, ...]] = ("mu", "sigma", "q")

    def __post_init__(self):
        _check_sigma(self.kind, self.mu, self.sigma)
        _check_q(self.kind, self.q)

    def sample(self, rng: np.random.Generator) -> float | int:
        return quantize(float(rng.normal(self.mu, self.sigma)), self.q)

    def representative(self) -> float | int:
        return quantize(self.mu, self.q)

    def bounds(self) -> tuple[float, float]:
        return -math.inf, math.inf


@dataclass(frozen=True, repr=False)
class LogNormal(Distribution):
    """``lognormal(mu, sigma)`` = ``exp(normal(mu, sigma))`` (``mu`` and ``sigma`` are on the log scale)."""

    mu: float
    sigma: float
    kind: ClassVar[str] = "lognormal"
    signature: ClassVar[tuple[str, ...]] = ("mu", "sigma")

    def __post_init__(self):
        _check_sigma(self.kind, self.mu, self.sigma)

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.normal(self.mu, self.sigma)))

    def representative(self) -> float:
        return math.exp(self.mu)

    def bounds(self) -> tuple[float, float]:
        return 0.0, math.inf


@dataclass(frozen=True, repr=False)
class QLogNormal(_Quantized, Distribution):
    """``qlognormal(mu, sigma, q)`` = ``round(exp(normal(mu, sigma)) / q) * q``."""

    mu: float
    sigma: float
    q: float
    kind: ClassVar[str] = "qlognormal"
    signature: ClassVar[tuple[str, ...]] = ("mu", "sigma", "q")

    def __post_init__(self):
        _check_sigma(self.kind, self.mu, self.sigma)
        _check_q(self.kind, self.q)

    def sample(self, rng: np.random.Generator) -> float | int:
        return quantize(math.exp(rng.normal(self.mu, self.sigma)), self.q)

    def representative(self) -> float | int:
        return quantize(math.exp(self.mu), self.q)

    def bounds(self) -> tuple[float, float]:
        return 0.0, math.inf


# --------------------------------------------------------------------------------------------------------
# The functions users write
# --------------------------------------------------------------------------------------------------------
def choice(*values: Any) -> Choice:
    """One of ``values``; ``choice([a, b])`` (one list argument) is the same as ``choice(a, b)``.

    Values may be dicts, each a sub-space with its own ``model_name`` (a conditional space).
    """
    if len(values) == 1 and isinstance(values[0], list):
        values = tuple(values[0])
    return Choice(tuple(values))


def randint(upper: int) -> RandInt:
    """An integer in ``0 .. upper - 1``."""
    return RandInt(upper)


def uniform(low: float, high: float) -> Uniform:
    """A float uniformly in ``[low, high]``."""
    return Uniform(low, high)


def quniform(low: float, high: float, q: float) -> QUniform:
    """``round(uniform(low, high) / q) * q``."""
    return QUniform(low, high, q)


def loguniform(low: float, high: float) -> LogUniform:
    """``exp(uniform(low, high))``: **low and high are EXPONENTS** (``loguniform(-9.21, -2.303)`` gives
    values between 1e-4 and 0.1)."""
    return LogUniform(low, high)


def qloguniform(low: float, high: float, q: float) -> QLogUniform:
    """``round(exp(uniform(low, high)) / q) * q``: **low and high are EXPONENTS**."""
    return QLogUniform(low, high, q)


def normal(mu: float, sigma: float) -> Normal:
    """A float from ``normal(mu, sigma)``."""
    return Normal(mu, sigma)


def qnormal(mu: float, sigma: float, q: float) -> QNormal:
    """``round(normal(mu, sigma) / q) * q``."""
    return QNormal(mu, sigma, q)


def lognormal(mu: float, sigma: float) -> LogNormal:
    """``exp(normal(mu, sigma))``."""
    return LogNormal(mu, sigma)


def qlognormal(mu: float, sigma: float, q: float) -> QLogNormal:
    """``round(exp(normal(mu, sigma)) / q) * q``."""
    return QLogNormal(mu, sigma, q)
