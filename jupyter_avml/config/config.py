"""``AutoMLImageConfig``: one validated configuration for one run, from Python, YAML or a notebook cell.

Construction validates every value the user set and fills every other one with its default, which depends
on the task and the model (see ``params.py`` and the model registry). Nothing the user set is replaced: a
value is either used as given or rejected with a message naming the key, the allowed range and the value.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jupyter_avml.config.loader import echo_value
from jupyter_avml.config.params import (
    ALIASES,
    ALL,
    MAX_TILE_GRID,
    PARAMS,
    SCOPE_TEXT,
    TASK_DEFAULTS,
    Param,
    family_scopes,
)
from jupyter_avml.errors import ConfigError
from jupyter_avml.models.registry import get_model_spec
from jupyter_avml.tasks import ImageTask

PATH_KEYS = ("training_data", "validation_data", "pretrained_weights", "workspace", "checkpoint_filename")
MAX_MODEL_NAME = 100

MAX_BATCH_INPUT_BYTES = 16 << 30
"""Largest float32 input batch a configuration may ask for (16 GiB): batch size x channels x side x side x 4.

A lower bound of the memory a step needs (activations come on top), so a configuration refused here could
never have run; it is refused with a message instead of being killed by the kernel after minutes."""


class AutoMLImageConfig(Mapping[str, Any]):
    """A resolved run configuration: every setting of ``params.PARAMS`` that applies to the model.

    Read values as attributes (``config.learning_rate``) or as a mapping (``config["learning_rate"]``).
    ``user_keys`` are the keys the user set; the rest are defaults.

    Parameters
    ----------
    task:
        ``ImageTask`` or its value, e.g. ``"image-classification"``.
    training_data, validation_data:
        JSONL files (or ``dataset:NAME[:VERSION]`` of the workspace's dataset registry).
    **settings:
        Any other key of the spec (hyperparameters) or of jupyter_avml (device, seed, ...).
    """

    def __init__(self, task: ImageTask | str | None = None, training_data: str | os.PathLike | None = None,
                 **settings: Any):
        given = dict(settings)
        if task is not None:
            given["task"] = task
        if training_data is not None:
            given["training_data"] = training_data
        self._values, self._user_keys = _resolve(given, lines={}, source=None, base_dir=None)

    # -- other doors -------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None,
                  lines: Mapping[str, int] | None = None, base_dir: str | os.PathLike | None = None
                  ) -> AutoMLImageConfig:
        """Build from a mapping (e.g. parsed YAML); ``lines`` maps keys to line numbers for messages and
        relative paths are taken from ``base_dir``."""
        self = cls.__new__(cls)
        self._values, self._user_keys = _resolve(dict(data), lines=dict(lines or {}), source=source,
                                                 base_dir=Path(base_dir) if base_dir else None)
        return self

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> AutoMLImageConfig:
        """Read a YAML (or JSON) file of settings; relative data paths are relative to the file's folder.

        The file goes through ``config.loader.read_config_file`` (UTF-8, size, nesting, duplicate keys...).
        """
        from jupyter_avml.config.loader import read_config_file

        data, lines = read_config_file(path)
        return cls.from_dict(data, source=str(path), lines=lines, base_dir=Path(path).resolve().parent)

    def replace(self, **changes: Any) -> AutoMLImageConfig:
        """A new configuration with ``changes`` applied on top of the user's values (re-validated).

        Defaults are re-derived, so changing ``model_name`` brings that model's defaults.
        """
        given = {k: self._values[k] for k in self._user_keys}
        given.update(changes)
        self = type(self).__new__(type(self))
        self._values, self._user_keys = _resolve(given, lines={}, source=None, base_dir=None)
        return self

    # -- reading ----------------------------------------------------------------------------------------
    @property
    def task_type(self) -> ImageTask:
        return ImageTask(self._values["task"])

    @property
    def user_keys(self) -> frozenset[str]:
        return frozenset(self._user_keys)

    @property
    def model_spec(self):
        return get_model_spec(self._values["model_name"])

    def user_values(self) -> dict[str, Any]:
        return {k: self._values[k] for k in self._values if k in self._user_keys}

    def hyperparameters(self) -> dict[str, Any]:
        """The resolved hyperparameters (spec sections 5-6), without data and machine settings."""
        return {k: v for k, v in self._values.items() if PARAMS[k].hyperparameter}

    def to_dict(self) -> dict[str, Any]:
        """Every resolved value, JSON/YAML-serialisable (tile grid as a list, paths as strings)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self._values.items()}

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{name!r} is not a setting of this configuration") from None

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={self._values[k]!r}" for k in ("task", "model_name") if k in self._values)
        return f"AutoMLImageConfig({shown}, {len(self._user_keys)} set by user)"

    def __reduce__(self):  # picklable for spawn-started workers
        return (_rebuild, (self._values, tuple(self._user_keys)))


