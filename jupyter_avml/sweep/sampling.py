"""Samplers: which configuration a sweep tries next (spec section 9, ``hyperparameter_sampling``).

A sampler is an ask/tell object, like an Optuna study: ``ask()`` gives the next ``Trial`` (its ``params``
are plain values) or ``None`` when the space is exhausted; ``tell()`` reports how the trial ended.

Every sampled configuration is then validated by ``AutoMLImageConfig.replace`` (the caller's job). A
configuration that fails validation is told back as ``tell(trial, None, state="failed")`` and the caller
asks again: a grid moves past it, the Bayesian sampler records it as failed (Optuna ignores failed trials).

The cloud system's rules (spec section 9), enforced here as ``ConfigError``:

- grid sampling takes only ``choice``;
- Bayesian sampling takes ``choice``, ``uniform`` and ``quniform``.

Beyond the cloud system (documented extensions): grid and Bayesian sampling accept a conditional space,
and Bayesian sampling may run with an early termination policy.
"""

from __future__ import annotations

import copy
import difflib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.space import Choice, Distribution, QUniform, SearchSpace, Uniform, quantize

__all__ = ["Trial", "Sampler", "RandomSampler", "GridSampler", "BayesianSampler", "make_sampler",
           "SAMPLING_NAMES", "BAYESIAN_EXPRESSIONS", "TRIAL_STATES"]

SAMPLING_NAMES = ("random", "grid", "bayesian")
BAYESIAN_EXPRESSIONS = ("choice", "uniform", "quniform")
TRIAL_STATES = ("complete", "pruned", "failed")


@dataclass
class Trial:
    """One configuration to try.

    ``number`` counts from 0 in the order asked (for the Bayesian sampler: the Optuna trial number, which
    goes on across resumed sweeps); ``params`` are plain values, fixed values and ``model_name`` included;
    ``subspace`` is the index of the sub-space they come from (0 unless the space is conditional).
    """

    number: int
    params: dict[str, Any]
    subspace: int = 0


class Sampler(ABC):
    """Ask for configurations, tell how they ended.

    ``max_trials`` is the number of distinct configurations the sampler can give (the grid size for grid
    sampling), ``None`` when unbounded; the caller caps ``iterations`` with it.
    """

    name: str = ""
    max_trials: int | None = None

    def __init__(self, space: SearchSpace):
        self.space = SearchSpace.from_config(space)
        self._asked: dict[int, Trial] = {}
        #: How each told trial ended: number -> (state, value).
        self.results: dict[int, tuple[str, float | None]] = {}

    @abstractmethod
    def ask(self) -> Trial | None:
        """The next configuration, or ``None`` when there is none left."""

    def tell(self, trial: Trial | int, value: float | None, state: str = "complete", *,
             step: int | None = None) -> None:
        """Report how ``trial`` ended.

        Parameters
        ----------
        trial:
            A ``Trial`` from ``ask()`` (or its number).
        value:
            The best primary metric of the child run. Required (a finite number) for ``complete``; for
            ``pruned``, the last value before the early termination policy stopped it (or ``None``); for
            ``failed`` it is ignored.
        state:
            ``complete``, ``pruned`` (stopped by the early termination policy) or ``failed`` (the run failed,
            or the sampled configuration did not pass validation: ``tell(trial, None, state="failed")``).
        step:
            For ``pruned``: the interval at which it was stopped (the Bayesian sampler ranks pruned trials
            stopped later above those stopped earlier). Optional.
        """
        number = trial.number if isinstance(trial, Trial) else int(trial)
        if state not in TRIAL_STATES:
            raise ValueError(f"state must be one of {', '.join(TRIAL_STATES)}, got {state!r}")
        if number in self.results:
            raise ValueError(f"trial {number} was already told ({self.results[number][0]})")
        if state == "complete" and (value is None or not math.isfinite(float(value))):
            raise ValueError(f"a complete trial needs a finite value, got {value!r} for trial {number}; "
                             f"tell it as failed instead")
        if value is not None and not math.isfinite(float(value)):
            value = None  # a NaN metric carries no information about the configuration
        self._tell(number, None if value is None else float(value), state, step)
        self.results[number] = (state, None if value is None else float(value))

    def _tell(self, number: int, value: float | None, state: str, step: int | None) -> None:
        if number not in self._asked:
            raise ValueError(f"trial {number} was not asked from this sampler")

    def _new_trial(self, number: int, subspace: int, params: dict[str, Any]) -> Trial:
        trial = Trial(number=number, params=params, subspace=subspace)
        self._asked[number] = trial
        return trial

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self._asked)} asked, {len(self.results)} told)"


