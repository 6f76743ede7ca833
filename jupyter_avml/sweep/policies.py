"""Early termination policies (spec section 9, ``early_termination_policy``): pure decisions over histories.

A policy sees what every child run of a sweep has reported so far (``TrialHistory``) and decides, when one
child has just reported, whether that child goes on (``Decision.CONTINUE``) or is cancelled
(``Decision.STOP``), with a reason a person can read. It trains nothing and keeps no state, so it is tested
on scripted histories.

Vocabulary shared by every policy:

- A *step* (an *interval*) is the k-th report of the primary metric by a child, i.e. its k-th evaluation,
  counted from 1. ``TrialHistory.values[k]`` is the value of that report.
- A policy is applied at step ``k`` only when ``k % evaluation_interval == 0`` and ``k > delay_evaluation``:
  no evaluation happens before ``delay_evaluation`` intervals have passed. At any other step the decision
  is ``CONTINUE``.
- Only the trials that have reported step ``k`` take part in step ``k``'s comparison (a trial that has not
  reported it yet, or was stopped earlier, is left out). Reports arrive interleaved, so a decision depends
  on what had been reported when it was made; a trial is judged once per step, when it reports.
- ``maximize=False`` is for metrics to minimise: "better" and "worse" swap.
- A NaN value counts as the worst possible value (a diverged run is never "within the slack").
"""

from __future__ import annotations

import difflib
import math
import statistics
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, ClassVar

from jupyter_avml.errors import ConfigError

__all__ = ["Decision", "TrialHistory", "EarlyTerminationPolicy", "BanditPolicy", "MedianStoppingPolicy",
           "TruncationSelectionPolicy", "NoTerminationPolicy", "make_policy", "POLICY_TYPES"]


class Decision(str, Enum):
    """What happens to a trial after a report (Ray Tune's vocabulary)."""

    CONTINUE = "continue"
    STOP = "stop"


@dataclass
class TrialHistory:
    """What a policy sees of one child run.

    ``values`` maps the step (1-based: the k-th primary-metric report) to the value reported at that step.
    ``finished`` is true once the run completed (not cancelled, not failed).
    """

    trial_id: str
    values: dict[int, float] = field(default_factory=dict)
    finished: bool = False


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _worst(maximize: bool) -> float:
    return -math.inf if maximize else math.inf


def _clean(value: float, maximize: bool) -> float:
    value = float(value)
    return _worst(maximize) if math.isnan(value) else value


class EarlyTerminationPolicy(ABC):
    """A decision over recorded histories; subclasses implement ``_decide`` for the steps that are evaluated.

    Subclasses are frozen dataclasses with at least these two fields:

    evaluation_interval:
        Evaluate at every ``evaluation_interval``-th step (an integer >= 1, default 1).
    delay_evaluation:
        Do not evaluate at steps ``1 .. delay_evaluation`` (an integer >= 0, default 0).
    """

    evaluation_interval: int
    delay_evaluation: int
    type: ClassVar[str] = ""

    def __post_init__(self):
        object.__setattr__(self, "evaluation_interval",
                           _int("evaluation_interval", self.evaluation_interval, low=1))
        object.__setattr__(self, "delay_evaluation", _int("delay_evaluation", self.delay_evaluation, low=0))

    def applies_at(self, step: int) -> bool:
        """Whether the policy evaluates at ``step``: ``step % evaluation_interval == 0 and step > delay``."""
        return step % self.evaluation_interval == 0 and step > self.delay_evaluation

    def decide(self, trial_id: str, step: int, histories: Mapping[str, TrialHistory], *, maximize: bool = True,
               metric: str = "primary metric") -> tuple[Decision, str | None]:
        """Decide for ``trial_id``, which has just reported its value for ``step``.

        Parameters
        ----------
        trial_id:
            The trial that reported; must be in ``histories`` with a value at ``step``.
        step:
            The 1-based index of the report.
        histories:
            Every trial of the sweep, in the order they were started (ties are broken by this order).
        maximize:
            False for a metric to minimise.
        metric:
            The metric's name, used in the reason.

        Returns
        -------
        ``(Decision.STOP, reason)`` or ``(Decision.CONTINUE, None)``.
        """
        if trial_id not in histories:
            raise KeyError(f"trial {trial_id!r} is not in the histories")
        if step not in histories[trial_id].values:
            raise ValueError(f"trial {trial_id!r} has not reported step {step}")
        if not self.applies_at(step):
            return Decision.CONTINUE, None
        return self._decide(trial_id, step, histories, maximize, metric)

    @abstractmethod
    def _decide(self, trial_id: str, step: int, histories: Mapping[str, TrialHistory], maximize: bool,
                metric: str) -> tuple[Decision, str | None]:
        """The decision at an evaluated step."""

    def to_dict(self) -> dict[str, Any]:
        """The configuration, readable back by ``make_policy``."""
        return {"type": self.type or None, **asdict(self)}

    @staticmethod
    def _reporters(step: int, histories: Mapping[str, TrialHistory]) -> list[TrialHistory]:
        return [h for h in histories.values() if step in h.values]


