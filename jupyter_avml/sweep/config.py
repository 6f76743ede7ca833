"""The experiment (sweep) configuration: one mapping of run settings plus sweep settings (spec sections 8-9).

One YAML file or dict holds both:

* run settings: any key of ``config.params.PARAMS`` (``task``, ``training_data``, ``model_name``,
  hyperparameters...): fixed for every child;
* sweep settings, with the spec's names:

  ==============================  ==========================================================================
  ``sampling``                    ``random``, ``grid`` or ``bayesian`` (alias ``hyperparameter_sampling``;
                                  the cloud class names ``RandomParameterSampling``... are accepted), or
                                  ``auto`` (AutoMode). Default: ``grid`` without a search space, else
                                  ``random``; AutoMode when ``iterations > 1`` without a search space.
  ``iterations``                  1..1000, the most configurations to try. Required with a search space;
                                  1 without one (the spec's baseline), or more for AutoMode: the system
                                  then chooses models and hyperparameters (``sweep.automode``; its plan is
                                  recorded under ``automode``). Grid sampling caps it at the number of
                                  combinations. A refused (``invalid``) configuration counts.
  ``max_concurrent_iterations``   1..100; default: all at once, bounded by the real slots (``slots.py``).
  ``experiment_timeout_hours``    the budget, > 0 and at most 1440 (60 days); default 168 (7 days).
  ``timeout_minutes``             the budget in minutes (finer); give it or ``experiment_timeout_hours``.
  ``early_termination_policy``    ``{type: bandit|median_stopping|truncation_selection|successive_halving|
                                  hyperband, ...}`` (``policies.make_policy``); none by default (AutoMode:
                                  Hyperband).
  ``arguments``                   fixed settings for every child, ``["--early_stopping", 1, ...]`` or
                                  ``{early_stopping: 1}``; each name must be a run setting.
  ``search_space``                a mapping ``{parameter: expression}`` or a list of mappings (conditional
                                  sub-spaces), read by ``space.SearchSpace.from_config``.
  ``cpu_slots``                   (jupyter_avml) how many children run at once on the CPU; each gets
                                  ``cores // cpu_slots`` torch threads (see ``slots.py``).
  ``executor``, ``ray_address``,  (jupyter_avml) where children run: local worker processes or a Ray
  ``cpus_per_child``,             cluster, and what one child reserves (``executor_config.py``).
  ``gpus_per_child``,
  ``child_retries``
  ``trial_timeout_minutes``       the most minutes one child may train (> 0); a child past it is stopped
                                  cleanly (status ``stopped``, its best model kept). Default: no limit.
  ``compute_target``              where children run (``cloud_settings``): ``local`` (this machine's
                                  GPUs, or the CPU), ``cpu``, ``cuda``, ``cuda:N``; sets ``device``.
                                  Cloud cluster names are refused with what to use instead.
  ``primary_metric``              the task's primary metric (spec section 1); another one is refused.
  ==============================  ==========================================================================

The newer cloud names are aliases: ``limits: {max_trials, max_concurrent_trials, timeout_minutes,
trial_timeout}`` (``trial_timeout`` in minutes, like ``timeout_minutes``), ``sweep: {sampling_algorithm,
early_termination}`` and ``training_parameters: {...}`` (= ``arguments``); settings may be given by their
newer names (``config.params.ALIASES``: ``validation_data_size``, ``image_size``...) anywhere a run setting
goes, including the search space.
The run setting ``seed`` also seeds the sampler (default 0).

Checks made before anything starts: unknown keys (with a "did you mean" and the YAML line), ranges, the
sampling's rules, parameters of the search space that are not run settings or do not apply to the swept
models, a setting both fixed and searched, and the fixed part validated by ``AutoMLImageConfig`` (with the
first value of each ``choice``, the centre of each continuous expression). Each sampled configuration is
validated again when its child is about to start (``ExperimentConfig.child_config``): a refused one becomes
an ``invalid`` child, never a crash.

Why one module of about 620 lines: it is one parser of one mapping, whose checks run in the order a user's
file is read and share its lines for messages; what exists for users of the cloud system (``compute_target``,
``primary_metric``, the newer names) is in ``cloud_settings.py``.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_avml.config.config import PATH_KEYS, AutoMLImageConfig
from jupyter_avml.config.params import ALIASES, PARAMS, TASK_DEFAULTS, canonical_name, family_scopes
from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.config_text import load_yaml_nested, written_form, yaml_scalar
from jupyter_avml.sweep.executor_config import EXECUTOR_KEYS, ExecutorSettings, parse_executor_settings
from jupyter_avml.sweep.policies import EarlyTerminationPolicy, NoTerminationPolicy, make_policy
from jupyter_avml.sweep.preflight import search_range_problem
from jupyter_avml.sweep.space import Choice, Distribution, SearchSpace, choice

__all__ = ["ExperimentConfig", "parse_experiment", "read_experiment", "load_yaml_nested", "SWEEP_KEYS",
           "DEFAULT_TIMEOUT_HOURS", "MAX_TIMEOUT_HOURS"]

DEFAULT_TIMEOUT_HOURS = 168.0     # 7 days (spec section 8)
MAX_TIMEOUT_HOURS = 1440.0        # "at most 60 days"
MAX_ITERATIONS = 1000
MAX_CONCURRENT = 100

SWEEP_KEYS = ("sampling", "hyperparameter_sampling", "iterations", "max_concurrent_iterations",
              "experiment_timeout_hours", "timeout_minutes", "early_termination_policy", "arguments",
              "search_space", "cpu_slots", "limits", "sweep", "training_parameters", "experiment_name",
              "trial_timeout_minutes", "compute_target", "primary_metric", "automode", *EXECUTOR_KEYS)
# Aliases inside the newer cloud sections -> the canonical key.
LIMITS_KEYS = {"max_trials": "iterations", "max_concurrent_trials": "max_concurrent_iterations",
               "timeout_minutes": "timeout_minutes", "trial_timeout": "trial_timeout_minutes",
               "trial_timeout_minutes": "trial_timeout_minutes"}
SWEEP_SECTION_KEYS = {"sampling_algorithm": "sampling", "early_termination": "early_termination_policy"}


@dataclass
class ExperimentConfig:
    """A validated experiment: the fixed run settings, the search space and the sweep settings.

    ``fixed`` holds the run settings every child shares (top-level keys and ``arguments``), with relative
    data paths made absolute; ``raw`` is the mapping as given with the same paths made absolute and search
    expressions written as text, so ``parse_experiment(raw)`` gives this configuration back (it is what
    ``experiment.yaml`` holds).
    """

    fixed: dict[str, Any]
    space: SearchSpace
    has_search_space: bool
    sampling: str
    iterations: int
    max_concurrent_iterations: int | None
    budget_seconds: float
    policy: EarlyTerminationPolicy
    seed: int
    cpu_slots: int | None
    task: str
    primary_metric: str
    experiment_name: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    trial_timeout_seconds: float | None = None
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)

    @property
    def beyond_spec(self) -> list[str]:
        """What this experiment does that the cloud system would refuse (``cloud_settings.beyond_spec``)."""
        from jupyter_avml.sweep.cloud_settings import beyond_spec

        return beyond_spec(self)

    @property
    def automode(self):
        """AutoMode's plan (``sweep.automode.AutoModePlan``, also the search space), None for other sweeps."""
        from jupyter_avml.sweep.automode import AutoModePlan

        return self.space if isinstance(self.space, AutoModePlan) else None

    @property
    def policy_config(self) -> dict[str, Any] | None:
        """``early_termination_policy`` as recorded in the state (``None`` without one)."""
        if isinstance(self.policy, NoTerminationPolicy):
            return None
        return self.policy.to_dict()

    @property
    def has_policy(self) -> bool:
        return not isinstance(self.policy, NoTerminationPolicy)

    def child_config(self, params: Mapping[str, Any]) -> AutoMLImageConfig:
        """The configuration of one child: the fixed settings with ``params`` on top, validated.

        Raises ``ConfigError`` when the combination is refused (the child is then ``invalid``).
        """
        return AutoMLImageConfig.from_dict({**self.fixed, **dict(params)})

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.raw, sort_keys=False)


