"""Where the dashboard's data comes from: the experiment's files in the workspace, readable by any process.

``ExperimentFiles`` reads ``experiments/<name>/state.json`` (written atomically by the sweep driver), tails
each running child's ``runs/<run_id>/events.jsonl`` from the byte offset it reached last time, and reads the
reports a finished child leaves in ``runs/<run_id>/outputs/``. ``DashboardSource`` feeds both into a
``DashboardModel``. Because everything comes from files, a dashboard can be rebuilt at any time, in any
kernel (TensorBoard's re-attach model): nothing lives only in the process that started the sweep.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_avml.dashboard._model import DashboardModel, Snapshot
from jupyter_avml.sweep.state import ExperimentState, experiment_dir, read_state
from jupyter_avml.training.events import Event, read_events
from jupyter_avml.workspace import Workspace

#: The report images a finished run writes (``training.outputs.write_plots``), in display order.
REPORT_IMAGES = ("metric_curve", "loss_curve", "confusion_matrix", "pr_curves", "roc_curves")


@dataclass
class RunReport:
    """What a finished child run left in its ``outputs/`` folder."""

    run_id: str
    outputs_dir: Path
    primary_metric: str | None = None
    primary_value: float | None = None
    best_epoch: int | None = None
    final: dict[str, Any] = field(default_factory=dict)           # scalar metrics of the best epoch
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_epoch: list[dict[str, Any]] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)         # REPORT_IMAGES name -> PNG bytes

    @property
    def empty(self) -> bool:
        return not (self.final or self.per_class or self.images)


class ExperimentFiles:
    """Read-only access to one experiment's files."""

    def __init__(self, name: str, workspace: str | os.PathLike | Workspace | None = None):
        self.workspace = Workspace.resolve(workspace)
        self.name = name
        self.folder = experiment_dir(self.workspace.root, name)
        self._offsets: dict[str, int] = {}

    def exists(self) -> bool:
        return (self.folder / "state.json").is_file()

    def read_state(self) -> ExperimentState | None:
        return read_state(self.folder)

    def run_dir(self, run_id: str) -> Path:
        return self.workspace.run_dir(run_id)

    def read_new_events(self, run_id: str) -> list[Event]:
        """The events ``run_id`` wrote since the last call (all of them the first time)."""
        # A line left half-written by a killed worker is skipped, as the sweep driver does (which logs it).
        events, self._offsets[run_id] = read_events(self.run_dir(run_id) / "events.jsonl",
                                                    self._offsets.get(run_id, 0), on_bad_line=_ignore)
        return events

    def run_report(self, run_id: str) -> RunReport | None:
        """The report of a finished run, or None when it left no ``outputs/metrics.json`` nor images."""
        outputs = self.run_dir(run_id) / "outputs"
        if not outputs.is_dir():
            return None
        report = RunReport(run_id=run_id, outputs_dir=outputs)
        metrics = _read_json(outputs / "metrics.json")
        if isinstance(metrics, dict):
            report.primary_metric = metrics.get("primary_metric")
            report.primary_value = metrics.get("primary_metric_value")
            report.best_epoch = metrics.get("best_epoch")
            report.final = dict(metrics.get("final") or {})
            report.per_class = dict(metrics.get("per_class") or {})
            report.per_epoch = list(metrics.get("per_epoch") or [])
        labels = _read_json(outputs / "labels.json")
        if isinstance(labels, list):
            report.class_names = [str(x) for x in labels]
        for name in REPORT_IMAGES:
            path = outputs / f"{name}.png"
            if path.is_file():
                report.images[name] = path.read_bytes()
        return None if report.empty else report


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda _: math.nan)
    except (OSError, ValueError):
        return None


class DashboardSource:
    """Polls an experiment's files into a ``DashboardModel``; ``poll()`` returns the new ``Snapshot``.

    Events are read for children that run, and once more when a child is seen to have finished (its last
    epoch's metrics may be newer than the state). A child already finished when first seen is taken from
    the state alone: the driver recorded its history there.

    ``alive`` tells whether the experiment's driver still runs (default: ``sweep.experiment.driver_alive``),
    asked every ``alive_every`` seconds while the state is not final: a state left unfinished by a dead
    driver is shown as ``interrupted``, and the dashboard stops waiting for it.
    """

    def __init__(self, files: ExperimentFiles, model: DashboardModel | None = None, *,
                 alive: Callable[[], bool] | None = None, alive_every: float = 2.0):
        self.files = files
        self.model = model or DashboardModel()
        self._following: set[str] = set()  # run ids read while running, not yet read after they ended
        self._alive = alive if alive is not None else self._driver_alive
        self.alive_every = alive_every
        self._alive_checked = -float("inf")

    def _driver_alive(self) -> bool:
        from jupyter_avml.sweep.experiment import driver_alive

        return driver_alive(self.files.name, self.files.workspace)

    def poll(self) -> Snapshot | None:
        state = self.files.read_state()
        if state is None:
            return self.model.snapshot()
        if not state.finished and time.monotonic() - self._alive_checked >= self.alive_every:
            self._alive_checked = time.monotonic()
            if not self._alive():
                from jupyter_avml.sweep.folder import ExperimentFolder
                from jupyter_avml.sweep.status import observe

                state = self.files.read_state() or state  # it may have finished between the two reads
                # ``interrupted``, clocks stopped at the driver's last sign of life, and how to resume it.
                state = observe(state, alive=False, last_seen=ExperimentFolder(self.files.folder).last_seen())
        for child in state.children:
            run_id = child.run_id
            if not run_id:
                continue
            if child.status == "running":
                self._following.add(run_id)
            elif run_id not in self._following:
                continue
            else:
                self._following.discard(run_id)
            self.model.apply_events(run_id, self.files.read_new_events(run_id))
        self.model.apply_state(state)
        return self.model.snapshot()


def _ignore(line: bytes, exc: Exception) -> None:
    """``read_events``' ``on_bad_line`` for readers that skip unreadable lines silently."""