@dataclass(frozen=True)
class NoTerminationPolicy(EarlyTerminationPolicy):
    """No early termination: every configuration runs to completion."""

    evaluation_interval: int = 1
    delay_evaluation: int = 0
    type: ClassVar[str] = ""

    def _decide(self, trial_id, step, histories, maximize, metric):
        return Decision.CONTINUE, None

    def to_dict(self) -> dict[str, Any]:
        return {"type": None}


@dataclass(frozen=True)
class BanditPolicy(EarlyTerminationPolicy):
    """Stop a trial whose value is not within a slack of the best value at the same step.

    ``best`` is the best value reported at this step by any trial that has reported it, the current one
    included (so the best trial itself always continues). Exactly one of:

    - ``slack_factor`` (> 0): cut-off ``best / (1 + slack_factor)`` when maximising, ``best * (1 +
      slack_factor)`` when minimising;
    - ``slack_amount`` (> 0): cut-off ``best - slack_amount`` when maximising, ``best + slack_amount`` when
      minimising.

    A trial strictly worse than the cut-off stops; one equal to it continues. The factor form is the spec's
    for positive metrics; for a best value <= 0 (where ``best / (1 + s)`` would be *above* ``best``) it is
    generalised to ``best - |best| * s / (1 + s)`` (maximise) and ``best + |best| * s`` (minimise), which are
    the same for positive values.
    """

    slack_factor: float | None = None
    slack_amount: float | None = None
    evaluation_interval: int = 1
    delay_evaluation: int = 0
    type: ClassVar[str] = "bandit"

    def __post_init__(self):
        super().__post_init__()
        if (self.slack_factor is None) == (self.slack_amount is None):
            raise ConfigError("bandit policy needs exactly one of slack_factor and slack_amount",
                              field="slack_factor", value=(self.slack_factor, self.slack_amount))
        for name in ("slack_factor", "slack_amount"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _positive(name, value))

    def cutoff(self, best: float, maximize: bool = True) -> float:
        """The value a trial must reach (maximise) or not exceed (minimise) to continue."""
        if math.isinf(best):
            return best
        if self.slack_amount is not None:
            return best - self.slack_amount if maximize else best + self.slack_amount
        s = self.slack_factor
        if maximize:
            return best / (1 + s) if best > 0 else best - abs(best) * s / (1 + s)
        return best * (1 + s) if best > 0 else best + abs(best) * s

    def _decide(self, trial_id, step, histories, maximize, metric):
        values = [_clean(h.values[step], maximize) for h in self._reporters(step, histories)]
        best = max(values) if maximize else min(values)
        value = _clean(histories[trial_id].values[step], maximize)
        cut = self.cutoff(best, maximize)
        if (value < cut) if maximize else (value > cut):
            slack = (f"slack_factor {self.slack_factor:g}" if self.slack_factor is not None
                     else f"slack_amount {self.slack_amount:g}")
            return Decision.STOP, (f"bandit: {metric} {_fmt(histories[trial_id].values[step])} at interval {step} "
                                   f"is not within {slack} of the best {_fmt(best)} (cut-off {_fmt(cut)})")
        return Decision.CONTINUE, None