class RandomSampler(Sampler):
    """Random sampling: every expression kind, conditional spaces included.

    For a conditional space a sub-space is chosen uniformly, then each of its parameters is drawn, so the
    parameters of one sub-space never appear with another's ``model_name``. ``seed`` makes the sequence
    reproducible (``numpy.random.default_rng(seed)``).
    """

    name = "random"

    def __init__(self, space: SearchSpace, seed: int | None = 0):
        super().__init__(space)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._count = 0

    def ask(self) -> Trial:
        index, params = self.space.sample(self._rng)
        trial = self._new_trial(self._count, index, params)
        self._count += 1
        return trial


class GridSampler(Sampler):
    """Grid sampling: every combination of the ``choice`` values, each exactly once.

    The order is ``SearchSpace.grid()``'s (deterministic); with a ``seed`` it is shuffled by
    ``numpy.random.default_rng(seed).permutation``, so that a sweep with fewer ``iterations`` than
    combinations tries a random subset. ``ask()`` returns ``None`` once every combination was asked;
    ``max_trials`` is the grid size. A conditional space is accepted (the grids of its sub-spaces one after
    the other): this goes beyond the cloud system, where only random sampling takes a conditional space.

    Raises ``ConfigError`` when a parameter is not a ``choice``.
    """

    name = "grid"

    def __init__(self, space: SearchSpace, seed: int | None = None):
        super().__init__(space)
        self.seed = seed
        self._grid = self.space.grid_with_subspaces()
        if seed is not None:
            order = np.random.default_rng(seed).permutation(len(self._grid))
            self._grid = [self._grid[i] for i in order]
        self.max_trials = len(self._grid)
        self._next = 0

    def ask(self) -> Trial | None:
        if self._next >= len(self._grid):
            return None
        index, params = self._grid[self._next]
        trial = self._new_trial(self._next, index, copy.deepcopy(params))
        self._next += 1
        return trial

    @property
    def remaining(self) -> int:
        """Combinations not asked yet."""
        return len(self._grid) - self._next


# --------------------------------------------------------------------------------------------------------
SUBSPACE_PARAM = "subspace"


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


def _quniform_bounds(dist: QUniform) -> tuple[float, float]:
    """The multiples of ``q`` inside ``[low, high]``, as the bounds of Optuna's stepped float.

    Optuna takes values ``low + k * step`` and needs ``high - low`` divisible by ``step``. The spec's
    ``round(uniform(low, high) / q) * q`` gives multiples of ``q``; so the lower bound is moved up to the
    first multiple of ``q`` and the upper bound down to the last one. (Random sampling can round up to
    ``q / 2`` past a bound; the Bayesian sampler stays inside.) When no multiple of ``q`` lies inside, the one
    nearest the middle is the only value.
    """
    q = Decimal(repr(float(dist.q)))
    low, high = Decimal(repr(float(dist.low))), Decimal(repr(float(dist.high)))
    k_low = math.ceil(low / q)
    k_high = math.floor(high / q)
    if k_low > k_high:
        k_low = k_high = round((low + high) / 2 / q)
    return float(k_low * q), float(k_high * q)


