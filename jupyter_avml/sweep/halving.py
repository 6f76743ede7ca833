"""Multi-fidelity early termination: successive halving and Hyperband over evaluations (epochs).

Both are early termination policies like the spec's bandit, median stopping and truncation selection
(``policies.py``): pure decisions over the recorded histories, in the same vocabulary (a *step* is a child's
k-th report of the primary metric; with ``evaluation_frequency: 1`` that is its k-th epoch). They are
stop-based, asynchronous forms of the algorithms (as Ray Tune's ASHA and Optuna's pruners are): a child is
never paused waiting for others, it is judged when it reaches a *rung* and either goes on or stops there.

Successive halving (``type: successive_halving``)
    Rungs at steps ``min_resource * reduction_factor ** k`` (k = 0, 1, 2...; rounded to whole steps).
    When a child reports a rung's step, its *rung value* (its best value at steps up to the rung: one noisy
    evaluation does not decide) is compared with the rung values of every child that has reached that rung
    so far, finished and stopped ones included. With ``n`` of them, the child goes on when fewer than
    ``max(1, floor(n / reduction_factor))`` are strictly better, i.e. when it is in the top
    ``1 / reduction_factor``; otherwise it stops. The first child at a rung always goes on, so the order in
    which children start matters: AutoMode starts its most promising configurations first.

Hyperband (``type: hyperband``)
    ``brackets`` successive halvings side by side: bracket ``s`` (0-based) starts its rungs at
    ``min_resource * reduction_factor ** s`` steps, so bracket 0 is the most aggressive and higher brackets
    let slow starters run longer before they are judged. A child belongs to bracket ``id % brackets`` (child
    ids are integers; another id is hashed), and is compared only with children of its own bracket.

Parameters, in the policy mapping (``early_termination_policy``):

- ``min_resource`` (integer >= 1, default 1): the first rung, in evaluations;
- ``reduction_factor`` (number >= 2, default 3): about ``1 / reduction_factor`` of the children reaching a
  rung go on past it;
- ``brackets`` (hyperband only, integer >= 1, default 3);
- ``evaluation_interval``, ``delay_evaluation`` (as every policy: a rung is judged only at steps where the
  policy evaluates).

What it saves and what it may cost is measured in ``benchmarks/sweep.py`` (child-epochs saved against
best metric lost); the settings AutoMode uses (``automode.policy``) come from there.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.policies import Decision, EarlyTerminationPolicy, TrialHistory, _clean, _fmt, _int

__all__ = ["SuccessiveHalvingPolicy", "HyperbandPolicy", "rung_steps"]

#: Most rungs computed: rung steps grow geometrically, and no child reports 2**40 evaluations.
_MAX_RUNGS = 40


def rung_steps(min_resource: int, reduction_factor: float, upto: int) -> list[int]:
    """The rung steps ``round(min_resource * reduction_factor ** k)`` that are ``<= upto``, increasing."""
    steps: list[int] = []
    for k in range(_MAX_RUNGS):
        step = int(round(min_resource * reduction_factor ** k))
        if step > upto:
            break
        if not steps or step > steps[-1]:
            steps.append(step)
    return steps


def _rung_value(history: TrialHistory, rung: int, maximize: bool) -> float | None:
    """The best value a trial reported at steps ``<= rung``; None when it has not reported ``rung``."""
    if rung not in history.values:
        return None
    values = [_clean(v, maximize) for step, v in history.values.items() if step <= rung]
    return max(values) if maximize else min(values)


def _factor(value) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value >= 2
    if not ok:
        raise ConfigError(f"reduction_factor must be a number >= 2, got {value!r}", field="reduction_factor",
                          value=value)
    return float(value)


@dataclass(frozen=True)
class SuccessiveHalvingPolicy(EarlyTerminationPolicy):
    """Asynchronous successive halving (see the module docstring)."""

    min_resource: int = 1
    reduction_factor: float = 3.0
    evaluation_interval: int = 1
    delay_evaluation: int = 0
    type: ClassVar[str] = "successive_halving"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "min_resource", _int("min_resource", self.min_resource, low=1))
        object.__setattr__(self, "reduction_factor", _factor(self.reduction_factor))

    def is_rung(self, step: int, bracket: int = 0) -> bool:
        """Whether ``step`` is a rung of ``bracket`` (rungs start at ``min_resource * factor ** bracket``)."""
        first = int(round(self.min_resource * self.reduction_factor ** bracket))
        return step in rung_steps(first, self.reduction_factor, step)

    def _decide(self, trial_id, step, histories, maximize, metric):
        return self._judge(trial_id, step, histories, maximize, metric, bracket=0, peers=histories)

    def _judge(self, trial_id: str, step: int, histories: Mapping[str, TrialHistory], maximize: bool,
               metric: str, *, bracket: int, peers: Mapping[str, TrialHistory]) -> tuple[Decision, str | None]:
        if not self.is_rung(step, bracket):
            return Decision.CONTINUE, None
        mine = _rung_value(histories[trial_id], step, maximize)
        values = [v for v in (_rung_value(h, step, maximize) for h in peers.values()) if v is not None]
        keep = max(1, int(len(values) // self.reduction_factor))
        better = sum(1 for v in values if (v > mine if maximize else v < mine))
        if better < keep:
            return Decision.CONTINUE, None
        ranked = sorted(values, reverse=maximize)
        cutoff = ranked[keep - 1]
        where = f" (bracket {bracket})" if isinstance(self, HyperbandPolicy) else ""
        return Decision.STOP, (f"{self.type.replace('_', ' ')}{where}: {metric} {_fmt(mine)} (best so far) at "
                               f"interval {step} is not in the top {keep} of the {len(values)} runs that reached "
                               f"this rung (top 1/{self.reduction_factor:g}: cut-off {_fmt(cutoff)})")


@dataclass(frozen=True)
class HyperbandPolicy(SuccessiveHalvingPolicy):
    """Hyperband: ``brackets`` successive halvings with growing first rungs (see the module docstring)."""

    brackets: int = 3
    type: ClassVar[str] = "hyperband"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "brackets", _int("brackets", self.brackets, low=1))

    def bracket_of(self, trial_id: str) -> int:
        """``id % brackets`` for an integer id (a sweep's child ids), else a stable hash of the id."""
        text = str(trial_id)
        if text.isdigit():
            return int(text) % self.brackets
        return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") % self.brackets

    def _decide(self, trial_id, step, histories, maximize, metric):
        bracket = self.bracket_of(trial_id)
        peers = {key: h for key, h in histories.items() if self.bracket_of(key) == bracket}
        return self._judge(trial_id, step, histories, maximize, metric, bracket=bracket, peers=peers)