@dataclass(frozen=True)
class MedianStoppingPolicy(EarlyTerminationPolicy):
    """Stop a trial whose best value so far is worse than the median of the other trials' running averages.

    At step ``k``: the trial's best value over its reports at steps ``<= k`` is compared with the median
    (``statistics.median``: the mean of the two middle values for an even count) of the running averages of
    the OTHER trials that have reported step ``k``, a running average being the mean of a trial's values at
    steps ``<= k``. Strictly worse stops; equal continues.

    The current trial is left out of the median (the cloud system's wording says "all runs"): a trial should
    be measured against the others, and including it pulls the median towards it (with two trials, the median
    would be their mean). With no other trial at step ``k`` the trial continues.
    """

    evaluation_interval: int = 1
    delay_evaluation: int = 0
    type: ClassVar[str] = "median_stopping"

    def _decide(self, trial_id, step, histories, maximize, metric):
        others = [h for h in self._reporters(step, histories) if h.trial_id != trial_id]
        if not others:
            return Decision.CONTINUE, None
        averages = []
        for h in others:
            upto = [_clean(v, maximize) for k, v in h.values.items() if k <= step]
            averages.append(sum(upto) / len(upto))
        median = statistics.median(averages)
        mine = [_clean(v, maximize) for k, v in histories[trial_id].values.items() if k <= step]
        best = max(mine) if maximize else min(mine)
        if (best < median) if maximize else (best > median):
            return Decision.STOP, (f"median stopping: best {metric} so far {_fmt(best)} at interval {step} is "
                                   f"{'below' if maximize else 'above'} the median {_fmt(median)} of the running "
                                   f"averages of {len(others)} other run{'s' if len(others) > 1 else ''}")
        return Decision.CONTINUE, None


@dataclass(frozen=True)
class TruncationSelectionPolicy(EarlyTerminationPolicy):
    """Stop the lowest ``truncation_percentage`` percent of the trials at each evaluated step.

    At step ``k`` the trials that reported it (without the finished ones when ``exclude_finished_jobs``)
    are ranked by their value at step ``k``. The ``floor(count * truncation_percentage / 100)`` worst are
    cut; the decision answers whether the current trial is among them. Ties are broken by keeping the
    earlier trial (earlier in the order of ``histories``: the order trials were started).

    The floor means the policy never cuts more than the percentage: with ``truncation_percentage=20`` no
    trial is cut until 5 trials have reported the step (in general ``ceil(100 / truncation_percentage)``).
    A finished trial is never stopped.
    """

    truncation_percentage: int
    evaluation_interval: int = 1
    delay_evaluation: int = 0
    exclude_finished_jobs: bool = False
    type: ClassVar[str] = "truncation_selection"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "truncation_percentage",
                           _int("truncation_percentage", self.truncation_percentage, low=1, high=99))
        object.__setattr__(self, "exclude_finished_jobs", _bool("exclude_finished_jobs", self.exclude_finished_jobs))

    def _decide(self, trial_id, step, histories, maximize, metric):
        if histories[trial_id].finished:
            return Decision.CONTINUE, None
        field_ = [h for h in self._reporters(step, histories)
                  if not (self.exclude_finished_jobs and h.finished)]
        n_cut = len(field_) * self.truncation_percentage // 100
        if n_cut == 0:
            return Decision.CONTINUE, None
        sign = 1.0 if maximize else -1.0
        # Worst first; among equal values the later trial (higher position) comes first, so it is cut first.
        ranked = sorted(enumerate(field_), key=lambda item: (sign * _clean(item[1].values[step], maximize),
                                                             -item[0]))
        cut = [h.trial_id for _, h in ranked[:n_cut]]
        if trial_id in cut:
            value = histories[trial_id].values[step]
            return Decision.STOP, (f"truncation selection: {metric} {_fmt(value)} at interval {step} is among the "
                                   f"lowest {self.truncation_percentage}% ({n_cut} of {len(field_)} runs)")
        return Decision.CONTINUE, None


# --------------------------------------------------------------------------------------------------------
def _int(name: str, value: Any, low: int, high: int | None = None) -> int:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
        and float(value).is_integer()
    if ok:
        value = int(value)
        ok = value >= low and (high is None or value <= high)
    if not ok:
        bound = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        raise ConfigError(f"{name} must be {bound}, got {value!r}", field=name, value=value)
    return value


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a number greater than 0, got {value!r}", field=name, value=value)
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise ConfigError(f"{name} must be true or false, got {value!r}", field=name, value=value)


_CLASSES: dict[str, type[EarlyTerminationPolicy]] = {
    "bandit": BanditPolicy,
    "median_stopping": MedianStoppingPolicy,
    "truncation_selection": TruncationSelectionPolicy,
}
# Successive halving and Hyperband (halving.py) build on the classes above; imported here so that
# make_policy knows every type.
from jupyter_avml.sweep.halving import HyperbandPolicy, SuccessiveHalvingPolicy  # noqa: E402

