"""Samplers: which configuration a sweep tries next (spec section 9, ``hyperparameter_sampling``).

A sampler holds no counter and no study of its own that matters: the configuration of trial ``number`` is a
pure function of the sampler's space and seed, ``number``, and the history of the trials recorded so far
(``propose(number, history)``). A sweep's history is its ``state.json`` (each child is a ``TrialRecord``),
so a resumed sweep asks for trial ``len(children)`` with the recorded children and gets exactly what an
uninterrupted sweep would have got from the same history: nothing is replayed, nothing is kept elsewhere.

- random: trial ``n`` is drawn from ``numpy.random.default_rng([seed, n])``;
- grid: trial ``n`` is the ``n``-th combination (the grid shuffled by ``seed``); ``None`` past the end;
- Bayesian: an in-memory Optuna study is rebuilt from the history (in trial order) and TPE, seeded by
  ``(seed, n)``, suggests trial ``n``.

``ask()`` / ``tell()`` remain for interactive use and tests: they keep their own history and call
``propose``.

Every sampled configuration is then validated by ``AutoMLImageConfig`` (the caller's job). A configuration
that fails validation is recorded as ``failed``: a grid moves past it, the Bayesian sampler records it as
failed (Optuna ignores failed trials).

The cloud system's rules (spec section 9), enforced here as ``ConfigError``: grid sampling takes only
``choice``; Bayesian sampling takes ``choice``, ``uniform`` and ``quniform`` (each expression says so:
``Distribution.grid_values``, ``Distribution.bayesian``). Beyond the cloud system (documented extensions):
grid and Bayesian sampling accept a conditional space, and Bayesian sampling may run with an early
termination policy.
"""

from __future__ import annotations

import copy
import difflib
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.space import Distribution, SearchSpace

__all__ = ["Trial", "TrialRecord", "Sampler", "RandomSampler", "GridSampler", "BayesianSampler", "make_sampler",
           "check_bayesian_space", "SAMPLING_NAMES", "BAYESIAN_EXPRESSIONS", "TRIAL_STATES"]

SAMPLING_NAMES = ("random", "grid", "bayesian", "auto")
BAYESIAN_EXPRESSIONS = ("choice", "uniform", "quniform")
TRIAL_STATES = ("complete", "pruned", "failed")
#: A record's state while its trial runs (asked, not told yet).
RUNNING = "running"


@dataclass
class Trial:
    """One configuration to try.

    ``number`` is the trial's number (a sweep's child id); ``params`` are plain values, fixed values and
    ``model_name`` included; ``subspace`` is the index of the sub-space they come from (0 unless the space
    is conditional; None for AutoMode's refinements, which come from no sub-space).
    """

    number: int
    params: dict[str, Any]
    subspace: int | None = 0
    why: str | None = None  # why the sampler chose it (AutoMode says; the others leave it None)


@dataclass(frozen=True)
class TrialRecord:
    """What a sampler may learn from one earlier trial.

    ``state`` is ``running`` (asked, not ended), ``complete`` (``value`` is its best primary metric),
    ``pruned`` (stopped early: ``value`` is its last primary value, or None) or ``failed`` (its run failed or
    its configuration was refused). ``intermediate`` holds ``(step, primary value)`` pairs, the evaluations
    before it ended. ``subspace`` is None when unknown (it is then found from the parameters).
    """

    number: int
    params: dict[str, Any]
    state: str = RUNNING
    value: float | None = None
    subspace: int | None = 0
    intermediate: tuple[tuple[int, float], ...] = field(default_factory=tuple)

    def key(self) -> tuple:
        """What identifies this record's content (a sampler rebuilds what it derived when it changes)."""
        return (self.number, self.state, self.value, self.subspace, self.intermediate, repr(self.params))


