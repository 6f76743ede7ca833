"""Search spaces: the spec's hyperparameter-tuning expressions (section 9), from Python or from YAML text.

An expression is a small frozen object (``Distribution``) that knows how to draw a value and how to write
itself back as the text the user would type::

    >>> from jupyter_avml.sweep.space import choice, parse_expression, uniform
    >>> uniform(0.001, 0.01)
    uniform(0.001, 0.01)
    >>> parse_expression("choice('sgd', 'adam')") == choice("sgd", "adam")
    True

``SearchSpace.from_config`` accepts every shape the spec and the cloud SDK use and normalises them to a list
of flat sub-spaces (one unless the space is conditional). Values that are not expressions stay fixed.

Nothing here imports optuna: the Bayesian sampler (``sampling.py``) translates expressions when it needs to.
"""

from __future__ import annotations

import ast
import copy
import difflib
import itertools
import math
import re
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Iterator, Mapping

import numpy as np

from jupyter_avml.errors import ConfigError

__all__ = [
    "Distribution", "Choice", "RandInt", "Uniform", "QUniform", "LogUniform", "QLogUniform", "Normal",
    "QNormal", "LogNormal", "QLogNormal", "LogUniformBoundsWarning", "choice", "randint", "uniform",
    "quniform", "loguniform", "qloguniform", "normal", "qnormal", "lognormal", "qlognormal",
    "parse_expression", "SearchSpace", "MAX_GRID_SIZE",
]

#: Grids larger than this are refused rather than enumerated (``iterations`` is at most 1000 anyway).
MAX_GRID_SIZE = 100_000


class LogUniformBoundsWarning(UserWarning):
    """``loguniform``/``qloguniform`` bounds that look like values although they are exponents."""


# --------------------------------------------------------------------------------------------------------
# Distributions
# --------------------------------------------------------------------------------------------------------
class Distribution(ABC):
    """One search expression. Subclasses are frozen dataclasses.

    ``kind`` is the expression's name (``"uniform"``...), ``str()`` and ``repr()`` give back the expression
    text, which ``parse_expression`` reads back to an equal object.
    """

    kind: ClassVar[str]

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """Draw one value (a plain Python value, never a numpy scalar)."""

    def _args(self) -> tuple:
        return tuple(getattr(self, name) for name in _SIGNATURES[self.kind])

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(repr(a) for a in self._args())})"

    __repr__ = __str__


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


@dataclass(frozen=True, repr=False)
class Choice(Distribution):
    """``choice(*values)``: one of ``values``, each equally likely.

    Values are plain values, or (for a conditional space) dicts, each a sub-space with its own
    ``model_name``. A choice cannot hold other expressions.
    """

    values: tuple
    kind: ClassVar[str] = "choice"

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

    def __str__(self) -> str:
        return f"choice({', '.join(repr(v) for v in self.values)})"

    __repr__ = __str__


@dataclass(frozen=True, repr=False)
class RandInt(Distribution):
    """``randint(upper)``: an integer in ``0 .. upper - 1``."""

    upper: int
    kind: ClassVar[str] = "randint"

    def __post_init__(self):
        upper = self.upper
        if isinstance(upper, float) and upper.is_integer():
            object.__setattr__(self, "upper", int(upper))
        if isinstance(self.upper, bool) or not isinstance(self.upper, int) or self.upper < 1:
            raise ConfigError(f"randint(): upper must be an integer >= 1, got {upper!r}", value=upper)

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(0, self.upper))


@dataclass(frozen=True, repr=False)
class Uniform(Distribution):
    """``uniform(low, high)``: a float uniformly in ``[low, high]``."""

    low: float
    high: float
    kind: ClassVar[str] = "uniform"

    def __post_init__(self):
        _check_bounds(self.kind, self.low, self.high)

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True, repr=False)
class QUniform(Distribution):
    """``quniform(low, high, q)``: ``round(uniform(low, high) / q) * q``.

    As in the spec, rounding can land up to ``q / 2`` outside ``[low, high]`` when a bound is not a
    multiple of ``q``. An integer ``q`` gives integers.
    """

    low: float
    high: float
    q: float
    kind: ClassVar[str] = "quniform"

    def __post_init__(self):
        _check_bounds(self.kind, self.low, self.high)
        _check_q(self.kind, self.q)

    def sample(self, rng: np.random.Generator) -> float | int:
        return quantize(float(rng.uniform(self.low, self.high)), self.q)


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

    def __post_init__(self):
        _check_bounds(self.kind, self.low, self.high)
        _check_exponent(self.kind, self.high)
        _warn_if_bounds_look_like_values(self)

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(self.low, self.high)))


