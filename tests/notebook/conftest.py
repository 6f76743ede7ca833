"""Shared helpers of the notebook tests: an experiment written to disk exactly as the sweep driver writes it.

``ScriptedSweep`` plays the driver's part of the file contract (``sweep/folder.py``): ``state.json`` through
``write_state``, each child's ``events.jsonl`` through the engine's ``JsonlEventWriter``, and a finished
child's ``outputs/`` through ``training.outputs.write_run_outputs``. The dashboard reads these files and
nothing else, so it can be tested on any scripted history, without training or a browser.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from jupyter_avml.metrics.result import MetricsResult
from jupyter_avml.runs.events import (
    BatchProgress,
    EpochMetrics,
    EpochStarted,
    JsonlEventWriter,
    RunFinished,
    RunStarted,
)
from jupyter_avml.sweep.folder import ExperimentFolder, process_identity
from jupyter_avml.sweep.state import ChildState, ExperimentState, experiment_dir, write_state
from jupyter_avml.training.outputs import write_run_outputs

CLASSES = ["circle", "square", "triangle"]


class ScriptedSweep:
    """Writes an experiment's files step by step: ``start_child``, ``batch``, ``epoch``, ``finish_child``."""

    def __init__(self, workspace: Path, name: str = "scripted", *, iterations: int = 3, epochs: int = 3,
                 task: str = "image-classification", primary_metric: str = "accuracy", params=None):
        self.workspace = Path(workspace)
        self.folder = experiment_dir(self.workspace, name)
        params = params or [{"model_name": "resnet18", "learning_rate": 0.01 * (k + 1)} for k in range(iterations)]
        self.state = ExperimentState(
            name=name, task=task, primary_metric=primary_metric, status="running", sampling="grid",
            iterations=iterations, max_concurrent_iterations=iterations, budget_seconds=3600.0,
            created=time.time(), started=time.time(),
            children=[ChildState(id=k, params=p, model_name=p.get("model_name", "resnet18"),
                                 number_of_epochs=epochs) for k, p in enumerate(params)])
        self.writers: dict[int, JsonlEventWriter] = {}
        self.write()
        self.driver_file(alive=True)

    def driver_file(self, alive: bool) -> None:
        """``driver.json`` naming this process as the driver (alive), or a driver that has ended."""
        info = {**process_identity(os.getpid()), "started": time.time(), "previous_seconds": 0.0}
        if not alive:
            info["ended"] = time.time()
        ExperimentFolder(self.folder).write_driver_record(info)

    def write(self) -> None:
        write_state(self.folder, self.state)

    def run_id(self, child_id: int) -> str:
        return f"run{child_id:04d}abcdef"

    def start_child(self, child_id: int) -> None:
        child = self.state.child(child_id)
        child.status, child.run_id, child.started = "running", self.run_id(child_id), time.time()
        writer = JsonlEventWriter(self.workspace / "runs" / child.run_id / "events.jsonl")
        self.writers[child_id] = writer
        writer.on_event(RunStarted(child.run_id, task=self.state.task, model_name=child.model_name,
                                   number_of_epochs=child.number_of_epochs))
        self.write()

    def batch(self, child_id: int, epoch: int, batch: int, num_batches: int) -> None:
        """A batch event only: the driver does not rewrite the state for batches."""
        child = self.state.child(child_id)
        run_id = child.run_id
        if batch == 1:
            self.writers[child_id].on_event(EpochStarted(run_id, epoch=epoch, number_of_epochs=child.number_of_epochs))
        self.writers[child_id].on_event(BatchProgress(run_id, epoch=epoch, batch=batch, num_batches=num_batches,
                                                      loss=1.0 / epoch))

    def epoch(self, child_id: int, epoch: int, value: float, *, update_state: bool = True) -> float:
        """The end of an epoch: the run's event, then (unless told not to) the driver's state write.

        Returns the event's time.
        """
        child = self.state.child(child_id)
        event = EpochMetrics(child.run_id, epoch=epoch, train_loss=1.0 / epoch, learning_rate=0.01,
                             metrics={self.state.primary_metric: value}, primary_metric=self.state.primary_metric,
                             primary_value=value, is_best=child.best_value is None or value > child.best_value)
        self.writers[child_id].on_event(event)
        if update_state:
            child.epoch = epoch
            child.metric_history.append([epoch, value])
            if child.best_value is None or value > child.best_value:
                child.best_value, child.best_epoch = value, epoch
            self.write()
        return event.time

    def finish_child(self, child_id: int, status: str = "completed", *, reason: str | None = None,
                     error: str | None = None, outputs: bool = True) -> None:
        child = self.state.child(child_id)
        run_dir = self.workspace / "runs" / child.run_id
        if outputs and child.best_value is not None:
            result = _metrics_result(child.best_value)
            history = [{"epoch": e, "train_loss": 1.0 / e, "learning_rate": 0.01,
                        "metrics": {self.state.primary_metric: v}} for e, v in child.metric_history]
            write_run_outputs(run_dir / "outputs", class_names=CLASSES, primary_metric=self.state.primary_metric,
                              best=result, best_epoch=child.best_epoch, history=history, config_yaml="task: x\n")
            child.model_path = str(run_dir / "outputs" / "model.pt")
        self.writers[child_id].on_event(RunFinished(child.run_id, status=status, best_value=child.best_value,
                                                    best_epoch=child.best_epoch, reason=reason, error=error))
        child.status, child.reason, child.error, child.ended = status, reason, error, time.time()
        self._update_best()
        self.write()

    def finish(self, status: str = "completed", reason: str | None = None) -> None:
        self.state.status, self.state.reason, self.state.ended = status, reason, time.time()
        self._update_best()
        self.write()

    def _update_best(self) -> None:
        done = [c for c in self.state.children if c.best_value is not None and c.status not in ("failed", "invalid")]
        self.state.best_child = max(done, key=lambda c: c.best_value).id if done else None


def _metrics_result(accuracy: float) -> MetricsResult:
    matrix = [[8, 1, 1], [0, 9, 1], [2, 0, 8]]
    curve = {"precision": [1.0, 0.9, 0.7], "recall": [0.2, 0.6, 1.0], "thresholds": [0.9, 0.5, 0.1]}
    per_class = {name: {"precision": 0.8, "recall": 0.8 + 0.05 * k, "f1_score": 0.8, "average_precision": 0.85,
                        "support": 10.0} for k, name in enumerate(CLASSES)}
    return MetricsResult(task="image-classification", primary_metric="accuracy",
                         scalars={"accuracy": accuracy, "precision_score_macro": 0.8}, per_class=per_class,
                         confusion_matrix=matrix, pr_curves={name: curve for name in CLASSES}, class_names=CLASSES)


@pytest.fixture
def scripted(tmp_path):
    """A factory of ``ScriptedSweep`` in a fresh workspace: ``scripted(name="x", iterations=2)``."""
    workspace = tmp_path / "ws"

    def make(**kwargs) -> ScriptedSweep:
        return ScriptedSweep(workspace, **kwargs)

    make.workspace = workspace
    return make
