"""Run tracking in MLflow.

Default store: a SQLite database (``mlflow.db``) and an artifact folder (``mlartifacts/``) inside the
workspace, so nothing needs a server. ``tracking_uri`` (setting or ``$MLFLOW_TRACKING_URI``) points at any
MLflow server instead. Our run id IS the MLflow run id, so a run folder, its events and its MLflow record
share one name.

Params = the resolved configuration; metrics per epoch (step = epoch); tags: task, model_name, status
(``avml.status``: running, completed, stopped, early_terminated, failed) and, for sweep children, the
parent run (``mlflow.parentRunId``).

Opening a new SQLite store creates its tables (MLflow's migrations); processes that open a fresh workspace
at once (three ``avml train``, a sweep's workers) would run them concurrently on one file and fail ("table
experiments already exists"). Every ``Tracker`` therefore opens a SQLite store the first time in its process
under ``fileio.exclusive_lock`` on ``<workspace>/.mlflow-store.lock``. (A lock file of its own: a caller that
still holds the sweep's older ``.tracking-store.lock`` around a ``Tracker`` must not wait on itself, since two
``flock`` locks on one file conflict even within a process.)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from jupyter_avml.runs.events import EpochMetrics, Event, RunFinished, RunStarted
from jupyter_avml.workspace import Workspace

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "avml-runs"
STATUS_TAG = "avml.status"
MLFLOW_STATUS = {"completed": "FINISHED", "stopped": "KILLED", "early_terminated": "KILLED", "failed": "FAILED",
                 "running": "RUNNING"}
STORE_LOCK = ".mlflow-store.lock"

# Store URIs this process has opened (their tables exist): later Trackers skip the lock.
_opened: set[str] = set()
_opened_lock = threading.Lock()


def default_tracking_uri(workspace: Workspace) -> str:
    return "sqlite:///" + str(workspace.tracking_db)


def resolve_tracking_uri(workspace: Workspace, tracking_uri: str | None = None) -> str:
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(workspace)


class Tracker:
    """A thin, explicit wrapper over ``MlflowClient`` (no global "active run" state, safe in any process)."""

    def __init__(self, workspace: Workspace | str | None = None, tracking_uri: str | None = None):
        self.workspace = Workspace.resolve(workspace)
        self.uri = resolve_tracking_uri(self.workspace, tracking_uri)
        _quiet_mlflow_logs()
        self.client = self._open_client()

    def _open_client(self):
        """The client of the store; a SQLite store's tables are created one process at a time (module docstring)."""
        from mlflow import MlflowClient

        if not self.uri.startswith("sqlite:///"):
            return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        from jupyter_avml.fileio import exclusive_lock

        with _opened_lock:
            if self.uri in _opened:
                return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            Path(self.uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            with exclusive_lock(self.workspace.root / STORE_LOCK):
                # MLflow creates (and migrates) the tracking and registry stores when the client and its first
                # queries open them: all of it under the lock.
                client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
                client.search_experiments(max_results=1)
                client.search_registered_models(max_results=1)
            _opened.add(self.uri)
            return client

    # -- experiments and runs ---------------------------------------------------------------------------
    def experiment_id(self, name: str = DEFAULT_EXPERIMENT) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if self.uri.startswith("sqlite:"):
            location = (self.workspace.artifacts_dir / _safe_name(name)).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:  # created meanwhile by another process
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def start_run(self, *, experiment: str = DEFAULT_EXPERIMENT, run_name: str | None = None,
                  tags: dict[str, Any] | None = None, parent_run_id: str | None = None) -> str:
        tags = {k: str(v) for k, v in (tags or {}).items()}
        tags[STATUS_TAG] = "running"
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id(experiment), tags=tags, run_name=run_name)
        return run.info.run_id

    def reopen(self, run_id: str) -> None:
        """Mark a run running again (resume)."""
        self.client.update_run(run_id, status="RUNNING")
        self.client.set_tag(run_id, STATUS_TAG, "running")

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_text(v)) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start:start + 100], synchronous=True)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if _is_number(v)]
        if items:
            self.client.log_batch(run_id, metrics=items, synchronous=True)

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()], synchronous=True)

    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(folder), artifact_path)

    def end_run(self, run_id: str, status: str) -> None:
        self.set_tags(run_id, {STATUS_TAG: status})
        self.client.set_terminated(run_id, MLFLOW_STATUS.get(status, "FINISHED"))

    def get_run(self, run_id: str):
        return self.client.get_run(run_id)

    def search(self, experiment: str | None = None, filter_string: str = "", max_results: int = 1000) -> list:
        if experiment is not None:
            found = self.client.get_experiment_by_name(experiment)
            ids = [found.experiment_id] if found else []
        else:
            ids = [e.experiment_id for e in self.client.search_experiments()]
        if not ids:
            return []
        return list(self.client.search_runs(ids, filter_string=filter_string, max_results=max_results,
                                            order_by=["attributes.start_time DESC"]))

    def callback(self, run_id: str) -> MlflowCallback:
        return MlflowCallback(self, run_id)


class MlflowCallback:
    """Writes a run's events into its MLflow run (params at start, metrics per epoch, status at the end)."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker, self.run_id = tracker, run_id

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            if not event.resumed_from_epoch:
                self.tracker.log_params(self.run_id, event.config)
        elif isinstance(event, EpochMetrics):
            metrics = dict(event.metrics)
            metrics["train_loss"] = event.train_loss
            metrics["learning_rate"] = event.learning_rate
            self.tracker.log_metrics(self.run_id, metrics, step=event.epoch)
        elif isinstance(event, RunFinished):
            tags = {"avml.primary_metric": event.primary_metric}
            if event.best_value is not None:
                tags["avml.best_value"] = event.best_value
            if event.reason:
                tags["avml.reason"] = event.reason[:5000]
            if event.error:
                tags["avml.error"] = event.error[:5000]
            self.tracker.set_tags(self.run_id, tags)


def _param_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _is_number(value: Any) -> bool:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return value == value and value not in (float("inf"), float("-inf"))


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _quiet_mlflow_logs() -> None:
    # MLflow sends usage telemetry (config.mlflow-telemetry.io) unless told not to: nothing of ours goes to the
    # network unasked. An explicit setting in the environment wins.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow logs every alembic migration at INFO when it creates a store; users don't need that.
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(name).setLevel(logging.WARNING)

