"""AutoMode's plan: the portfolio, what the refinement may vary, and the early termination it runs with.

AutoMode is the spec's newer mode: ``iterations > 1`` (or ``limits.max_trials``) with no ``search_space``
means the system chooses the models and hyperparameters (``sampling: auto`` asks for it explicitly). The plan
is made once, when the experiment is validated, from the task, the settings the user fixed and the hardware
the children will get; it is recorded in ``experiment.yaml`` under ``automode`` so that the driver, a
resumed driver and every reader see the same plan (a plan given there is used as written, after
validation). ``AutoModePlan`` is the experiment's search space (one fixed sub-space per portfolio entry),
so the rest of the sweep (validation of each entry, dry runs, the driver) treats it like any other space.

``iterations`` children in all: the portfolio's entries first, in order (at most 6, and three quarters of the
iterations at most, rounded up), then Bayesian refinement around the best child so far (``sampler.py``). The
early termination policy, unless the user gives one, is Hyperband (``AUTOMODE_POLICY``), the setting
``benchmarks/sweep.py`` measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.automode.hardware import Hardware
from jupyter_avml.sweep.space import SearchSpace

__all__ = ["AutoModePlan", "make_plan", "AUTOMODE_POLICY", "REFINE_KEYS"]

#: The early termination AutoMode uses unless the user sets ``early_termination_policy``: Hyperband with two
#: brackets, one judging from the first epoch, one from the third (``benchmarks/sweep.py`` replays the
#: alternatives on recorded curves: on generated data a single successive halving from epoch 1 lost 9 points on
#: average, this setting none, saving 37-40 % of child-epochs; on a small, noisy real-photo sweep it saved 28 %
#: and lost 3 points: the issue's target, >= 40 % at <= 1 point, is not met everywhere yet).
AUTOMODE_POLICY = {"type": "hyperband", "min_resource": 1, "reduction_factor": 3, "brackets": 2}

#: Most entries a recorded plan may hold (``iterations`` is at most 1000).
MAX_PORTFOLIO = 1000

#: What the refinement may vary, per model family (each only when the user did not fix it).
REFINE_KEYS = {
    "timm": ("learning_rate", "weight_decay", "train_crop_size"),
    "torchvision": ("learning_rate", "weight_decay", "min_size"),
    "yolov5": ("learning_rate", "weight_decay", "img_size"),
}


class AutoModePlan(SearchSpace):
    """The portfolio as a search space (sub-space ``i`` = entry ``i``, every value fixed) plus the plan.

    Attributes
    ----------
    whys : list of str
        Why each entry was chosen, in order (shown on the dashboard beside each child).
    refine : dict
        ``{model_name: {key: resolved default}}``: the settings the refinement may vary for each model of the
        portfolio, with the value a child that did not set them ran with.
    fixed_keys : list of str
        Settings the user fixed (never varied).
    hardware : dict
        ``Hardware.to_dict()`` of the machine the plan was made for.
    notes : list of str
        Models and variants left out, and why.
    policy : dict or None
        The early termination AutoMode chose (None when the user gave one).
    """

    def __init__(self, entries: list[dict[str, Any]], whys: list[str], *, refine: Mapping[str, Mapping[str, Any]],
                 fixed_keys: list[str], hardware: Mapping[str, Any], notes: list[str] = (),
                 policy: Mapping[str, Any] | None = None):
        if not entries:
            raise ConfigError("AutoMode found no configuration to try: " + ("; ".join(notes) or "no model fits"),
                              field="automode")
        super().__init__([dict(e) for e in entries])
        self.whys = list(whys)
        self.refine = {str(k): dict(v) for k, v in refine.items()}
        self.fixed_keys = list(fixed_keys)
        self.hardware = dict(hardware)
        self.notes = list(notes)
        self.policy = dict(policy) if policy else None

    @property
    def portfolio(self) -> list[dict[str, Any]]:
        return [dict(s) for s in self.subspaces]

    def to_dict(self) -> dict[str, Any]:
        """What ``experiment.yaml`` records under ``automode`` (read back by ``from_dict``)."""
        return {"hardware": dict(self.hardware),
                "portfolio": [{"params": dict(p), "why": w} for p, w in zip(self.subspaces, self.whys, strict=True)],
                "refine": {k: dict(v) for k, v in self.refine.items()}, "fixed": list(self.fixed_keys),
                "notes": list(self.notes), "policy": dict(self.policy) if self.policy else None}

    @classmethod
    def from_dict(cls, data: Any, *, fixed: Mapping[str, Any]) -> AutoModePlan:
        """Read a recorded plan; ``ConfigError`` naming ``automode.<key>`` when it is not one.

        An entry may not set what the experiment fixes (``fixed``): the plan would search a value that is
        then overridden.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"automode must be a mapping (the plan AutoMode recorded), got {data!r}",
                              field="automode", value=data)
        from jupyter_avml.config.config import AutoMLImageConfig
        from jupyter_avml.config.params import PARAMS

        portfolio = data.get("portfolio")
        if not isinstance(portfolio, list) or not portfolio or len(portfolio) > MAX_PORTFOLIO:
            raise ConfigError(f"automode.portfolio must be a list of 1 to {MAX_PORTFOLIO} {{params, why}}",
                              field="automode.portfolio", value=f"{type(portfolio).__name__} of "
                              f"{len(portfolio) if isinstance(portfolio, list) else 0}")
        entries, whys = [], []
        for index, item in enumerate(portfolio):
            params = item.get("params") if isinstance(item, Mapping) else None
            if not isinstance(params, Mapping) or "model_name" not in params and "model_name" not in fixed:
                raise ConfigError(f"automode.portfolio[{index}] must be {{params: {{model_name: ..., ...}}, why: "
                                  f"...}}, got {item!r}", field=f"automode.portfolio[{index}]", value=item)
            where = f"automode.portfolio[{index}]"
            overlap = sorted(set(params) & set(fixed))
            if overlap:
                raise ConfigError(f"{where} sets {', '.join(overlap)}, which the experiment also sets; set it in "
                                  f"one place", field=where, value=overlap)
            wrong = [str(k) for k in params if k not in PARAMS or (not PARAMS[k].hyperparameter and k != "model_name")]
            if wrong:
                raise ConfigError(f"{where} sets {', '.join(wrong)}: an entry holds hyperparameters (and "
                                  f"model_name) only", field=where, value=wrong)
            try:  # an entry is a whole configuration: every value must be valid as it stands
                AutoMLImageConfig.from_dict({**fixed, **params})
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc.message}", field=where, value=exc.value) from None
            entries.append(dict(params))
            whys.append(str(item.get("why") or f"portfolio {index + 1}/{len(portfolio)}"))
        refine = data.get("refine") or {}
        if not isinstance(refine, Mapping) or not all(isinstance(v, Mapping) for v in refine.values()):
            raise ConfigError("automode.refine must map model names to {setting: default}", field="automode.refine",
                              value=refine)
        for model, keys in refine.items():
            unknown = sorted(str(k) for k in keys if k not in PARAMS or not PARAMS[k].hyperparameter)
            if unknown:
                raise ConfigError(f"automode.refine.{model} names {', '.join(unknown)}, which are not "
                                  f"hyperparameters", field=f"automode.refine.{model}", value=unknown)
            overlap = sorted(set(keys) & set(fixed))
            if overlap:
                raise ConfigError(f"automode.refine.{model} varies {', '.join(overlap)}, which the experiment sets",
                                  field=f"automode.refine.{model}", value=overlap)
        policy = data.get("policy")
        if policy is not None and not isinstance(policy, Mapping):
            raise ConfigError(f"automode.policy must be a policy mapping or null, got {policy!r}",
                              field="automode.policy", value=policy)
        return cls(entries, whys, refine=refine, fixed_keys=list(data.get("fixed") or sorted(fixed)),
                   hardware=dict(data.get("hardware") or {}), notes=[str(n) for n in data.get("notes") or []],
                   policy=policy)

    def describe(self) -> list[str]:
        """Lines for a dry run: the hardware, each entry with its reason, what was left out."""
        kind = self.hardware.get("kind", "?")
        lines = [f"AutoMode on {kind}: {len(self.subspaces)} portfolio entries, then Bayesian refinement"]
        lines += [f"  {i}: {why}" for i, why in enumerate(self.whys)]
        lines += [f"  note: {note}" for note in self.notes]
        return lines

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AutoModePlan) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"AutoModePlan({len(self.subspaces)} entries on {self.hardware.get('kind', '?')})"