@dataclass(frozen=True, repr=False)
class QLogUniform(Distribution):
    """``qloguniform(low, high, q)`` = ``round(exp(uniform(low, high)) / q) * q``.

    **The bounds are EXPONENTS** (see ``LogUniform``); the same warning applies.
    """

    low: float
    high: float
    q: float
    kind: ClassVar[str] = "qloguniform"

    def __post_init__(self):
        _check_bounds(self.kind, self.low, self.high)
        _check_q(self.kind, self.q)
        _check_exponent(self.kind, self.high)
        _warn_if_bounds_look_like_values(self)

    def sample(self, rng: np.random.Generator) -> float | int:
        return quantize(math.exp(rng.uniform(self.low, self.high)), self.q)


@dataclass(frozen=True, repr=False)
class Normal(Distribution):
    """``normal(mu, sigma)``: a float from the normal distribution."""

    mu: float
    sigma: float
    kind: ClassVar[str] = "normal"

    def __post_init__(self):
        _check_sigma(self.kind, self.mu, self.sigma)

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.normal(self.mu, self.sigma))


@dataclass(frozen=True, repr=False)
class QNormal(Distribution):
    """``qnormal(mu, sigma, q)`` = ``round(normal(mu, sigma) / q) * q``."""

    mu: float
    sigma: float
    q: float
    kind: ClassVar[str] = "qnormal"

    def __post_init__(self):
        _check_sigma(self.kind, self.mu, self.sigma)
        _check_q(self.kind, self.q)

    def sample(self, rng: np.random.Generator) -> float | int:
        return quantize(float(rng.normal(self.mu, self.sigma)), self.q)


@dataclass(frozen=True, repr=False)
class LogNormal(Distribution):
    """``lognormal(mu, sigma)`` = ``exp(normal(mu, sigma))`` (``mu`` and ``sigma`` are on the log scale)."""

    mu: float
    sigma: float
    kind: ClassVar[str] = "lognormal"

    def __post_init__(self):
        _check_sigma(self.kind, self.mu, self.sigma)

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.normal(self.mu, self.sigma)))


@dataclass(frozen=True, repr=False)
class QLogNormal(Distribution):
    """``qlognormal(mu, sigma, q)`` = ``round(exp(normal(mu, sigma)) / q) * q``."""

    mu: float
    sigma: float
    q: float
    kind: ClassVar[str] = "qlognormal"

    def __post_init__(self):
        _check_sigma(self.kind, self.mu, self.sigma)
        _check_q(self.kind, self.q)

    def sample(self, rng: np.random.Generator) -> float | int:
        return quantize(math.exp(rng.normal(self.mu, self.sigma)), self.q)


# The argument names of each expression, in order: arity checks, keyword arguments and str().
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "randint": ("upper",),
    "uniform": ("low", "high"), "quniform": ("low", "high", "q"),
    "loguniform": ("low", "high"), "qloguniform": ("low", "high", "q"),
    "normal": ("mu", "sigma"), "qnormal": ("mu", "sigma", "q"),
    "lognormal": ("mu", "sigma"), "qlognormal": ("mu", "sigma", "q"),
}
_CLASSES: dict[str, type[Distribution]] = {cls.kind: cls for cls in (
    Choice, RandInt, Uniform, QUniform, LogUniform, QLogUniform, Normal, QNormal, LogNormal, QLogNormal)}
EXPRESSIONS = tuple(_CLASSES)


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


