"""One tracked training run: ``train(config)`` and ``resume(run_id)``.

A run lives in ``<workspace>/runs/<run_id>/`` (run_id = the MLflow run id); its files are described in
``jupyter_avml.runs.folder``. The process that trains a run holds the run folder's lock from start to end: a
``resume`` of a run that is still training is refused (``RunBusyError``), instead of two processes racing on
its checkpoint, events and MLflow record.

How a run ends is recorded in ``run.json``, in the events and in MLflow, whatever ends it: ``completed``,
``stopped``/``early_terminated`` (a stop request), or ``failed`` with the error. A full disk is one line,
``no space left on device: PATH`` (``fileio.DiskFullError``), with the run marked failed and no temporary file
left behind.

The run-folder helpers ``find_run_dir``, ``read_run_json``, ``run_status`` and ``record_run_status`` live in
``jupyter_avml.runs.folder`` and are re-exported here.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.errors import DamagedRunError
from jupyter_avml.fileio import DiskFullError, is_disk_full
from jupyter_avml.runs.events import Callback, CallbackList, JsonlEventWriter, RunFinished, StopSignal
from jupyter_avml.runs.folder import (  # noqa: F401  (re-exported: the CLI and sweeps import them from here)
    RunFolder,
    find_run_dir,
    list_runs,
    lock_run,
    read_run_json,
    record_run_status,
    run_status,
    write_run_json,
)
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
        from jupyter_avml.runs.folder import jsonable

        return jsonable(asdict(self))


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
    folder = RunFolder(ws.ensure("runs", run_id))
    lock = lock_run(folder.path)  # held until the run ends: a resume meanwhile is refused
    try:
        from jupyter_avml.fileio import atomic_write_text

        atomic_write_text(folder.config_file, config.to_yaml())
        write_run_json(folder.path, run_id=run_id, task=config.task_type.value, model_name=config.model_name,
                       status="running", experiment=experiment or DEFAULT_EXPERIMENT, parent_run_id=parent_run_id,
                       primary_metric=config.task_type.primary_metric, created=time.time(), pid=os.getpid())
        return _execute(config, ws, tracker, folder, data, callbacks, stop_signal, resume=False,
                        start_model=start_model)
    except BaseException as exc:
        _record_setup_failure(tracker, folder, exc)
        if is_disk_full(exc):
            raise _one_line(exc) from None  # one line for the user; the traceback is in train.log
        raise
    finally:
        lock.close()


def resume(run_id: str, *, workspace: str | os.PathLike | Workspace | None = None,
           callbacks: Iterable[Callback] = (), stop_signal: StopSignal | None = None) -> RunSummary:
    """Continue an interrupted run from its last epoch checkpoint (same run id, same MLflow run).

    Raises ``RunBusyError`` when another process still trains the run, ``DamagedRunError`` naming a damaged
    ``run.json`` (and what to do), ``NotFoundError`` for an unknown run id.
    """
    from jupyter_avml.tracking.store import Tracker
    from jupyter_avml.training.data import load_run_data
    from jupyter_avml.training.incremental import check_start_model

    ws = Workspace.resolve(workspace)
    folder = RunFolder(find_run_dir(ws, run_id))
    run_id = folder.run_id
    lock = lock_run(folder.path)  # before anything of the run is touched
    try:
        info = read_run_json(folder.path)  # a damaged record stops here, naming the file
        config = AutoMLImageConfig.from_yaml(folder.config_file)
        resuming = folder.last_checkpoint.exists()
        if not resuming:
            log.info("run %s has no epoch checkpoint yet: starting it from the beginning", run_id)
        data = load_run_data(config, ws)
        start_model = None if resuming else check_start_model(config, ws, data.class_names)
        tracker = Tracker(ws, config.tracking_uri)
        tracker.reopen(run_id)
        folder.stop_file.unlink(missing_ok=True)
        record = {"run_id": run_id, "task": config.task_type.value, "model_name": config.model_name,
                  "primary_metric": config.task_type.primary_metric, "created": folder.config_file.stat().st_mtime}
        write_run_json(folder.path, **{k: v for k, v in record.items() if k not in info},
                       status="running", pid=os.getpid(), error=None, ended=None)
        return _execute(config, ws, tracker, folder, data, callbacks, stop_signal, resume=resuming,
                        start_model=start_model)
    except BaseException as exc:
        if is_disk_full(exc):
            raise _one_line(exc) from None  # one line for the user; the traceback is in train.log
        raise
    finally:
        lock.close()


def _execute(config, ws: Workspace, tracker, folder: RunFolder, data, callbacks, stop_signal,
             resume: bool, start_model=None) -> RunSummary:
    from jupyter_avml.training.engine import finished_event
    from jupyter_avml.training.outputs import write_run_outputs

    run_id = folder.run_id
    primary = config.task_type.primary_metric
    events = CallbackList([JsonlEventWriter(folder.events_file), tracker.callback(run_id), *callbacks])
    if stop_signal is None:  # (a StopSignal is falsy until a stop is requested)
        stop_signal = StopSignal(folder.stop_file)
    elif stop_signal.stop_file is None:
        stop_signal.stop_file = folder.stop_file
    handler = _attach_log_file(folder.log_file)
    try:
        data.write_rejected(folder.outputs_dir)
        handler.note("run %s%s: %s, %d training and %d validation images, %d classes", run_id,
                     " (resumed)" if resume else "", config.model_name, len(data.train), len(data.valid),
                     len(data.class_names))
        trainer = build_trainer(config, data, run_id=run_id, run_dir=folder.path, callbacks=events,
                                stop_signal=stop_signal, start_model=start_model)
        result = trainer.fit(resume=resume)
        best = result.best_result or result.last_result
        write_run_outputs(folder.outputs_dir, class_names=data.class_names, primary_metric=primary, best=best,
                          best_epoch=result.state.best_epoch, history=result.state.history,
                          config_yaml=config.to_yaml())
        finished = finished_event(run_id, result, primary)
        events.on_event(finished)
        tracker.log_artifacts(run_id, folder.outputs_dir, "outputs")
        tracker.end_run(run_id, result.status)
    except BaseException as exc:
        _record_failure(exc, events, tracker, folder, primary, handler)
        _detach_log_file(handler)
        raise
    summary = RunSummary(run_id=run_id, task=config.task_type.value, model_name=config.model_name,
                         status=finished.status, primary_metric=primary, primary_metric_value=finished.best_value,
                         best_epoch=finished.best_epoch, metrics=finished.metrics, model_path=finished.model_path,
                         output_dir=str(folder.outputs_dir), reason=finished.reason)
    write_run_json(folder.path, status=summary.status, primary_metric_value=summary.primary_metric_value,
                   best_epoch=summary.best_epoch, model_path=summary.model_path, reason=summary.reason,
                   ended=time.time())
    handler.note("run %s %s%s; %s = %s", run_id, summary.status, f" ({summary.reason})" if summary.reason else "",
                 primary, summary.primary_metric_value)
    _detach_log_file(handler)
    return summary


def _record_failure(exc: BaseException, events: CallbackList, tracker, folder: RunFolder, primary: str,
                    run_log: RunLog) -> None:
    """Record how a run ended on an exception, everywhere it can still be recorded.

    Each record is attempted on its own: on a full disk the event file may refuse the last event while the
    (smaller, atomically replaced) ``run.json`` still takes the status. The error is one line: a full disk is
    ``no space left on device: PATH``; the traceback goes to ``train.log`` only.
    """
    status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
    error = str(_one_line(exc)) if is_disk_full(exc) else f"{type(exc).__name__}: {exc}"
    run_log.note("run %s %s: %s\n%s", folder.run_id, status, error, traceback.format_exc(), level=logging.ERROR)
    finished = RunFinished(folder.run_id, status=status, primary_metric=primary, error=error)
    for what, record in (("run.json", lambda: write_run_json(folder.path, status=status, error=error,
                                                             ended=time.time())),
                         ("the events", lambda: events.on_event(finished)),
                         ("MLflow", lambda: tracker.end_run(folder.run_id, status))):
        try:
            record()
        except Exception as secondary:  # noqa: BLE001  (the first error is the one raised)
            log.error("run %s: could not record the end in %s: %s", folder.run_id, what, secondary)


def _record_setup_failure(tracker, folder: RunFolder, exc: BaseException) -> None:
    """A run that failed before training began (e.g. its config.yaml could not be written): mark it failed."""
    if folder.record_file.exists() and _status_is(folder, ("failed", "stopped")):
        return  # _execute recorded it already
    error = str(_one_line(exc)) if is_disk_full(exc) else f"{type(exc).__name__}: {exc}"
    for record in (lambda: write_run_json(folder.path, run_id=folder.run_id, status="failed", error=error,
                                          ended=time.time()),
                   lambda: tracker.end_run(folder.run_id, "failed")):
        try:
            record()
        except Exception as secondary:  # noqa: BLE001  (the first error is the one raised)
            log.error("run %s: could not record its failure: %s", folder.run_id, secondary)


def _status_is(folder: RunFolder, statuses: tuple[str, ...]) -> bool:
    try:
        return read_run_json(folder.path).get("status") in statuses
    except DamagedRunError:
        return False


def _one_line(exc: BaseException) -> BaseException:
    """A full disk as one ``DiskFullError`` naming the path that could not be written (else ``exc`` itself)."""
    while exc is not None:
        if isinstance(exc, DiskFullError):
            return exc
        if isinstance(exc, OSError) and is_disk_full(exc) and exc.filename:
            return DiskFullError(exc.filename)
        exc = exc.__cause__ or exc.__context__
    return DiskFullError("the run folder")


# -- which trainer -----------------------------------------------------------------------------------------
def build_trainer(config: AutoMLImageConfig, data, *, run_id: str, run_dir: Path, callbacks, stop_signal,
                  start_model=None):
    """The engine (with the family's recipe) or the family's own runner that trains ``config.model_name``.

    The family record (``models.families``) says which: a recipe class takes (config, class_names,
    train_records, valid_records); a runner class takes (config, data, run_id=, run_dir=, callbacks=,
    stop_signal=, start_model=) and has ``fit(resume) -> TrainResult``. ``start_model``
    (``training.incremental``): the weights a new run starts from (``checkpoint_run_id``), or None.
    """
    from jupyter_avml.models.families import get_family

    family = get_family(config.model_spec.family)
    if family.trainer_kind == "runner":
        return family.trainer_class()(config, data, run_id=run_id, run_dir=run_dir, callbacks=callbacks,
                                      stop_signal=stop_signal, start_model=start_model)
    from jupyter_avml.training.engine import Trainer

    recipe = family.trainer_class()(config, data.class_names, data.train, data.valid)
    return Trainer(recipe, config, run_id=run_id, run_dir=run_dir, callbacks=callbacks, stop_signal=stop_signal,
                   start_model=start_model)


# -- the run's log file --------------------------------------------------------------------------------------
class RunLog(logging.FileHandler):
    """``train.log``: the run's milestones, always, and what jupyter_avml's loggers let through.

    The handler is attached to the ``jupyter_avml`` logger without changing any logger's level or propagation
    (the user's logging configuration is theirs): it receives WARNING and above by default, and INFO when the
    application enables it (``logging.getLogger("jupyter_avml").setLevel(logging.INFO)``). The run's milestones
    (start, data, end, the error of a failure) are written by ``note`` directly, whatever the levels.
    """

    def __init__(self, path: Path):
        super().__init__(path, encoding="utf-8")
        self.setLevel(logging.INFO)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def note(self, message: str, *args: Any, level: int = logging.INFO) -> None:
        self.handle(logging.LogRecord(__name__, level, __file__, 0, message, args, None))


def _attach_log_file(path: Path) -> RunLog:
    handler = RunLog(path)
    logging.getLogger("jupyter_avml").addHandler(handler)
    return handler


def _detach_log_file(handler: logging.Handler) -> None:
    logging.getLogger("jupyter_avml").removeHandler(handler)
    handler.close()