# --------------------------------------------------------------------------------------------------------
def read_experiment(path: str | os.PathLike) -> ExperimentConfig:
    """Read an experiment YAML file (relative data paths are relative to the file's folder)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read experiment configuration: {exc.strerror}", source=str(path)) from None
    data, lines = load_yaml_nested(text, source=str(path))
    return parse_experiment(data, source=str(path), lines=lines, base_dir=path.resolve().parent)


def parse_experiment(data: Mapping[str, Any] | str | os.PathLike | ExperimentConfig, *,
                     source: str | None = None, lines: Mapping[str, int] | None = None,
                     base_dir: str | os.PathLike | None = None) -> ExperimentConfig:
    """Validate an experiment given as a mapping, a YAML file path or an ``ExperimentConfig``.

    ``lines`` maps keys (dotted paths for nested keys) to YAML line numbers for messages; relative data
    paths are taken from ``base_dir`` (default: the current folder).

    Raises
    ------
    ConfigError
        Naming the file, line, key and value of the first problem.
    """
    if isinstance(data, ExperimentConfig):
        return data
    if isinstance(data, (str, os.PathLike)):
        return read_experiment(data)
    if not isinstance(data, Mapping):
        raise ConfigError(f"an experiment is a mapping of settings (or a YAML file path), got {type(data).__name__}",
                          source=source)
    return _Parser(dict(data), source, dict(lines or {}), Path(base_dir) if base_dir else Path.cwd()).parse()


class _Parser:
    def __init__(self, data: dict[str, Any], source: str | None, lines: dict[str, int], base_dir: Path):
        self.data = {str(k): v for k, v in data.items()}
        self.source, self.lines, self.base_dir = source, lines, base_dir

    def fail(self, message: str, key: str | None = None, value: Any = None, line_key: str | None = None
             ) -> ConfigError:
        line = self.lines.get(line_key or key) if (line_key or key) else None
        if line is None and key and "." in key:
            line = self.lines.get(key.split(".")[0])
        return ConfigError(message, field=key, value=value, source=self.source, line=line)

    # -- the whole thing --------------------------------------------------------------------------------
    def parse(self) -> ExperimentConfig:
        data = self.data
        run: dict[str, Any] = {}
        sweep: dict[str, tuple[Any, str]] = {}  # canonical key -> (value, where it was given)
        for key, value in data.items():
            if key in PARAMS or key in ALIASES:
                run[key] = value
            elif key in SWEEP_KEYS:
                continue
            else:
                close = difflib.get_close_matches(key, list(PARAMS) + list(SWEEP_KEYS), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.fail(f"unknown setting {key!r}{hint}", key, value)

        def put(canonical: str, value: Any, where: str) -> None:
            if canonical in sweep and sweep[canonical][0] != value:
                raise self.fail(f"{where} and {sweep[canonical][1]} both set {canonical} "
                                f"({value!r} and {sweep[canonical][0]!r}); give one", where, value)
            sweep[canonical] = (value, where)

        for key in ("sampling", "iterations", "max_concurrent_iterations", "experiment_timeout_hours",
                    "timeout_minutes", "early_termination_policy", "search_space", "cpu_slots",
                    "trial_timeout_minutes", *EXECUTOR_KEYS):
            if key in data and data[key] is not None:
                put(key, data[key], key)
        if data.get("hyperparameter_sampling") is not None:
            put("sampling", data["hyperparameter_sampling"], "hyperparameter_sampling")
        for section, mapping in (("limits", LIMITS_KEYS), ("sweep", SWEEP_SECTION_KEYS)):
            value = data.get(section)
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise self.fail(f"{section} must be a mapping ({', '.join(mapping)}), got {value!r}", section, value)
            for sub, sub_value in value.items():
                where = f"{section}.{sub}"
                if sub not in mapping:
                    close = difflib.get_close_matches(str(sub), list(mapping), n=1, cutoff=0.6)
                    hint = f"; did you mean {close[0]!r}?" if close else f"; keys: {', '.join(mapping)}"
                    raise self.fail(f"unknown key {sub!r} in {section}{hint}", where, sub_value)
                if sub_value is not None:
                    put(mapping[sub], sub_value, where)

        fixed, fixed_lines = self._fixed(run)
        task = self._task(fixed)
        self._cloud_settings(fixed, fixed_lines, task)
        sampling = self._sampling(sweep)
        policy = self._policy(sweep)
        space, has_space = self._space(sweep, fixed, task)
        automode = self._automode(sweep, has_space, sampling, fixed, task)
        if automode is not None:  # AutoMode: the plan is the search space (sweep.automode)
            space, has_space, sampling = automode, True, "auto"
            if automode.policy is not None:
                policy = make_policy(automode.policy)
        elif "sampling" not in sweep:
            sampling = "random" if has_space else "grid"
        self._check_sampling(sampling, space, sweep)
        iterations = self._iterations(sweep, has_space, sampling, space)
        concurrent = self._int(sweep, "max_concurrent_iterations", 1, MAX_CONCURRENT)
        budget = self._budget(sweep)
        trial_timeout = self._trial_timeout(sweep)
        cpu_slots = self._int(sweep, "cpu_slots", 1, 4096)
        executor = parse_executor_settings({k: sweep[k] for k in EXECUTOR_KEYS if k in sweep}, self.fail,
                                           device=fixed.get("device"), cpu_slots=cpu_slots)
        self._validate_fixed(fixed, fixed_lines, space)
        self._check_data_files(fixed, fixed_lines)
        seed = fixed.get("seed", 0)
        seed = int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else 0
        name = data.get("experiment_name")
        if name is not None and not isinstance(name, str):
            raise self.fail(f"experiment_name must be a string, got {name!r}", "experiment_name", name)
        from jupyter_avml.tasks import ImageTask

        return ExperimentConfig(
            fixed=fixed, space=space, has_search_space=has_space, sampling=sampling, iterations=iterations,
            max_concurrent_iterations=concurrent, budget_seconds=budget, policy=policy, seed=seed,
            cpu_slots=cpu_slots, task=task, primary_metric=ImageTask(task).primary_metric, experiment_name=name,
            raw=self._raw(), source=self.source, trial_timeout_seconds=trial_timeout, executor=executor)

    # -- pieces -----------------------------------------------------------------------------------------
    def _fixed(self, run: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        fixed: dict[str, Any] = {}
        fixed_lines: dict[str, int] = {}
        for key, value in run.items():
            if value is None:  # None means "not set", as for a run
                continue
            name = canonical_name(key)
            if name in fixed and fixed[name] != value:
                raise self.fail(f"{key} is another name of {name}; give one of them (got {fixed[name]!r} and "
                                f"{value!r})", key, value)
            fixed[name] = value
            if key in self.lines:
                fixed_lines[name] = self.lines[key]
        for key in ("arguments", "training_parameters"):
            if self.data.get(key) is None:
                continue
            for name, value, line_key in self._arguments(key, self.data[key]):
                if name in fixed and fixed[name] != value:
                    raise self.fail(f"{key} sets {name} to {value!r} but it is also set to {fixed[name]!r}; "
                                    f"set it in one place", name, value, line_key)
                fixed[name] = value
                if line_key in self.lines:
                    fixed_lines[name] = self.lines[line_key]
        for key in PATH_KEYS:
            value = fixed.get(key)
            if isinstance(value, (str, os.PathLike)) and not os.fspath(value).startswith("dataset:"):
                path = Path(os.fspath(value)).expanduser()
                fixed[key] = str(path if path.is_absolute() else (self.base_dir / path).resolve())
        return fixed, fixed_lines

    def _arguments(self, key: str, value: Any) -> list[tuple[str, Any, str]]:
        """``arguments`` as ``(name, value, line key)``; list form ``["--name", value, ...]`` or a mapping."""
        out: list[tuple[str, Any, str]] = []
        if isinstance(value, Mapping):
            for raw_name, item in value.items():
                name = str(raw_name)
                name = name[2:] if name.startswith("--") else name
                out.append((self._argument_name(key, name, f"{key}.{raw_name}"), item, f"{key}.{raw_name}"))
            return out
        if key != "arguments" or not isinstance(value, (list, tuple)):
            raise self.fail(f"{key} must be a list [\"--name\", value, ...] or a mapping {{name: value}}, "
                            f"got {value!r}", key, value)
        items = list(value)
        index = 0
        while index < len(items):
            item, line_key = items[index], f"{key}[{index}]"
            if not isinstance(item, str) or not item.startswith("--"):
                raise self.fail(f"arguments: expected a name with a double dash (\"--early_stopping\") at position "
                                f"{index + 1}, got {item!r}", key, item, line_key)
            name, eq, inline = item[2:].partition("=")
            name = self._argument_name(key, name, line_key)
            if eq:
                out.append((name, yaml_scalar(inline), line_key))
                index += 1
                continue
            if index + 1 >= len(items):
                raise self.fail(f"arguments: {item} has no value (arguments are name/value pairs)", key, item,
                                line_key)
            out.append((name, items[index + 1], line_key))
            index += 2
        return out

    def _argument_name(self, key: str, name: str, line_key: str) -> str:
        if name in PARAMS or name in ALIASES:
            return canonical_name(name)
        close = difflib.get_close_matches(name, list(PARAMS) + list(ALIASES), n=1, cutoff=0.6)
        hint = f"; did you mean '--{close[0]}'?" if close else ""
        raise self.fail(f"{key}: unknown setting '--{name}'{hint}", key, name, line_key)

    def _task(self, fixed: dict[str, Any]) -> str:
        from jupyter_avml.tasks import ImageTask

        if "task" not in fixed or fixed["task"] is None:
            raise self.fail("task is required (one of " + ", ".join(t.value for t in ImageTask) + ")", "task")
        try:
            return ImageTask.parse(fixed["task"]).value
        except ConfigError as exc:
            raise self.fail(exc.message, "task", fixed["task"]) from None

    def _sampling(self, sweep: dict) -> str:
        from jupyter_avml.sweep.sampling import sampling_name

        if "sampling" not in sweep:
            return ""
        value, where = sweep["sampling"]
        try:
            return sampling_name(str(value))
        except ConfigError as exc:
            message = exc.message.replace("hyperparameter_sampling", where, 1)
            raise self.fail(message, where, value) from None

    def _policy(self, sweep: dict) -> EarlyTerminationPolicy:
        if "early_termination_policy" not in sweep:
            return NoTerminationPolicy()
        value, where = sweep["early_termination_policy"]
        return make_policy(value, source=self.source, line=self.lines.get(where))

    def _space(self, sweep: dict, fixed: dict[str, Any], task: str) -> tuple[SearchSpace, bool]:
        from jupyter_avml.models.zoo import get_model_spec

        if "search_space" not in sweep:
            model = fixed.get("model_name") or TASK_DEFAULTS[_task_enum(task)]["model_name"]
            return SearchSpace([{"model_name": choice(model)}]), False
        value, where = sweep["search_space"]
        param_lines = {"search_space": self.lines.get(where)}
        for path, line in self.lines.items():
            if path.startswith(where + ".") or path.startswith(where + "["):
                param_lines.setdefault(path.rsplit(".", 1)[-1], line)
        space = SearchSpace.from_config(value, source=self.source, lines=param_lines)
        space = self._canonical_space(space, where)
        for index, sub in enumerate(space.subspaces):
            for key, expr in sub.items():
                line_key = self._space_line_key(where, index, key)
                if key not in PARAMS:
                    close = difflib.get_close_matches(key, list(PARAMS), n=1, cutoff=0.6)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise self.fail(f"search_space: unknown setting {key!r}{hint}", f"search_space.{key}",
                                    str(expr), line_key)
                if key in fixed:
                    raise self.fail(f"search_space: {key} is searched and also set to {fixed[key]!r} outside the "
                                    f"search space; set it in one place", f"search_space.{key}", fixed[key], line_key)
                if not PARAMS[key].hyperparameter and key not in ("model_name", "seed"):
                    raise self.fail(f"search_space: {key} is a machine or data setting, not a hyperparameter; "
                                    f"set it outside the search space", f"search_space.{key}", str(expr), line_key)
                # A fixed value inside a sub-space is checked as the one value of a choice.
                problem = None if key == "model_name" else search_range_problem(
                    PARAMS[key], expr if isinstance(expr, Distribution) else Choice((expr,)))
                if problem:
                    raise self.fail(f"search_space: {key}: {problem}", f"search_space.{key}", str(expr), line_key)
            models = sub.get("model_name", fixed.get("model_name") or TASK_DEFAULTS[_task_enum(task)]["model_name"])
            names = models.values if isinstance(models, Choice) else (models,)
            if isinstance(models, Distribution) and not isinstance(models, Choice):
                raise self.fail(f"search_space: model_name must be a choice of model names, got {models}",
                                "search_space.model_name", str(models),
                                self._space_line_key(where, index, "model_name"))
            for name in names:
                try:
                    spec = get_model_spec(str(name), task)
                except ConfigError as exc:
                    raise self.fail(f"search_space: {exc.message}", "search_space.model_name", name,
                                    self._space_line_key(where, index, "model_name")) from None
                scopes = family_scopes(spec.family)
                for key in sub:
                    if key != "model_name" and not (PARAMS[key].scopes & scopes):
                        raise self.fail(f"search_space: {key} does not apply to {spec.name}; put it in a sub-space "
                                        f"of the models it applies to", f"search_space.{key}", str(sub[key]),
                                        self._space_line_key(where, index, key))
                for key in fixed:
                    if key in PARAMS and not (PARAMS[key].scopes & scopes):
                        raise self.fail(f"{key} does not apply to {spec.name} (searched in search_space); set it "
                                        f"in the sub-spaces of the models it applies to", key, fixed[key])
        return space, True

    def _automode(self, sweep: dict, has_space: bool, sampling: str, fixed: dict[str, Any], task: str):
        """AutoMode's plan when the experiment asks for it (``sweep.automode.plan``), else None.

        Asked for by ``sampling: auto``, by ``iterations > 1`` with neither a search space nor a sampling,
        or by a plan recorded under ``automode`` (then used as written, after validation).
        """
        from jupyter_avml.sweep.automode import AutoModePlan, make_plan

        recorded = self.data.get("automode")
        iterations = self._int(sweep, "iterations", 1, MAX_ITERATIONS)
        wanted = sampling == "auto" or recorded is not None or (
            not has_space and "sampling" not in sweep and iterations is not None and iterations > 1)
        if not wanted:
            return None
        if has_space:
            where = sweep["sampling"][1] if sampling == "auto" else "automode"
            raise self.fail("AutoMode (sampling: auto) chooses the models and hyperparameters itself; remove "
                            "search_space, or choose random, grid or bayesian sampling", where,
                            sampling if sampling == "auto" else "automode")
        try:
            if recorded is not None:
                return AutoModePlan.from_dict(recorded, fixed=fixed)
            plan = make_plan(task, fixed, iterations=iterations or 0,
                             user_policy="early_termination_policy" in sweep)
        except ConfigError as exc:
            raise self.fail(exc.message, exc.field or "automode", exc.value) from None
        self.data["automode"] = plan.to_dict()  # recorded in experiment.yaml: the driver uses this plan
        return plan

    def _canonical_space(self, space: SearchSpace, where: str) -> SearchSpace:
        """The space with the newer generation's parameter names (``ALIASES``) renamed to ours."""
        from jupyter_avml.sweep.cloud_settings import canonical_space

        try:
            return canonical_space(space)
        except ConfigError as exc:
            raise self.fail(f"search_space: {exc.message}", f"search_space.{exc.field}", exc.value,
                            self._space_line_key(where, 0, str(exc.field))) from None

    def _cloud_settings(self, fixed: dict[str, Any], fixed_lines: dict[str, int], task: str) -> None:
        """``compute_target`` (-> ``device``) and ``primary_metric`` (``cloud_settings.apply``)."""
        from jupyter_avml.sweep.cloud_settings import apply

        try:
            apply(self.data, fixed, task)
        except ConfigError as exc:
            raise self.fail(exc.message, exc.field, exc.value) from None
        if "device" not in fixed_lines and "compute_target" in self.lines:
            fixed_lines["device"] = self.lines["compute_target"]

    def _trial_timeout(self, sweep: dict) -> float | None:
        if "trial_timeout_minutes" not in sweep:
            return None
        value, where = sweep["trial_timeout_minutes"]
        high = MAX_TIMEOUT_HOURS * 60
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
            and 0 < value <= high
        if not ok:
            raise self.fail(f"{where} must be a number of minutes in (0, {high:g}], got {value!r}", where, value)
        return float(value) * 60.0

    def _space_line_key(self, where: str, index: int, key: str) -> str:
        for candidate in (f"{where}[{index}].{key}", f"{where}.{key}", f"{where}[{index}]", where):
            if candidate in self.lines:
                return candidate
        return where

    def _check_sampling(self, sampling: str, space: SearchSpace, sweep: dict) -> None:
        where = sweep.get("sampling", (None, "sampling"))[1]
        try:
            if sampling == "grid":
                from jupyter_avml.sweep.space import MAX_GRID_SIZE

                if space.grid_size() > MAX_GRID_SIZE:
                    space.grid()  # raises, naming the size
            elif sampling == "bayesian":
                from jupyter_avml.sweep.sampling import check_bayesian_space

                check_bayesian_space(space)
        except ConfigError as exc:
            line_key = f"search_space.{exc.field}" if exc.field and f"search_space.{exc.field}" in self.lines \
                else where
            raise self.fail(exc.message, exc.field or where, exc.value, line_key) from None

    def _iterations(self, sweep: dict, has_space: bool, sampling: str, space: SearchSpace) -> int:
        value = self._int(sweep, "iterations", 1, MAX_ITERATIONS)
        if sampling == "auto":  # AutoMode: the portfolio, then refinements up to iterations
            return value if value is not None else len(space.subspaces)
        if value is None:
            if has_space:
                raise self.fail(f"iterations is required with a search_space (1..{MAX_ITERATIONS}): the most "
                                f"configurations to try", "iterations", None,
                                sweep.get("search_space", (None, "search_space"))[1])
            return 1
        if not has_space and value > 1:
            raise self.fail(f"iterations is {value} but there is no search_space: every child would train the same "
                            f"configuration (leave sampling out, or set sampling: auto, for AutoMode)",
                            sweep["iterations"][1], value)
        if sampling == "grid":
            value = min(value, space.grid_size())
        return value

    def _int(self, sweep: dict, key: str, low: int, high: int) -> int | None:
        if key not in sweep:
            return None
        value, where = sweep[key]
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
            and float(value).is_integer() and low <= value <= high
        if not ok:
            raise self.fail(f"{where} must be an integer in [{low}, {high}], got {value!r}", where, value)
        return int(value)

    def _budget(self, sweep: dict) -> float:
        hours = sweep.get("experiment_timeout_hours")
        minutes = sweep.get("timeout_minutes")
        if hours is not None and minutes is not None:
            raise self.fail(f"give {hours[1]} or {minutes[1]}, not both", minutes[1], minutes[0])
        for given, unit, high in ((hours, 3600.0, MAX_TIMEOUT_HOURS), (minutes, 60.0, MAX_TIMEOUT_HOURS * 60)):
            if given is None:
                continue
            value, where = given
            ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
                and 0 < value <= high
            if not ok:
                raise self.fail(f"{where} must be a number in (0, {high:g}] (at most 60 days), got {value!r}",
                                where, value)
            return float(value) * unit
        return DEFAULT_TIMEOUT_HOURS * 3600.0

    def _validate_fixed(self, fixed: dict[str, Any], fixed_lines: dict[str, int], space: SearchSpace) -> None:
        """Validate the fixed settings with each sub-space's representative values.

        An error about a searched key says only that the representative value was refused (the sampled
        values are checked one by one later), so that key falls back to its default and validation goes on;
        an error about a fixed key is the user's to fix now.
        """
        for sub in space.subspaces:
            trial = {k: _representative(v) for k, v in sub.items()}
            for _ in range(len(trial) + 1):
                try:
                    AutoMLImageConfig.from_dict({**fixed, **trial}, source=self.source, lines=fixed_lines)
                    break
                except ConfigError as exc:
                    if exc.field in trial and exc.field != "model_name":
                        trial.pop(exc.field)
                        continue
                    if exc.field == "model_name" and "model_name" in sub:
                        raise self.fail(f"search_space: {exc.message}", "search_space.model_name",
                                        exc.value) from None
                    raise

    def _check_data_files(self, fixed: dict[str, Any], fixed_lines: dict[str, int]) -> None:
        for key in ("training_data", "validation_data"):
            value = fixed.get(key)
            if isinstance(value, str) and not value.startswith("dataset:") and not Path(value).is_file():
                raise ConfigError(f"{key}: no such file {value}", field=key, value=value, source=self.source,
                                  line=fixed_lines.get(key))

    def _raw(self) -> dict[str, Any]:
        """The mapping as given, data paths absolute, expressions and policies as text/mappings."""
        return written_form(self.data, self.base_dir)


def _task_enum(task: str):
    from jupyter_avml.tasks import ImageTask

    return ImageTask(task)


def _representative(expr: Any) -> Any:
    """A typical value of an expression (see ``Distribution.representative``); a fixed value as it is."""
    if isinstance(expr, Distribution):
        return expr.representative()
    return copy.deepcopy(expr)