class BayesianSampler(Sampler):
    """Bayesian sampling with Optuna's TPE sampler, through ``study.ask()`` / ``study.tell()``.

    Expressions map to Optuna as: ``choice`` -> ``suggest_categorical`` (values that are not distinct JSON
    primitives, e.g. lists or dicts, are suggested by index and mapped back); ``uniform`` -> ``suggest_float``;
    ``quniform`` -> ``suggest_float(step=q)`` over the multiples of ``q`` inside ``[low, high]`` (see
    ``_quniform_bounds``: the lower bound moves up and the upper bound down to a multiple of ``q``). Other
    expressions raise ``ConfigError`` (the spec's rule).

    Beyond the cloud system:

    - a conditional space works: the sub-space index is suggested as the categorical ``"subspace"``, then
      the parameters of that sub-space under names prefixed by the index (``"1:learning_rate"``), so each
      sub-space's parameters are modelled separately (TPE handles such dynamic spaces);
    - an early termination policy may be used (``early_termination`` is recorded): stopped trials are told
      as ``pruned`` with their last value, which TPE ranks below completed trials.

    Parameters
    ----------
    space:
        The search space.
    seed:
        Seed of the TPE sampler. A resumed study draws from ``(seed, number of trials already in the
        study)`` so that it does not repeat the first session's start-up configurations.
    direction:
        ``"maximize"`` or ``"minimize"`` the primary metric.
    storage:
        An Optuna RDB URL, e.g. ``sqlite:///<workspace>/sweeps/<id>/optuna.db``: the study persists and a
        second sampler on the same storage and ``study_name`` continues it (trial numbers go on).
        ``None`` keeps the study in memory.
    study_name:
        Required with ``storage``.
    n_startup_trials:
        Random trials before TPE starts modelling (Optuna's default, 10).
    early_termination:
        Whether the sweep runs with an early termination policy (recorded in ``early_termination`` and in
        the study's user attributes).
    """

    name = "bayesian"

    def __init__(self, space: SearchSpace, seed: int | None = 0, direction: str = "maximize",
                 storage: str | None = None, study_name: str | None = None, n_startup_trials: int = 10,
                 early_termination: bool = False):
        super().__init__(space)
        check_bayesian_space(self.space)
        direction = _check_direction(direction)
        if storage is not None and not study_name:
            raise ValueError("study_name is required with storage, so that a resumed sweep finds its study")
        import optuna

        self.direction = direction
        self.seed = seed
        self.early_termination = bool(early_termination)
        self.study = optuna.create_study(
            storage=storage, study_name=study_name, direction=direction, load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials))
        if self.study.direction.name.lower() != direction:
            raise ConfigError(f"the Optuna study {study_name!r} in {storage} was created to "
                              f"{self.study.direction.name.lower()} the primary metric, not to {direction}",
                              field="hyperparameter_sampling")
        existing = len(self.study.get_trials(deepcopy=False))
        if seed is not None and existing:
            # The same seed would replay the first session's start-up configurations.
            resumed_seed = int(np.random.SeedSequence([seed, existing]).generate_state(1)[0])
            self.study.sampler = optuna.samplers.TPESampler(seed=resumed_seed, n_startup_trials=n_startup_trials)
        if self.early_termination:
            self.study.set_user_attr("early_termination", True)
        self._optuna_trials: dict[int, Any] = {}

    def ask(self) -> Trial:
        otrial = self.study.ask()
        raw: dict[str, Any] = {}
        index = 0
        if self.space.is_conditional:
            index = otrial.suggest_categorical(SUBSPACE_PARAM, list(range(len(self.space.subspaces))))
            raw[SUBSPACE_PARAM] = index
        for key, value in self.space.subspaces[index].items():
            if isinstance(value, Distribution):
                name = self._optuna_name(index, key)
                raw[name] = self._suggest(otrial, name, value)
        params = self._decode(index, raw)
        self._optuna_trials[otrial.number] = otrial
        return self._new_trial(otrial.number, index, params)

    def running_trials(self) -> list[Trial]:
        """Trials of the study still marked running (asked by an earlier session that did not tell them).

        They can be told (``tell`` accepts them; a ``pruned`` one is then stored without its value, since
        its Optuna trial object belongs to the earlier session) or run again. Trials whose parameters no
        longer fit the current space are left out.
        """
        from optuna.trial import TrialState

        out = []
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number in self._asked:
                continue
            try:
                index = int(frozen.params.get(SUBSPACE_PARAM, 0))
                params = self._decode(index, frozen.params)
            except (KeyError, IndexError, ValueError, TypeError):
                continue
            out.append(Trial(number=frozen.number, params=params, subspace=index))
            self._asked[frozen.number] = out[-1]
        return out

    # -- optuna mapping -------------------------------------------------------------------------------
    def _optuna_name(self, index: int, key: str) -> str:
        return f"{index}:{key}" if self.space.is_conditional else key

    @staticmethod
    def _suggest(otrial, name: str, dist: Distribution) -> Any:
        if isinstance(dist, Choice):
            if _is_plain_categorical(dist.values):
                return otrial.suggest_categorical(name, list(dist.values))
            return otrial.suggest_categorical(name, list(range(len(dist.values))))
        if isinstance(dist, QUniform):
            low, high = _quniform_bounds(dist)
            return otrial.suggest_float(name, low, high, step=float(dist.q))
        if isinstance(dist, Uniform):
            return otrial.suggest_float(name, float(dist.low), float(dist.high))
        raise ConfigError(f"bayesian sampling does not support {dist}")  # excluded by check_bayesian_space

    def _decode(self, index: int, raw: dict[str, Any]) -> dict[str, Any]:
        """Optuna's values (by Optuna name) -> the configuration's plain values."""
        params: dict[str, Any] = {}
        for key, value in self.space.subspaces[index].items():
            if not isinstance(value, Distribution):
                params[key] = copy.deepcopy(value)
                continue
            got = raw[self._optuna_name(index, key)]
            if isinstance(value, Choice):
                params[key] = copy.deepcopy(got if _is_plain_categorical(value.values) else value.values[int(got)])
            elif isinstance(value, QUniform):
                params[key] = quantize(float(got), value.q)
            else:
                params[key] = float(got)
        return params

    def _tell(self, number: int, value: float | None, state: str, step: int | None) -> None:
        from optuna.trial import TrialState

        otrial = self._optuna_trials.pop(number, None)
        if otrial is None and number not in self._asked:
            raise ValueError(f"trial {number} was not asked from this sampler")
        target = otrial if otrial is not None else number
        if state == "complete":
            self.study.tell(target, value)
        elif state == "pruned":
            # Optuna gives a pruned trial the value of its last report; report ours so TPE can rank it.
            if value is not None and otrial is not None:
                otrial.report(value, step=step if step is not None else 0)
            self.study.tell(target, state=TrialState.PRUNED)
        else:
            self.study.tell(target, state=TrialState.FAIL)