_CLASSES.update({"successive_halving": SuccessiveHalvingPolicy, "hyperband": HyperbandPolicy})
POLICY_TYPES = tuple(_CLASSES)
# Accepted spellings, compared after lower-casing and removing "_", "-", spaces and a trailing "policy".
_ALIASES = {"bandit": "bandit", "medianstopping": "median_stopping", "median": "median_stopping",
            "truncationselection": "truncation_selection", "truncation": "truncation_selection",
            "successivehalving": "successive_halving", "asha": "successive_halving", "hyperband": "hyperband",
            "none": None, "notermination": None, "": None}
_KEYS = {
    "bandit": ("slack_factor", "slack_amount", "evaluation_interval", "delay_evaluation"),
    "median_stopping": ("evaluation_interval", "delay_evaluation"),
    "truncation_selection": ("truncation_percentage", "evaluation_interval", "delay_evaluation",
                             "exclude_finished_jobs"),
    "successive_halving": ("min_resource", "reduction_factor", "evaluation_interval", "delay_evaluation"),
    "hyperband": ("min_resource", "reduction_factor", "brackets", "evaluation_interval", "delay_evaluation"),
    None: (),
}


def _policy_type(raw: Any) -> str | None:
    if raw is None:
        return None
    text = str(raw).strip().lower()
    for ch in "_- ":
        text = text.replace(ch, "")
    if text.endswith("policy"):
        text = text[: -len("policy")]
    if text in _ALIASES:
        return _ALIASES[text]
    close = difflib.get_close_matches(text, list(_ALIASES), n=1, cutoff=0.6)
    hint = f"; did you mean {_ALIASES[close[0]] or 'none'!r}?" if close else ""
    raise ConfigError(f"type must be one of {', '.join(POLICY_TYPES)} or none, "
                      f"got {raw!r}{hint}", field="early_termination_policy.type", value=raw)


def make_policy(config: Mapping[str, Any] | str | EarlyTerminationPolicy | None, *, source: str | None = None,
                line: int | None = None) -> EarlyTerminationPolicy:
    """The policy for ``early_termination_policy``.

    ``config`` is ``None`` (no early termination), a mapping ``{"type": ..., parameter: value...}``, a type
    name alone (for policies without required parameters), or a policy (returned as is). Types: ``bandit``,
    ``median_stopping``, ``truncation_selection``, ``successive_halving``, ``hyperband`` (``halving.py``),
    ``None``/``"none"``; the cloud names (``BanditPolicy``,
    ``MedianStoppingPolicy``, ``TruncationSelectionPolicy``) and ``median``, ``truncation`` are accepted.

    Raises
    ------
    ConfigError
        Unknown type or key (with a "did you mean"), a key of another policy, bandit without exactly one of
        ``slack_factor``/``slack_amount`` (> 0), ``truncation_percentage`` outside 1..99 or not an integer,
        ``evaluation_interval`` < 1, ``delay_evaluation`` < 0.
    """
    if isinstance(config, EarlyTerminationPolicy):
        return config
    if config is None or isinstance(config, str):
        config = {"type": config}
    if not isinstance(config, Mapping):
        raise ConfigError(f"early_termination_policy: expected a mapping with a type, got {config!r}",
                          field="early_termination_policy", value=config, source=source, line=line)
    try:
        kind = _policy_type(config.get("type"))
        params = {str(k): v for k, v in config.items() if k != "type"}
        allowed = _KEYS[kind]
        for key in params:
            if key in allowed:
                continue
            owners = [t for t, keys in _KEYS.items() if t is not None and key in keys]
            if owners:
                which = f"{' and '.join(owners)} polic{'ies' if len(owners) > 1 else 'y'}"
                raise ConfigError(f"{key} applies to the {which}, "
                                  f"not to {kind or 'none'}", field=key, value=params[key])
            every = sorted({k for keys in _KEYS.values() for k in keys})
            close = difflib.get_close_matches(key, list(allowed) or every, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown key {key!r}{hint}", field=key, value=params[key])
        if kind is None:
            return NoTerminationPolicy()
        if kind == "truncation_selection" and "truncation_percentage" not in params:
            raise ConfigError("truncation_selection policy needs truncation_percentage (1..99)",
                              field="truncation_percentage")
        return _CLASSES[kind](**params)
    except ConfigError as exc:
        raise ConfigError(f"early_termination_policy: {exc.message}", field=exc.field, value=exc.value,
                          source=source, line=line) from None