# --------------------------------------------------------------------------------------------------------
# Reading expression text
# --------------------------------------------------------------------------------------------------------
# Text that starts like a call is an attempt at an expression: it parses, or it is an error (never a value).
_CALL_RE = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_.]*\s*\(")


def parse_expression(text: Any, *, key: str | None = None, source: str | None = None,
                     line: int | None = None) -> Distribution | None:
    """Read ``"uniform(0.001, 0.01)"``, ``"choice('a', 'b')"``... into a ``Distribution``.

    Arguments are Python literals (numbers, strings, lists, dicts) read with ``ast.literal_eval``; nested
    expressions are allowed inside a ``choice`` of sub-space dicts. Nothing is ever evaluated.

    Returns ``None`` for text that is not an expression (a plain value such as ``"sgd"`` or ``"(3, 2)"``)
    and for anything that is not a string.

    Raises
    ------
    ConfigError
        For text shaped like a call that is not a valid expression: an unknown name (with a "did you mean"),
        a wrong number of arguments, arguments that are not literals, or values out of range (``low >=
        high``, ``q <= 0``, ``sigma <= 0``, ``randint`` upper < 1). The message names ``key``.
    """
    if not isinstance(text, str) or not _CALL_RE.match(text):
        return None
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise _keyed(ConfigError(f"cannot read search expression {text.strip()!r}: {exc.msg}", value=text),
                     key, source, line) from None
    try:
        return _build(tree.body, text.strip())
    except ConfigError as exc:
        raise _keyed(exc, key, source, line) from None


def _keyed(exc: ConfigError, key: str | None, source: str | None, line: int | None) -> ConfigError:
    prefix = f"{key}: " if key else ""
    return ConfigError(prefix + exc.message, field=key or exc.field, value=exc.value, source=source, line=line)


def _build(node: ast.AST, text: str) -> Any:
    """Turn an AST into values: calls to known expressions become distributions, the rest must be literals."""
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise ConfigError(f"{ast.unparse(node.func)}() is not a search expression; expressions are "
                              f"{', '.join(EXPRESSIONS)} (in {text!r})", value=text)
        name = node.func.id
        if name not in _CLASSES:
            close = difflib.get_close_matches(name.lower(), EXPRESSIONS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}()?" if close else f"; expressions are {', '.join(EXPRESSIONS)}"
            raise ConfigError(f"unknown search expression {name}(){hint} (in {text!r})", value=text)
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise ConfigError(f"{name}() does not take *arguments (in {text!r})", value=text)
        args = [_build(arg, text) for arg in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise ConfigError(f"{name}() does not take **arguments (in {text!r})", value=text)
            kwargs[kw.arg] = _build(kw.value, text)
        return _call(name, args, kwargs, text)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ConfigError(f"** inside a dict is not allowed in a search expression (in {text!r})", value=text)
        return {_build(k, text): _build(v, text) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.List):
        return [_build(e, text) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_build(e, text) for e in node.elts)
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ConfigError(f"{ast.unparse(node)!r} is not a literal value: arguments of search expressions are "
                          f"numbers, strings, lists or dicts (in {text!r})", value=text) from None


def _call(name: str, args: list, kwargs: dict, text: str) -> Distribution:
    if name == "choice":
        if kwargs:
            raise ConfigError(f"choice() takes values only, not keyword arguments (in {text!r})", value=text)
        return choice(*args)
    names = _SIGNATURES[name]
    unknown = [k for k in kwargs if k not in names]
    if unknown:
        raise ConfigError(f"{name}() has no argument {unknown[0]!r}; its arguments are ({', '.join(names)}) "
                          f"(in {text!r})", value=text)
    bound = dict(zip(names, args))
    for k, v in kwargs.items():
        if k in bound:
            raise ConfigError(f"{name}() got {k} twice (in {text!r})", value=text)
        bound[k] = v
    if len(args) > len(names) or len(bound) != len(names):
        given = len(args) + len(kwargs)
        raise ConfigError(f"{name}() takes {len(names)} argument{'s' if len(names) > 1 else ''} "
                          f"({', '.join(names)}), got {given} (in {text!r})", value=text)
    return _CLASSES[name](**bound)


# --------------------------------------------------------------------------------------------------------
# Search spaces
# --------------------------------------------------------------------------------------------------------
class SearchSpace:
    """A search space normalised to flat sub-spaces.

    ``subspaces`` is a list of ``{parameter: Distribution or fixed value}`` dicts: one dict for an ordinary
    space, several for a conditional space (one per sub-space, each usually with its own ``model_name``).
    No ``Choice`` of sub-spaces remains inside them. Build one with ``from_config``.
    """

    def __init__(self, subspaces: list[dict[str, Any]]):
        if not subspaces:
            raise ConfigError("search_space has no sub-space", field="search_space")
        self.subspaces = [dict(s) for s in subspaces]

    # -- building -------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, search_space: Any, *, source: str | None = None,
                    lines: Mapping[str, int] | None = None) -> SearchSpace:
        """Normalise every accepted shape to ``subspaces``.

        Accepted shapes:

        - a mapping ``{parameter: expression}``, where an expression is a ``Distribution``, its text
          (``"uniform(0.001, 0.01)"``) or a fixed value (kept as is);
        - a list of such mappings: a conditional space, one mapping per sub-space (the cloud SDK's list of
          ``ImageObjectDetectionSearchSpace``);
        - a mapping with a value ``choice({...}, {...})`` of sub-space dicts (the older cloud SDK's
          ``{'model': choice({'model_name': choice('yolov5'), ...}, {...})}``): each dict becomes a
          sub-space, merged with the mapping's other keys (shared by every sub-space). Several such keys
          give every combination; a parameter may not be both shared and inside a sub-space.

        ``lines`` maps parameter names (or ``"search_space"``) to line numbers, for messages.
        """
        if isinstance(search_space, SearchSpace):
            return search_space
        lines = dict(lines or {})

        def fail(message: str, key: str | None = None, value: Any = None) -> ConfigError:
            line = lines.get(key) if key is not None else None
            if line is None:
                line = lines.get("search_space")
            return ConfigError(f"search_space: {message}", field=key or "search_space", value=value,
                               source=source, line=line)

        if isinstance(search_space, Mapping):
            mappings = [search_space]
        elif isinstance(search_space, (list, tuple)):
            mappings = list(search_space)
            for i, m in enumerate(mappings):
                if not isinstance(m, Mapping):
                    raise fail(f"a conditional space is a list of mappings (one per sub-space); item {i + 1} "
                               f"is {m!r}", value=m)
        else:
            raise fail(f"expected a mapping of parameter to expression (or a list of them), got {search_space!r}",
                       value=search_space)
        if not mappings or not any(mappings):
            raise fail("the search space is empty; give at least one parameter, e.g. "
                       "{'model_name': choice('yolov5')}")
        subspaces: list[dict[str, Any]] = []
        for mapping in mappings:
            subspaces.extend(_expand(mapping, source, lines, fail))
        return cls(subspaces)

    # -- reading --------------------------------------------------------------------------------------
    @property
    def is_conditional(self) -> bool:
        """True when there are several sub-spaces."""
        return len(self.subspaces) > 1

    def parameters(self) -> set[str]:
        """Every parameter name of every sub-space."""
        return {k for sub in self.subspaces for k in sub}

    def distributions(self) -> set[str]:
        """The kinds of expression used (``{"choice", "uniform"}``...); fixed values are not counted."""
        return {v.kind for _, _, v in self.items() if isinstance(v, Distribution)}

    def items(self) -> Iterator[tuple[int, str, Any]]:
        """``(sub-space index, parameter, expression or fixed value)`` for every entry."""
        for index, sub in enumerate(self.subspaces):
            for key, value in sub.items():
                yield index, key, value

    def grid_size(self) -> int:
        """How many combinations ``grid()`` enumerates (before removing duplicates across sub-spaces)."""
        self._check_grid()
        return sum(math.prod(len(v.values) for v in sub.values() if isinstance(v, Choice))
                   for sub in self.subspaces)

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of every ``choice``, sub-space after sub-space, each combination once.

        Order: sub-spaces in order; within one, ``itertools.product`` over the parameters in their order,
        each choice's values in the order written. A configuration reachable from two sub-spaces appears
        once (at its first place).

        Raises
        ------
        ConfigError
            When a parameter is not a ``choice`` (grid sampling takes only ``choice``) or the grid has more
            than ``MAX_GRID_SIZE`` combinations.
        """
        return [params for _, params in self.grid_with_subspaces()]

    def grid_with_subspaces(self) -> list[tuple[int, dict[str, Any]]]:
        """``grid()`` with the index of the sub-space each combination comes from."""
        size = self.grid_size()
        if size > MAX_GRID_SIZE:
            raise ConfigError(f"grid sampling: the search space has {size} combinations, more than "
                              f"{MAX_GRID_SIZE} can be enumerated; use random or bayesian sampling",
                              field="search_space", value=size)
        out: list[tuple[int, dict[str, Any]]] = []
        seen: set[str] = set()
        for index, sub in enumerate(self.subspaces):
            keys = list(sub)
            options = [sub[k].values if isinstance(sub[k], Choice) else (sub[k],) for k in keys]
            for combo in itertools.product(*options):
                params = {k: copy.deepcopy(v) for k, v in zip(keys, combo)}
                # repr of the sorted items identifies a configuration even when values are unhashable.
                ident = repr(sorted(params.items(), key=lambda kv: kv[0]))
                if ident not in seen:
                    seen.add(ident)
                    out.append((index, params))
        return out

    def _check_grid(self) -> None:
        for _, key, value in self.items():
            if isinstance(value, Distribution) and not isinstance(value, Choice):
                raise ConfigError(f"grid sampling supports only choice(); {key} is {value}", field=key,
                                  value=str(value))

    def sample(self, rng: np.random.Generator) -> tuple[int, dict[str, Any]]:
        """Random sampling: a sub-space uniformly, then every parameter of it. Returns ``(index, params)``."""
        index = int(rng.integers(len(self.subspaces))) if self.is_conditional else 0
        return index, {k: _sample_value(v, rng) for k, v in self.subspaces[index].items()}

    def to_config(self) -> dict[str, Any] | list[dict[str, Any]]:
        """YAML/JSON-able form with expressions as text; ``from_config`` reads it back to an equal space."""
        out = [{k: (str(v) if isinstance(v, Distribution) else copy.deepcopy(v)) for k, v in sub.items()}
               for sub in self.subspaces]
        return out[0] if len(out) == 1 else out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.subspaces == other.subspaces

    def __repr__(self) -> str:
        return f"SearchSpace({self.to_config()!r})"


def _expand(mapping: Mapping, source, lines, fail) -> list[dict[str, Any]]:
    """One mapping -> flat sub-spaces (several when a value is a choice of sub-space dicts)."""
    fixed: dict[str, Any] = {}
    branches: list[tuple[str, list[dict[str, Any]]]] = []
    for key, raw in mapping.items():
        if not isinstance(key, str) or not key.strip():
            raise fail(f"parameter names are strings, got {key!r}", value=key)
        value = raw
        if isinstance(raw, str):
            try:
                parsed = parse_expression(raw)
            except ConfigError as exc:
                raise fail(f"{key}: {exc.message}", key, raw) from None
            value = parsed if parsed is not None else raw
        if isinstance(value, Choice) and value.is_subspaces:
            subs: list[dict[str, Any]] = []
            for option in value.values:
                subs.extend(_expand(option, source, lines, fail))
            branches.append((key, subs))
        else:
            fixed[key] = value
    if not branches:
        if not fixed:
            raise fail("a sub-space is empty; give at least one parameter, e.g. {'model_name': choice('yolov5')}")
        return [fixed]
    out = []
    for combo in itertools.product(*(subs for _, subs in branches)):
        merged = dict(fixed)
        for (branch_key, _), sub in zip(branches, combo):
            for key, value in sub.items():
                if key in merged:
                    raise fail(f"{key} is set both outside and inside the sub-spaces of {branch_key!r}; set it "
                               f"in one place", key, value)
                merged[key] = value
        out.append(merged)
    return out