def _rebuild(values, user_keys):
    self = AutoMLImageConfig.__new__(AutoMLImageConfig)
    self._values, self._user_keys = dict(values), set(user_keys)
    return self


# --------------------------------------------------------------------------------------------------------
def _resolve(given: dict[str, Any], *, lines: dict[str, int], source: str | None, base_dir: Path | None
             ) -> tuple[dict[str, Any], set[str]]:
    errors = _Errors(source, lines)
    given = {str(k): v for k, v in given.items()}
    aliased = _apply_aliases(given, lines, errors)
    for key in list(given):
        if key not in PARAMS:
            errors.add(key, f"unknown setting {echo_value(key)}{_unknown_key_hint(key)}", given.pop(key))
    # None means "not set" for every key: the user cannot set a value to "nothing" that has a default.
    given = {k: v for k, v in given.items() if v is not None}

    if "task" not in given:
        errors.add("task", "task is required (one of " + ", ".join(t.value for t in ImageTask) + ")", None)
        errors.raise_if_any()
    try:
        task = ImageTask.parse(given["task"])
    except ConfigError as exc:
        errors.add("task", exc.message, given["task"])
        errors.raise_if_any()
    given["task"] = task.value

    model_name = given.get("model_name", TASK_DEFAULTS[task]["model_name"])
    if len(str(model_name)) > MAX_MODEL_NAME:  # a name this long cannot be a model: do not echo it in full
        errors.add("model_name", f"model_name must be a model name (see `avml models`), got "
                                 f"{echo_value(model_name, 60)}", model_name)
        errors.raise_if_any()
    try:
        spec = get_model_spec(str(model_name), task)
    except ConfigError as exc:
        errors.add("model_name", exc.message, model_name)
        errors.raise_if_any()
    given["model_name"] = spec.name
    scopes = family_scopes(spec.family)

    values: dict[str, Any] = {}
    for name, param in PARAMS.items():
        if not (param.scopes & scopes):
            if name in given:
                errors.add(name, f"{name} applies to {_scope_text(param)}; model_name is {spec.name}", given[name])
            continue
        values[name] = param.default
    values.update({k: v for k, v in TASK_DEFAULTS[task].items() if k in values})
    values.update({k: v for k, v in spec.defaults_for(task).items() if k in values})

    for name, raw in given.items():
        if name not in values:
            continue
        try:
            values[name] = _coerce(PARAMS[name], raw)
        except ConfigError as exc:
            # Named as the user wrote it when it came by its newer-generation name.
            errors.add(aliased.get(name, name), (f"{aliased[name]} is {name}: " if name in aliased else "")
                       + exc.message, raw)
    for key in PATH_KEYS:
        if isinstance(values.get(key), str) and base_dir is not None and not values[key].startswith("dataset:"):
            path = Path(values[key]).expanduser()
            values[key] = str(path if path.is_absolute() else (base_dir / path))

    if "training_data" not in given:
        errors.add("training_data", "training_data is required (a JSONL file)", None)
    _check_consistency(values, set(given), spec, errors)
    errors.raise_if_any()
    return values, set(given)


def _apply_aliases(given: dict[str, Any], lines: dict[str, int], errors: _Errors) -> dict[str, str]:
    """Rename the newer generation's names (``params.ALIASES``) to ours, in place; returns ours -> theirs.

    A setting given under both names with different values is an error naming both.
    """
    aliased: dict[str, str] = {}
    for alias, name in ALIASES.items():
        if alias not in given:
            continue
        value = given.pop(alias)
        if value is None:
            continue
        if given.get(name) is not None and given[name] != value:
            errors.add(alias, f"{alias} is another name of {name}; give one of them (got "
                       f"{name}={echo_value(given[name])} and {alias}={echo_value(value)})", value)
            continue
        given[name] = value
        aliased[name] = alias
        if alias in lines:
            lines.setdefault(name, lines[alias])
    return aliased