# --------------------------------------------------------------------------------------------------------
def check_bayesian_space(space: SearchSpace) -> None:
    """Raise ``ConfigError`` naming the first parameter whose expression Bayesian sampling cannot take."""
    for _, key, value in space.items():
        if isinstance(value, Distribution) and value.kind not in BAYESIAN_EXPRESSIONS:
            raise ConfigError(f"bayesian sampling supports only choice(), uniform() and quniform(); {key} is "
                              f"{value}", field=key, value=str(value))


def _check_direction(direction: str) -> str:
    text = str(direction).strip().lower()
    if text not in ("maximize", "minimize"):
        raise ConfigError(f"direction must be 'maximize' or 'minimize', got {direction!r}", value=direction)
    return text


def _sampling_name(name: str) -> str:
    text = str(name).strip().lower().replace("_", "").replace(" ", "")
    # The cloud SDK's class names: RandomParameterSampling, GridParameterSampling, BayesianParameterSampling.
    for suffix in ("parametersampling", "sampling"):
        if text.endswith(suffix) and text != suffix:
            text = text[: -len(suffix)]
    if text not in SAMPLING_NAMES:
        close = difflib.get_close_matches(text, SAMPLING_NAMES, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"hyperparameter_sampling must be one of {', '.join(SAMPLING_NAMES)}, got {name!r}{hint}",
                          field="hyperparameter_sampling", value=name)
    return text


def make_sampler(name: str, space: SearchSpace | Any, *, seed: int | None = 0, direction: str = "maximize",
                 storage: str | None = None, study_name: str | None = None, early_termination: bool = False,
                 n_startup_trials: int = 10) -> Sampler:
    """The sampler for ``hyperparameter_sampling``.

    ``name`` is ``random``, ``grid`` or ``bayesian``, case-insensitive; the cloud names (``"Random"``,
    ``"GridParameterSampling"``...) are accepted. ``space`` is a ``SearchSpace`` or anything
    ``SearchSpace.from_config`` reads. ``storage``, ``study_name``, ``n_startup_trials`` apply to Bayesian
    sampling; ``seed`` to all (a grid is shuffled only when ``seed`` is not ``None``).

    Raises
    ------
    ConfigError
        Unknown sampling name (with a "did you mean"); grid with an expression other than ``choice``;
        Bayesian with an expression other than ``choice``, ``uniform``, ``quniform``.
    """
    kind = _sampling_name(name)
    space = SearchSpace.from_config(space)
    _check_direction(direction)
    if kind == "random":
        return RandomSampler(space, seed=seed)
    if kind == "grid":
        return GridSampler(space, seed=seed)
    return BayesianSampler(space, seed=seed, direction=direction, storage=storage, study_name=study_name,
                           n_startup_trials=n_startup_trials, early_termination=early_termination)