class Sampler(ABC):
    """Propose configurations from the recorded history; ``ask``/``tell`` for interactive use.

    ``max_trials`` is the number of distinct configurations the sampler can give (the grid size for grid
    sampling), ``None`` when unbounded; the caller caps ``iterations`` with it.
    """

    name: str = ""
    max_trials: int | None = None

    def __init__(self, space: SearchSpace, seed: int | None = 0):
        self.space = SearchSpace.from_config(space)
        # Without a seed, one is drawn now: trials of this sampler are then reproducible among themselves.
        self.seed = int(seed) if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        self._records: dict[int, TrialRecord] = {}

    @abstractmethod
    def propose(self, number: int, history: Sequence[TrialRecord] = ()) -> Trial | None:
        """The configuration of trial ``number`` given the recorded ``history``; None when there is none left.

        The same space, seed, ``number`` and ``history`` always give the same trial.
        """

    def _rng(self, number: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(number)])

    # -- ask / tell ---------------------------------------------------------------------------------------
    def history(self) -> list[TrialRecord]:
        """The trials asked from this sampler, as records, in number order."""
        return [self._records[n] for n in sorted(self._records)]

    @property
    def results(self) -> dict[int, tuple[str, float | None]]:
        """How each told trial ended: number -> (state, value)."""
        return {n: (r.state, r.value) for n, r in sorted(self._records.items()) if r.state != RUNNING}

    def ask(self) -> Trial | None:
        """The next configuration (number: one past the last asked), or ``None`` when there is none left."""
        number = max(self._records) + 1 if self._records else 0
        trial = self.propose(number, self.history())
        if trial is not None:
            self._records[trial.number] = TrialRecord(trial.number, copy.deepcopy(trial.params),
                                                      subspace=trial.subspace)
        return trial

    def tell(self, trial: Trial | int, value: float | None, state: str = "complete", *,
             step: int | None = None) -> None:
        """Report how an asked trial ended.

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
        record = self._records.get(number)
        if record is None:
            raise ValueError(f"trial {number} was not asked from this sampler")
        if record.state != RUNNING:
            raise ValueError(f"trial {number} was already told ({record.state})")
        if state == "complete" and (value is None or not math.isfinite(float(value))):
            raise ValueError(f"a complete trial needs a finite value, got {value!r} for trial {number}; "
                             f"tell it as failed instead")
        if value is not None and not math.isfinite(float(value)):
            value = None  # a NaN metric carries no information about the configuration
        value = None if value is None or state == "failed" else float(value)
        intermediate = ((int(step) if step is not None else 0, value),) if state == "pruned" and value is not None \
            else ()
        self._records[number] = TrialRecord(number, record.params, state, value, record.subspace, intermediate)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self._records)} asked, {len(self.results)} told)"


class RandomSampler(Sampler):
    """Random sampling: every expression kind, conditional spaces included.

    For a conditional space a sub-space is chosen uniformly, then each of its parameters is drawn, so the
    parameters of one sub-space never appear with another's ``model_name``. Trial ``n`` is drawn from
    ``numpy.random.default_rng([seed, n])``: reproducible, and independent of the history.
    """

    name = "random"

    def propose(self, number: int, history: Sequence[TrialRecord] = ()) -> Trial:
        index, params = self.space.sample(self._rng(number))
        return Trial(number=number, params=params, subspace=index)


class GridSampler(Sampler):
    """Grid sampling: every combination of the ``choice`` values, each exactly once.

    The order is ``SearchSpace.grid()``'s (deterministic); with a ``seed`` it is shuffled by
    ``numpy.random.default_rng(seed).permutation``, so that a sweep with fewer ``iterations`` than
    combinations tries a random subset. Trial ``n`` is the ``n``-th combination; past the last one
    ``propose`` gives ``None``; ``max_trials`` is the grid size. A conditional space is accepted (the grids
    of its sub-spaces one after the other): this goes beyond the cloud system, where only random sampling
    takes a conditional space.

    Raises ``ConfigError`` when a parameter is not a ``choice``.
    """

    name = "grid"

    def __init__(self, space: SearchSpace, seed: int | None = None):
        super().__init__(space, seed=0 if seed is None else seed)
        self.seed = seed
        self._grid = self.space.grid_with_subspaces()
        if seed is not None:
            order = np.random.default_rng(seed).permutation(len(self._grid))
            self._grid = [self._grid[i] for i in order]
        self.max_trials = len(self._grid)

    def propose(self, number: int, history: Sequence[TrialRecord] = ()) -> Trial | None:
        if not 0 <= number < len(self._grid):
            return None
        index, params = self._grid[number]
        return Trial(number=number, params=copy.deepcopy(params), subspace=index)

    @property
    def remaining(self) -> int:
        """Combinations not asked yet (through ``ask``)."""
        return max(0, len(self._grid) - len(self._records))


# --------------------------------------------------------------------------------------------------------
SUBSPACE_PARAM = "subspace"


class BayesianSampler(Sampler):
    """Bayesian sampling with Optuna's TPE sampler.

    Expressions map to Optuna through their own methods (``Distribution.suggest`` and friends): ``choice`` ->
    a categorical (by index when the values are not distinct JSON primitives), ``uniform`` -> a float,
    ``quniform`` -> a stepped float over the multiples of ``q`` inside ``[low, high]``. Other expressions
    raise ``ConfigError`` (the spec's rule).

    ``propose(n, history)`` rebuilds an in-memory study from ``history`` in trial order (completed trials with
    their value, pruned ones with their evaluations, failed and running ones as such) and asks TPE, seeded
    by ``(seed, n)``, for trial ``n``; a resumed sweep thus continues from its recorded children alone (a
    study of a thousand trials rebuilds in under 0.1 s).

    Beyond the cloud system:

    - a conditional space works: the sub-space index is suggested as the categorical ``"subspace"``, then
      the parameters of that sub-space under names prefixed by the index (``"1:learning_rate"``), so each
      sub-space's parameters are modelled separately (TPE handles such dynamic spaces);
    - an early termination policy may be used (``early_termination`` is recorded): stopped trials are
      recorded as pruned with their evaluations, which TPE ranks below completed trials.

    Parameters
    ----------
    space:
        The search space.
    seed:
        Seed of the TPE sampler (trial ``n`` uses ``(seed, n)``).
    direction:
        ``"maximize"`` or ``"minimize"`` the primary metric.
    n_startup_trials:
        Random trials before TPE starts modelling (Optuna's default, 10).
    early_termination:
        Whether the sweep runs with an early termination policy (recorded in the study's user attributes).
    """

    name = "bayesian"

    def __init__(self, space: SearchSpace, seed: int | None = 0, direction: str = "maximize",
                 n_startup_trials: int = 10, early_termination: bool = False):
        super().__init__(space, seed=seed)
        check_bayesian_space(self.space)
        self.direction = _check_direction(direction)
        self.n_startup_trials = int(n_startup_trials)
        self.early_termination = bool(early_termination)
        self._study = None
        self._study_key: tuple | None = None

    @property
    def study(self):
        """The Optuna study behind the proposals: with ``ask``/``tell``, the study of this sampler's own history
        (rebuilt when it changed); else the one built for the last ``propose`` (its history and the trial it
        proposed)."""
        if self._records or self._study is None:
            return self._study_for(self.history())
        return self._study

    def propose(self, number: int, history: Sequence[TrialRecord] = ()) -> Trial:
        import optuna

        history = sorted((r for r in history if r.number != number), key=lambda r: r.number)
        study = self._study_for(history)
        seed = int(np.random.SeedSequence([self.seed, int(number)]).generate_state(1)[0])
        study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)
        otrial = study.ask()
        index = 0
        if self.space.is_conditional:
            index = otrial.suggest_categorical(SUBSPACE_PARAM, list(range(len(self.space.subspaces))))
        params: dict[str, Any] = {}
        for key, value in self.space.subspaces[index].items():
            if isinstance(value, Distribution):
                params[key] = value.from_optuna(value.suggest(otrial, self._optuna_name(index, key)))
            else:
                params[key] = copy.deepcopy(value)
        # The study now holds the new trial as running, as a history with it would build it.
        self._study_key = (*self._study_key, TrialRecord(number, params, subspace=index).key())
        return Trial(number=number, params=params, subspace=index)

    # -- the study, derived from the history ------------------------------------------------------------
    def _study_for(self, history: Sequence[TrialRecord]):
        key = tuple(r.key() for r in history)
        if self._study is None or key != self._study_key:
            self._study = self._build_study(history)
            self._study_key = key
        return self._study

    def _build_study(self, history: Sequence[TrialRecord]):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction=self.direction)
        if self.early_termination:
            study.set_user_attr("early_termination", True)
        frozen = [trial for trial in (self._frozen(record) for record in history) if trial is not None]
        study.add_trials(frozen)
        return study

    def _frozen(self, record: TrialRecord):
        """A record as an Optuna trial; None when its parameters do not fit the space (it is left out)."""
        from optuna.distributions import CategoricalDistribution

        index = record.subspace if record.subspace is not None else self.space.locate(record.params)
        if index is None or not 0 <= index < len(self.space.subspaces):
            return None
        params: dict[str, Any] = {}
        distributions: dict[str, Any] = {}
        if self.space.is_conditional:
            params[SUBSPACE_PARAM] = index
            distributions[SUBSPACE_PARAM] = CategoricalDistribution(list(range(len(self.space.subspaces))))
        for key, expression in self.space.subspaces[index].items():
            if not isinstance(expression, Distribution):
                continue
            name = self._optuna_name(index, key)
            try:
                params[name] = expression.to_optuna(record.params[key])
            except (KeyError, ValueError, TypeError):
                return None
            distributions[name] = expression.optuna_distribution()
        return optuna_trial(record, params, distributions)

    def _optuna_name(self, index: int, key: str) -> str:
        return f"{index}:{key}" if self.space.is_conditional else key


# --------------------------------------------------------------------------------------------------------
def check_bayesian_space(space: SearchSpace) -> None:
    """Raise ``ConfigError`` naming the first parameter whose expression Bayesian sampling cannot take."""
    for _, key, value in space.items():
        if isinstance(value, Distribution) and not value.bayesian:
            raise value._not_bayesian(key)


def _check_direction(direction: str) -> str:
    text = str(direction).strip().lower()
    if text not in ("maximize", "minimize"):
        raise ConfigError(f"direction must be 'maximize' or 'minimize', got {direction!r}", value=direction)
    return text


def sampling_name(name: str) -> str:
    """The canonical sampling name (``random``, ``grid``, ``bayesian``) of what a user wrote.

    Case and ``_`` are ignored; the cloud SDK's class names (``RandomParameterSampling``...) are accepted.
    Raises ``ConfigError`` with a "did you mean".
    """
    text = str(name).strip().lower().replace("_", "").replace(" ", "")
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
                 early_termination: bool = False, n_startup_trials: int = 10) -> Sampler:
    """The sampler for ``hyperparameter_sampling``.

    ``name`` is ``random``, ``grid`` or ``bayesian``, case-insensitive; the cloud names (``"Random"``,
    ``"GridParameterSampling"``...) are accepted; ``auto`` is AutoMode's sampler, whose ``space`` is an
    ``automode.AutoModePlan``. ``space`` is a ``SearchSpace`` or anything
    ``SearchSpace.from_config`` reads. ``n_startup_trials`` applies to Bayesian sampling; ``seed`` to all (a
    grid is shuffled only when ``seed`` is not ``None``).

    Raises
    ------
    ConfigError
        Unknown sampling name (with a "did you mean"); grid with an expression other than ``choice``;
        Bayesian with an expression other than ``choice``, ``uniform``, ``quniform``.
    """
    kind = sampling_name(name)
    if kind == "auto":  # AutoMode (sweep.automode): the space is the plan
        from jupyter_avml.sweep.automode import AutoSampler

        return AutoSampler(space, seed=seed)
    space = SearchSpace.from_config(space)
    _check_direction(direction)
    if kind == "random":
        return RandomSampler(space, seed=seed)
    if kind == "grid":
        return GridSampler(space, seed=seed)
    return BayesianSampler(space, seed=seed, direction=direction, n_startup_trials=n_startup_trials,
                           early_termination=early_termination)


def optuna_trial(record, params: dict[str, Any], distributions: dict[str, Any]):
    """A recorded child as a finished (or running) Optuna trial with these ``params`` in these ``distributions``;
    None when a value lies outside its distribution (a space edited between sessions)."""
    from optuna.trial import TrialState, create_trial

    state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL
             }.get(record.state, TrialState.RUNNING)
    # Optuna gives a pruned trial the value of its last report: TPE ranks it by that value.
    value = record.value if state in (TrialState.COMPLETE, TrialState.PRUNED) else None
    if value is not None and not math.isfinite(value):
        value = None
    if state == TrialState.COMPLETE and value is None:
        state = TrialState.FAIL
    try:
        return create_trial(state=state, value=value, params=params, distributions=dict(distributions),
                            intermediate_values={int(s): float(v) for s, v in record.intermediate})
    except ValueError:
        return None