def _unknown_key_hint(key: str) -> str:
    """A "did you mean", or where an experiment (sweep) setting belongs when one is given to a run."""
    from jupyter_avml.sweep.config import SWEEP_KEYS  # the sweep layer builds on this one: imported on error only

    if key in SWEEP_KEYS or key in ("compute_target", "primary_metric"):
        return (f": {key} is an experiment (sweep) setting, not a setting of one run; run an experiment instead "
                f"(`avml sweep FILE`, or jupyter_avml.automl.AutoMLImageConfig submitted with "
                f"Experiment(workspace, name).submit(config); docs/porting.md)")
    close = difflib.get_close_matches(key, list(PARAMS) + list(ALIASES), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_consistency(values: dict[str, Any], user: set[str], spec, errors: _Errors) -> None:
    if spec.fixed_input_size and values["train_crop_size"] != values["valid_crop_size"]:
        errors.add("valid_crop_size" if "valid_crop_size" in user else "train_crop_size",
                   f"{spec.name} needs valid_crop_size equal to train_crop_size "
                   f"(got train_crop_size={values['train_crop_size']}, valid_crop_size={values['valid_crop_size']})",
                   values["valid_crop_size"])
    if values.get("validation_metric_type") == "none":
        # Without a validation metric there is nothing to stop early on.
        if "early_stopping" in user and values["early_stopping"]:
            errors.add("early_stopping", "early_stopping needs a validation metric; validation_metric_type is none",
                       values["early_stopping"])
        values["early_stopping"] = 0
    if "min_size" in values and values["min_size"] > values["max_size"]:
        errors.add("min_size", f"min_size must not exceed max_size ({values['max_size']})", values["min_size"])
    if spec.layer_groups and values.get("layers_to_freeze") and values["layers_to_freeze"] > len(spec.layer_groups):
        errors.add("layers_to_freeze", f"{spec.name} has {len(spec.layer_groups)} layer groups; "
                   f"layers_to_freeze must be in [1, {len(spec.layer_groups)}]", values["layers_to_freeze"])
    _check_start_model(values, user, errors)
    _check_memory(values, errors)
    device = str(values["device"])
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
        errors.add("device", "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'", device)


def _check_start_model(values: dict[str, Any], user: set[str], errors: _Errors) -> None:
    """Incremental training (``checkpoint_run_id`` or ``checkpoint_filename``) gives the starting weights: no
    pretrained weights are loaded under them (``pretrained`` becomes 0 unless the user set it, then it is an
    error, as ``pretrained_weights`` is)."""
    if not (values.get("checkpoint_run_id") or values.get("checkpoint_filename")):
        return
    if values.get("checkpoint_run_id") and values.get("checkpoint_filename"):
        errors.add("checkpoint_filename", "give checkpoint_run_id or checkpoint_filename, not both (the model to "
                   "start from)", values["checkpoint_filename"])
    for key in ("pretrained_weights", "pretrained"):
        if key in user and values.get(key):
            errors.add(key, f"{key} and a checkpoint to start from (checkpoint_run_id, checkpoint_filename) both "
                       f"give the starting weights; give one", values[key])
    values["pretrained"] = 0


def _batch_inputs(values: dict[str, Any]) -> list[tuple[str, str, float]]:
    """``(batch key, size key, largest side in px)`` of each batch a run will build, for the settings present."""
    pairs = [("training_batch_size", "train_crop_size"), ("validation_batch_size", "valid_crop_size"),
             ("training_batch_size", "max_size"), ("validation_batch_size", "max_size"),
             ("training_batch_size", "img_size"), ("validation_batch_size", "img_size")]
    out = []
    for batch_key, size_key in pairs:
        if batch_key in values and size_key in values and values[batch_key] and values[size_key]:
            side = float(values[size_key])
            if size_key == "img_size" and batch_key == "training_batch_size" and values.get("multi_scale"):
                side *= 1.5  # multi_scale trains at up to +50%
            out.append((batch_key, size_key, side))
    return out


def _check_memory(values: dict[str, Any], errors: _Errors) -> None:
    """Refuse batches whose float32 input alone exceeds ``MAX_BATCH_INPUT_BYTES`` (3 channels, square images)."""
    for batch_key, size_key, side in _batch_inputs(values):
        needed = values[batch_key] * 3 * side * side * 4
        if needed > MAX_BATCH_INPUT_BYTES:
            errors.add(batch_key, f"{batch_key} {values[batch_key]} of {size_key} {values[size_key]} px images is "
                       f"{needed / (1 << 30):.1f} GiB of input per batch before the model runs (at most "
                       f"{MAX_BATCH_INPUT_BYTES >> 30} GiB); lower {batch_key} or {size_key}", values[batch_key])


def _scope_text(param: Param) -> str:
    return " and ".join(SCOPE_TEXT.get(s, s) for s in sorted(param.scopes) if s != ALL)


class _Errors:
    def __init__(self, source: str | None, lines: dict[str, int]):
        self.source, self.lines, self.items = source, lines, []

    def add(self, field: str, message: str, value: Any) -> None:
        self.items.append((field, message, value))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        field, message, value = self.items[0]
        if len(self.items) > 1:
            rest = [self._locate(f) + m for f, m, _ in self.items[1:]]
            message = "\n".join([message] + rest)
        raise ConfigError(message, field=field, value=value, source=self.source, line=self.lines.get(field))

    def _locate(self, field: str) -> str:
        line = self.lines.get(field)
        if self.source is not None:
            return f"{self.source}:{line}: " if line else f"{self.source}: "
        return f"line {line}: " if line else ""


# --------------------------------------------------------------------------------------------------------
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(param: Param, raw: Any) -> Any:
    """Turn a user value into the parameter's type, or raise ConfigError naming the expected range."""
    note = f" ({param.note})" if param.note else ""
    fail = ConfigError(f"{param.name} must be {param.range_text()}, got {echo_value(raw)}{note}", field=param.name,
                       value=raw)
    kind = param.kind
    if kind == "int":
        value = _as_number(raw, fail)
        try:
            if not float(value).is_integer():
                raise fail
        except OverflowError:  # an integer beyond any float: beyond every range too
            raise fail from None
        value = int(value)
        _check_range(param, value, fail)
        return value
    if kind == "float":
        try:
            value = float(_as_number(raw, fail))
        except OverflowError:
            raise fail from None
        if math.isnan(value):
            raise fail
        _check_range(param, value, fail)
        return value
    if kind == "bool01":
        if isinstance(raw, bool):
            return int(raw)
        if isinstance(raw, (int, float)) and raw in (0, 1):
            return int(raw)
        text = str(raw).strip().lower()
        if text in _TRUE:
            return 1
        if text in _FALSE:
            return 0
        raise fail
    if kind == "choice":
        for choice in param.choices:
            # The newer generation writes choices in CamelCase ("WarmupCosine", "CocoVoc"): "_" is ignored.
            if isinstance(choice, str) and isinstance(raw, str) and \
                    raw.strip().lower().replace("_", "") == choice.replace("_", ""):
                return choice
            if not isinstance(choice, str) and not isinstance(raw, bool):
                try:
                    if float(raw) == choice:
                        return choice
                except (TypeError, ValueError):
                    pass
        raise fail
    if kind in ("str", "path"):
        if isinstance(raw, os.PathLike):
            return os.fspath(raw)
        if not isinstance(raw, str) or not raw.strip():
            raise ConfigError(f"{param.name} must be a non-empty string, got {echo_value(raw)}", field=param.name,
                              value=raw)
        return raw.strip()
    if kind == "grid":
        return parse_tile_grid(raw)
    if kind == "mapping":
        if not isinstance(raw, Mapping) or not all(isinstance(k, str) and isinstance(v, (str, os.PathLike))
                                                    for k, v in raw.items()):
            raise ConfigError(f"{param.name} must be a mapping of URL prefix to local folder, got "
                              f"{echo_value(raw)}",
                              field=param.name, value=raw)
        return {k: os.fspath(v) for k, v in raw.items()}
    return raw


def _as_number(raw: Any, fail: ConfigError) -> float:
    if isinstance(raw, bool):
        raise fail
    if isinstance(raw, (int, float)):
        return raw
    if isinstance(raw, str):
        try:
            return float(raw.strip())
        except ValueError:
            raise fail from None
    raise fail


def _check_range(param: Param, value: float, fail: ConfigError) -> None:
    if param.low is not None and (value < param.low or (param.low_open and value == param.low)):
        raise fail
    if param.high is not None and (value > param.high or (param.high_open and value == param.high)):
        raise fail


_GRID_RE = re.compile(r"^\s*[\(\[]?\s*(\d{1,9})\s*[,x ]\s*(\d{1,9})\s*[\)\]]?\s*$")


def parse_tile_grid(raw: Any) -> tuple[int, int]:
    """``"(3, 2)"``, ``"3x2"``, ``(3, 2)`` or ``[3, 2]`` -> ``(3, 2)``: columns, rows; both in [1, 16]."""
    fail = ConfigError(f"tile_grid_size must be two integers in [1, {MAX_TILE_GRID}] like '(3, 2)', got "
                       f"{echo_value(raw)}",
                       field="tile_grid_size", value=raw)
    if isinstance(raw, str):
        match = _GRID_RE.match(raw)
        if not match:
            raise fail
        grid = (int(match.group(1)), int(match.group(2)))
    elif isinstance(raw, (list, tuple)) and len(raw) == 2:
        try:
            grid = (int(raw[0]), int(raw[1]))
        except (TypeError, ValueError):
            raise fail from None
        if grid[0] != raw[0] or grid[1] != raw[1]:
            raise fail
    else:
        raise fail
    if min(grid) < 1 or max(grid) > MAX_TILE_GRID:
        raise fail
    return grid
