"""AutoMode's sampler: the portfolio in order, then Bayesian refinement around the best child so far.

Like every sampler of the sweep (``sampling.py``), trial ``n`` is a pure function of the plan, the seed, ``n``
and the recorded history, so a resumed sweep proposes what an uninterrupted one would have.

Refinement (trials past the portfolio):

1. the *anchor* is the best child so far (highest primary value among completed and early-stopped
   children; ties: completed first, then the earlier); before any result, the first portfolio entry;
2. its neighbourhood keeps every setting of the anchor but the refinable ones of its model
   (``AutoModePlan.refine``: learning rate, weight decay, input size, each only when the user did not fix
   it) and varies those: the learning rate within a factor 4 of the anchor's (log scale), the weight decay
   within a factor 10, the size one step (32 px for crops and YOLO, 96 px for detectors' ``min_size``) up or
   down;
3. Optuna's TPE, seeded by ``(seed, n)``, models the children of that neighbourhood recorded so far
   (completed ones with their best value, early-stopped ones as pruned with their evaluations) and suggests
   the next point. Sizes that depend on the varied one follow it (``valid_crop_size``, ``valid_resize_size``,
   ``max_size``) unless the user fixed them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jupyter_avml.sweep.automode.plan import AutoModePlan
from jupyter_avml.sweep.sampling import Sampler, Trial, TrialRecord

__all__ = ["AutoSampler"]

#: Random trials TPE makes in a neighbourhood before it models it.
STARTUP_TRIALS = 2


class AutoSampler(Sampler):
    """``propose(n, history)``: portfolio entry ``n``, or a refinement around the best (module docstring)."""

    name = "auto"

    def __init__(self, plan: AutoModePlan, seed: int | None = 0):
        if not isinstance(plan, AutoModePlan):
            raise TypeError(f"AutoSampler needs an AutoModePlan, got {type(plan).__name__}")
        super().__init__(plan, seed=seed)
        self.plan = plan

    def propose(self, number: int, history: Sequence[TrialRecord] = ()) -> Trial:
        plan = self.plan
        if 0 <= number < len(plan.subspaces):
            return Trial(number=number, params=copy.deepcopy(plan.subspaces[number]), subspace=number,
                         why=plan.whys[number])
        history = sorted((r for r in history if r.number != number), key=lambda r: r.number)
        return self._refine(number, history)

    # -- refinement ---------------------------------------------------------------------------------------
    def _anchor(self, history: Sequence[TrialRecord]) -> TrialRecord | None:
        scored = [r for r in history if r.state in ("complete", "pruned") and r.value is not None
                  and math.isfinite(r.value)]
        if not scored:
            return None
        return max(scored, key=lambda r: (r.value, r.state == "complete", -r.number))

    def _model_of(self, params: dict[str, Any]) -> str:
        return str(params.get("model_name") or next(iter(self.plan.refine), ""))

    def _refine(self, number: int, history: Sequence[TrialRecord]) -> Trial:
        import optuna

        anchor = self._anchor(history)
        base = dict(anchor.params) if anchor is not None else dict(self.plan.subspaces[0])
        defaults = self.plan.refine.get(self._model_of(base), {})
        if not defaults:  # nothing may vary: the anchor's neighbourhood is the anchor
            return Trial(number=number, params=base, subspace=None,
                         why="refinement: every refinable setting is fixed; the best configuration again")
        center = {key: base.get(key, default) for key, default in defaults.items()}
        distributions = _neighbourhood(center)
        fixed_part = {k: v for k, v in base.items() if k not in _dependent_keys(defaults)}

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize")
        modelled = 0
        for record in history:
            trial = _as_trial(record, fixed_part, defaults, distributions)
            if trial is not None:
                study.add_trial(trial)
                modelled += 1
        seed = int(np.random.SeedSequence([self.seed, int(number)]).generate_state(1)[0])
        study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
        suggested = study.ask(distributions).params
        params = dict(fixed_part)
        for key, value in suggested.items():
            params[key] = _round(value) if isinstance(value, float) else value
        params.update(_followers(params, defaults, self._model_of(base)))
        if anchor is not None:
            what = f"around child {anchor.number} (best so far: {anchor.value:.4f}, {anchor.state})"
        else:
            what = "around the first portfolio entry (no result yet)"
        why = (f"Bayesian refinement (TPE) {what}: varies {', '.join(distributions)}; {modelled} child"
               f"{'ren' if modelled != 1 else ''} of this neighbourhood modelled")
        return Trial(number=number, params=params, subspace=None, why=why)


def _neighbourhood(center: dict[str, Any]) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    out: dict[str, Any] = {}
    for key, value in center.items():
        if key == "learning_rate":
            value = float(value) if value else 0.01
            out[key] = FloatDistribution(value / 4, min(1.0, value * 4), log=True)
        elif key == "weight_decay":
            value = float(value) if value else 1e-4
            out[key] = FloatDistribution(max(1e-7, value / 10), min(0.1, value * 10), log=True)
        elif key in ("train_crop_size", "img_size", "min_size"):
            step = 96 if key == "min_size" else 32
            out[key] = CategoricalDistribution([s for s in (int(value) - step, int(value), int(value) + step)
                                                if s >= 32])
    return out


def _dependent_keys(defaults: dict[str, Any]) -> set[str]:
    """The refinable keys and the sizes that follow them (they are set from the suggestion)."""
    keys = set(defaults)
    if "train_crop_size" in defaults:
        keys |= {"valid_crop_size", "valid_resize_size"}
    if "min_size" in defaults:
        keys.add("max_size")
    return keys


def _followers(params: dict[str, Any], defaults: dict[str, Any], model_name: str) -> dict[str, Any]:
    """Sizes that follow a varied one, as the portfolio sets them (only those the plan may set)."""
    from jupyter_avml.models import get_model_spec
    from jupyter_avml.sweep.automode.portfolio import classifier_sizes

    out: dict[str, Any] = {}
    if "train_crop_size" in params and "train_crop_size" in defaults:
        sizes = classifier_sizes(get_model_spec(model_name), int(params["train_crop_size"]))
        out.update(valid_crop_size=sizes["valid_crop_size"], valid_resize_size=sizes["valid_resize_size"])
    if "min_size" in params and "min_size" in defaults:
        out["max_size"] = int(round(int(params["min_size"]) * 4 / 3))
    return out


def _as_trial(record: TrialRecord, fixed_part: dict[str, Any], defaults: dict[str, Any], distributions):
    """A recorded child as an Optuna trial of the neighbourhood, or None when it is outside it."""
    from jupyter_avml.sweep.sampling import optuna_trial

    params = dict(record.params)
    if {k: v for k, v in params.items() if k not in _dependent_keys(defaults)} != fixed_part:
        return None
    values = {}
    for key, distribution in distributions.items():
        value = params.get(key, defaults.get(key))
        try:
            internal = distribution.to_internal_repr(value)
        except (ValueError, TypeError):
            return None
        if not distribution._contains(internal):
            return None
        values[key] = value
    return optuna_trial(record, values, distributions)


def _round(value: float) -> float:
    """Three significant digits: readable in the leaderboard, and the same on every machine."""
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.3g}")
