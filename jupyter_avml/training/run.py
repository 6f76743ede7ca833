"""One tracked training run: ``train(config)`` and ``resume(run_id)``.

A run lives in ``<workspace>/runs/<run_id>/`` (run_id = the MLflow run id):

* ``config.yaml``: the resolved configuration (every default filled in);
* ``run.json``: status and summary, cheap to read from any process;
* ``events.jsonl``: the event stream (see ``training.events``), followed live by sweeps and dashboards;
* ``train.log``: the log; ``checkpoints/last.pt``: resumable state; ``outputs/``: model and reports;
* ``STOP``: written by ``request_stop`` to end the run after its current batch.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.errors import NotFoundError
from jupyter_avml.training.events import (STOP_FILENAME, Callback, CallbackList, JsonlEventWriter, RunFinished,
                                          StopSignal)
from jupyter_avml.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a finished run reports (``avml train --json`` prints exactly this)."""

    run_id: str
    task: str
    model_name: str
    status: str
    primary_metric: str
    primary_metric_value: float | None
    best_epoch: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    model_path: str | None = None
    output_dir: str = ""
    reason: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        from jupyter_avml.training.outputs import _jsonable

        return _jsonable(asdict(self))


def train(config: AutoMLImageConfig, *, workspace: str | os.PathLike | Workspace | None = None,
          callbacks: Iterable[Callback] = (), stop_signal: StopSignal | None = None,
          experiment: str | None = None, parent_run_id: str | None = None, run_name: str | None = None,
          tags: dict[str, Any] | None = None) -> RunSummary:
    """Train one model as configured and track it; returns when the run ends (completed, stopped, failed).

    Errors in the data raise before a run is created (with every problem listed). A failure during
    training is recorded (status ``failed`` with the error) and then raised.
    """
    from jupyter_avml.tracking.store import DEFAULT_EXPERIMENT, Tracker

    from jupyter_avml.training.data import load_run_data

    from jupyter_avml.training.incremental import check_start_model

    ws = Workspace.resolve(workspace if workspace is not None else config.workspace)
    data = load_run_data(config, ws)  # bad data fails here, before a run is recorded
    start_model = check_start_model(config, ws, data.class_names)  # so does a checkpoint that cannot continue
    tracker = Tracker(ws, config.tracking_uri)
    run_tags = {"task": config.task_type.value, "model_name": config.model_name, **(tags or {})}
    run_id = tracker.start_run(experiment=experiment or DEFAULT_EXPERIMENT, run_name=run_name or config.run_name,
                               tags=run_tags, parent_run_id=parent_run_id)
    run_dir = ws.ensure("runs", run_id)
    (run_dir / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    _write_run_json(run_dir, run_id=run_id, task=config.task_type.value, model_name=config.model_name,
                    status="running", experiment=experiment or DEFAULT_EXPERIMENT, parent_run_id=parent_run_id,
                    primary_metric=config.task_type.primary_metric, created=time.time(), pid=os.getpid())
    return _execute(config, ws, tracker, run_id, run_dir, data, callbacks, stop_signal, resume=False,
                    start_model=start_model)


def resume(run_id: str, *, workspace: str | os.PathLike | Workspace | None = None,
           callbacks: Iterable[Callback] = (), stop_signal: StopSignal | None = None) -> RunSummary:
    """Continue an interrupted run from its last epoch checkpoint (same run id, same MLflow run)."""
    from jupyter_avml.tracking.store import Tracker

    ws = Workspace.resolve(workspace)
    run_dir = find_run_dir(ws, run_id)
    run_id = run_dir.name
    config = AutoMLImageConfig.from_yaml(run_dir / "config.yaml")
    if not (run_dir / "checkpoints" / "last.pt").exists():
        log.info("run %s has no epoch checkpoint yet: starting it from the beginning", run_id)
    from jupyter_avml.training.data import load_run_data

    data = load_run_data(config, ws)
    tracker = Tracker(ws, config.tracking_uri)
    tracker.reopen(run_id)
    (run_dir / STOP_FILENAME).unlink(missing_ok=True)
    _write_run_json(run_dir, status="running", pid=os.getpid())
    resuming = (run_dir / "checkpoints" / "last.pt").exists()
    from jupyter_avml.training.incremental import check_start_model

    start_model = None if resuming else check_start_model(config, ws, data.class_names)
    return _execute(config, ws, tracker, run_id, run_dir, data, callbacks, stop_signal, resume=resuming,
                    start_model=start_model)


def _execute(config, ws: Workspace, tracker, run_id: str, run_dir: Path, data, callbacks, stop_signal,
             resume: bool, start_model=None) -> RunSummary:
    from jupyter_avml.training.engine import finished_event
    from jupyter_avml.training.outputs import write_run_outputs

    # matplotlib (the output plots) keeps its font cache under HOME unless told otherwise (read at its import).
    os.environ.setdefault("MPLCONFIGDIR", str(ws.cache_dir / "matplotlib"))
    primary = config.task_type.primary_metric
    events = CallbackList([JsonlEventWriter(run_dir / "events.jsonl"), tracker.callback(run_id), *callbacks])
    if stop_signal is None:  # (a StopSignal is falsy until a stop is requested)
        stop_signal = StopSignal(run_dir / STOP_FILENAME)
    elif stop_signal.stop_file is None:
        stop_signal.stop_file = run_dir / STOP_FILENAME
    handler = _attach_log_file(run_dir / "train.log")
    outputs = run_dir / "outputs"
    try:
        data.write_rejected(outputs)
        log.info("run %s: %s, %d training and %d validation images, %d classes", run_id, config.model_name,
                 len(data.train), len(data.valid), len(data.class_names))
        trainer = build_trainer(config, data, run_id=run_id, run_dir=run_dir, callbacks=events,
                                stop_signal=stop_signal, start_model=start_model)
        result = trainer.fit(resume=resume)
        best = result.best_result or result.last_result
        write_run_outputs(outputs, class_names=data.class_names, primary_metric=primary, best=best,
                          best_epoch=result.state.best_epoch, history=result.state.history,
                          config_yaml=config.to_yaml())
        finished = finished_event(run_id, result, primary)
        events.on_event(finished)
        tracker.log_artifacts(run_id, outputs, "outputs")
        tracker.end_run(run_id, result.status)
    except BaseException as exc:
        status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        error = f"{type(exc).__name__}: {exc}"
        log.error("run %s %s: %s\n%s", run_id, status, error, traceback.format_exc())
        finished = RunFinished(run_id, status=status, primary_metric=primary, error=error)
        try:
            events.on_event(finished)
            tracker.end_run(run_id, status)
        finally:
            _write_run_json(run_dir, status=status, error=error, ended=time.time())
            _detach_log_file(handler)
        raise
    summary = RunSummary(run_id=run_id, task=config.task_type.value, model_name=config.model_name,
                         status=finished.status, primary_metric=primary, primary_metric_value=finished.best_value,
                         best_epoch=finished.best_epoch, metrics=finished.metrics, model_path=finished.model_path,
                         output_dir=str(outputs), reason=finished.reason)
    _write_run_json(run_dir, status=summary.status, primary_metric_value=summary.primary_metric_value,
                    best_epoch=summary.best_epoch, model_path=summary.model_path, reason=summary.reason,
                    ended=time.time())
    _detach_log_file(handler)
    return summary


# Model family -> the recipe the shared engine trains, or a runner with its own loop (ultralytics).
# A recipe class takes (config, class_names, train_records, valid_records); a runner class takes
# (config, data, run_id=, run_dir=, callbacks=, stop_signal=) and has fit(resume) -> TrainResult.
RECIPES = {
    "timm": "jupyter_avml.training.classification:ClassificationRecipe",
    "torchvision": "jupyter_avml.training.detection:DetectionRecipe",
}
RUNNERS = {
    "yolov5": "jupyter_avml.training.yolo:YoloRunner",
}


def build_trainer(config: AutoMLImageConfig, data, *, run_id: str, run_dir: Path, callbacks, stop_signal,
                  start_model=None):
    """The engine (or runner) that trains ``config.model_name``; ``start_model`` (``training.incremental``):
    the weights a new run starts from."""
    import importlib

    family = config.model_spec.family
    if family in RUNNERS:
        module, _, name = RUNNERS[family].partition(":")
        runner = getattr(importlib.import_module(module), name)
        return runner(config, data, run_id=run_id, run_dir=run_dir, callbacks=callbacks, stop_signal=stop_signal,
                      start_model=start_model)
    from jupyter_avml.training.engine import Trainer

    module, _, name = RECIPES[family].partition(":")
    recipe = getattr(importlib.import_module(module), name)(config, data.class_names, data.train, data.valid)
    return Trainer(recipe, config, run_id=run_id, run_dir=run_dir, callbacks=callbacks, stop_signal=stop_signal,
                   start_model=start_model)


# -- run folder helpers -------------------------------------------------------------------------------
def find_run_dir(workspace: Workspace, run_id: str) -> Path:
    """The folder of ``run_id``; a unique prefix of at least 6 characters is enough."""
    exact = workspace.runs_dir / run_id
    if exact.is_dir():
        return exact
    matches = [p for p in workspace.runs_dir.glob(f"{run_id}*") if p.is_dir()] if len(run_id) >= 6 else []
    if len(matches) == 1:
        return matches[0]
    where = workspace.runs_dir
    if len(matches) > 1:
        raise NotFoundError(f"run id prefix {run_id!r} matches {len(matches)} runs in {where}")
    raise NotFoundError(f"no run {run_id!r} in {where} (see `avml runs list`)")


def read_run_json(run_dir: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_status(info: dict[str, Any]) -> str:
    """The recorded status, or ``interrupted`` for a run marked running whose process is gone."""
    status = info.get("status", "unknown")
    if status == "running" and info.get("pid") and not _pid_alive(int(info["pid"])):
        return "interrupted"
    return status


def record_run_status(run_dir: Path, status: str, **fields: Any) -> None:
    """Record in ``run.json`` how a run ended when its own process could not (e.g. it was killed)."""
    _write_run_json(Path(run_dir), status=status, ended=time.time(), **fields)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_run_json(run_dir: Path, **changes: Any) -> None:
    from jupyter_avml.fileio import atomic_write_json
    from jupyter_avml.training.outputs import _jsonable

    data = read_run_json(run_dir)
    data.update(changes)
    data["updated"] = time.time()
    atomic_write_json(run_dir / "run.json", _jsonable(data), indent=2)


def _attach_log_file(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package_logger = logging.getLogger("jupyter_avml")
    package_logger.addHandler(handler)
    if package_logger.level == logging.NOTSET or package_logger.level > logging.INFO:
        package_logger.setLevel(logging.INFO)
    return handler


def _detach_log_file(handler: logging.Handler) -> None:
    logging.getLogger("jupyter_avml").removeHandler(handler)
    handler.close()