def make_plan(task, fixed: Mapping[str, Any], *, iterations: int, user_policy: bool,
              hardware: Hardware | None = None, workspace=None) -> AutoModePlan:
    """Plan AutoMode for ``task`` with the user's fixed settings on ``hardware`` (detected when None).

    Raises ``ConfigError`` when no configuration fits (every model left out, with the reasons).
    """
    from jupyter_avml.config.config import AutoMLImageConfig
    from jupyter_avml.sweep.automode.hardware import detect_hardware
    from jupyter_avml.sweep.automode.portfolio import PORTFOLIO_SIZE, build_portfolio

    if "pretrained_weights" in fixed and "model_name" not in fixed:
        raise ConfigError("AutoMode with pretrained_weights needs model_name: the weights file fits one "
                          "architecture", field="pretrained_weights", value=fixed["pretrained_weights"])
    hardware = hardware or detect_hardware(fixed.get("device"))
    # A quarter of the iterations (rounded down) is left to the refinement, the portfolio has at most 6.
    size = min(PORTFOLIO_SIZE, max(1, iterations - iterations // 4))
    result = build_portfolio(task, fixed, hardware, size=size, workspace=workspace)
    refine: dict[str, dict[str, Any]] = {}
    for entry in result.entries:
        config = AutoMLImageConfig.from_dict({**fixed, **entry.params})
        keys = REFINE_KEYS.get(config.model_spec.family, ())
        refine.setdefault(config.model_name, {k: config[k] for k in keys if k not in fixed and k in config})
    return AutoModePlan([e.params for e in result.entries], [e.why for e in result.entries], refine=refine,
                        fixed_keys=sorted(fixed), hardware=hardware.to_dict(), notes=result.notes,
                        policy=None if user_policy else AUTOMODE_POLICY)
