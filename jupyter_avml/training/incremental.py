"""Incremental training: a run that starts from the model of an earlier run, with the same labels.

Two settings name the model to start from (spec: the cloud system's ``checkpoint_run_id`` and a checkpoint
file), one at most:

* ``checkpoint_run_id``: a run of this workspace (a unique prefix of 6+ characters is enough); its
  ``outputs/model.pt`` (the weights of its best epoch);
* ``checkpoint_filename``: a model file (a run's ``outputs/model.pt``, a registered model's copy).

The new run builds its model as usual, without downloading pretrained weights, then loads every weight of
the model file, the head included: training continues where the earlier run's best epoch left it, on the new
data. That only makes sense for the same task, the same model (and ``model_size`` for yolov5) and the same
labels in the same order; anything else is refused, before the run is created, with what differs
(``check_start_model``). Every model family goes through ``load_start_weights``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_avml.config.loader import echo_value
from jupyter_avml.errors import ConfigError

__all__ = ["StartModel", "start_model_path", "check_start_model", "check_start_labels", "load_start_weights"]


@dataclass(frozen=True)
class StartModel:
    """The model file a run starts from, read and checked (``check_start_model``)."""

    path: Path
    setting: str          # the setting that named it: checkpoint_run_id or checkpoint_filename
    source: str           # how to name it in messages: "run 3f2a..." or the file's path
    state_dict: dict[str, Any]


def start_model_path(config, workspace) -> tuple[str, str, Path] | None:
    """``(setting, how to name it, model file)`` of a configuration that starts from an earlier model, else None.

    Raises
    ------
    NotFoundError
        when the run does not exist or left no model file.
    """
    from jupyter_avml.errors import NotFoundError
    from jupyter_avml.runs.folder import RUN_ID_PATTERN, RunFolder, find_run_dir, read_run_json

    run_id, filename = config.get("checkpoint_run_id"), config.get("checkpoint_filename")
    if run_id:
        if not RUN_ID_PATTERN.fullmatch(str(run_id)):  # looked up inside <workspace>/runs only, never a path
            raise ConfigError(f"checkpoint_run_id must be a run id (hexadecimal, a unique prefix of 6 to 32 "
                              f"characters; see `avml runs list`), got {echo_value(run_id)}",
                              field="checkpoint_run_id", value=run_id)
        run_dir = find_run_dir(workspace, str(run_id))
        path = RunFolder(run_dir).model_file
        if not path.is_file():
            status = read_run_json(run_dir).get("status", "unknown")
            raise NotFoundError(f"checkpoint_run_id: run {run_dir.name} has no model file {path} (its status is "
                                f"{status}); start from a run that finished with a model")
        return "checkpoint_run_id", f"run {run_dir.name}", path
    if filename:
        path = Path(os.fspath(filename)).expanduser()
        if not path.is_file():
            raise NotFoundError(f"checkpoint_filename: no model file {path}")
        return "checkpoint_filename", str(path), path
    return None


def check_start_model(config, workspace, class_names: list[str]) -> StartModel | None:
    """Read the model a run starts from and check that training can continue it (None when there is none).

    Parameters
    ----------
    config:
        The run's resolved ``AutoMLImageConfig``.
    workspace:
        Where ``checkpoint_run_id`` is looked up.
    class_names:
        The labels of the new training data, in model order (sorted).

    Raises
    ------
    ConfigError
        naming the setting and what differs: another task, another model or ``model_size``, other labels.
    NotFoundError
        when the run or the file does not exist.
    """
    found = start_model_path(config, workspace)
    if found is None:
        return None
    setting, source, path = found
    payload = _read(path, setting)

    def refuse(message: str) -> ConfigError:
        return ConfigError(f"{setting}: {source} {message}; incremental training continues the same model on "
                           f"the same labels", field=setting, value=str(config.get(setting)))

    task, model_name = payload.get("task"), payload.get("model_name")
    if task != config.task_type.value:
        raise refuse(f"is a {task} model, the task is {config.task_type.value}")
    if model_name != config.model_name:
        raise refuse(f"trained {model_name}, model_name is {config.model_name} (set model_name: {model_name})")
    trained_size = (payload.get("config") or {}).get("model_size")
    if config.get("model_size") is not None and trained_size is not None and trained_size != config.model_size:
        raise refuse(f"is a {trained_size} {model_name}, model_size is {config.model_size}")
    problem = _label_problem(payload, class_names)
    if problem:
        raise refuse(problem)
    return StartModel(path=path, setting=setting, source=source, state_dict=payload["state_dict"])


def check_start_labels(settings, workspace, class_names: list[str]) -> None:
    """For an experiment, before its first child: the model to start from exists, is a model file and knows
    the labels of the training data (model and task are checked per child, as they may be searched).

    ``settings`` is any mapping of run settings (``checkpoint_run_id``/``checkpoint_filename``).
    """
    found = start_model_path(settings, workspace)
    if found is None:
        return
    setting, source, path = found
    problem = _label_problem(_read(path, setting), class_names)
    if problem:
        raise ConfigError(f"{setting}: {source} {problem}; incremental training continues the same model on the "
                          f"same labels", field=setting, value=str(settings.get(setting)))


def _label_problem(payload: dict[str, Any], class_names: list[str]) -> str | None:
    """What differs between the labels of a model file and those of the training data (None: the same)."""
    known = [str(name) for name in payload.get("class_names") or []]
    if known == list(class_names):
        return None
    missing = [name for name in known if name not in class_names]
    new = [name for name in class_names if name not in known]
    detail = "; ".join(part for part in (f"not in the new data: {', '.join(missing)}" if missing else "",
                                        f"new: {', '.join(new)}" if new else "") if part)
    return (f"knows the labels {', '.join(known)}, the training data has {', '.join(class_names)} "
            f"({detail or 'another order'})")


def load_start_weights(model, start: StartModel, *, strip_prefix: str = "") -> None:
    """Load every weight of ``start`` into ``model`` (a freshly built model of the same kind).

    ``strip_prefix`` is removed from the model file's keys first (a wrapper the file was saved through).

    Raises
    ------
    ConfigError
        when the weights do not fit the model (names the first few keys that differ).
    """
    state = {k[len(strip_prefix):] if strip_prefix and k.startswith(strip_prefix) else k: v
             for k, v in start.state_dict.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or mismatched:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected),
                                     ("of another shape", mismatched)) if keys]
        raise ConfigError(f"{start.setting}: the weights of {start.source} do not fit this model "
                          f"({'; '.join(parts)})", field=start.setting, value=str(start.path))
    model.load_state_dict(state)


def _read(path: Path, setting: str) -> dict[str, Any]:
    """The model file's content, read as data (``weights_only``): never code."""
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same answer for the user
        raise ConfigError(f"{setting}: {path} is not a model file ({type(exc).__name__}); a model file is the "
                          f"outputs/model.pt of a training run", field=setting, value=str(path)) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict) or "trainer_state" in payload:
        raise ConfigError(f"{setting}: {path} is not a model file; a model file is the outputs/model.pt of a "
                          f"training run", field=setting, value=str(path))
    return payload
