"""The dashboard's state model: plain Python, no widgets, no files.

``DashboardModel`` folds two inputs into one immutable ``Snapshot`` that every view renders:

* the experiment state (``sweep.state.ExperimentState``, from ``state.json``): statuses, reasons, the
  per-epoch primary metric the driver recorded;
* the children's run events (``runs.events``, from each run's ``events.jsonl``): batch progress inside
  an epoch and the epoch's metrics as soon as the run writes them, before the driver's next state write.

The state is the authority for statuses and for what the driver decided; events only add what is newer.
Tests drive the model with recorded or scripted sequences of states and events (no browser, no kernel).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from jupyter_avml.runs.events import BatchProgress, EpochMetrics, EpochStarted, Event, RunStarted
from jupyter_avml.sweep.state import CHILD_TERMINAL, EXPERIMENT_TERMINAL, ChildState, ExperimentState

#: Child statuses that end a run before its last epoch (the chart shows these series cut short).
CUT_STATUSES = ("early_terminated", "stopped", "failed")
#: Experiment statuses after which nothing changes: the driver's final ones, and ``interrupted`` (the state
#: is not final but no driver runs the experiment any more; resuming it starts a new driver).
FINAL_STATUSES = (*EXPERIMENT_TERMINAL, "interrupted")


@dataclass(frozen=True)
class ChildRow:
    """One leaderboard row: a child run as the dashboard shows it."""

    id: int
    model_name: str
    params: tuple[tuple[str, Any], ...]  # the sampled values other than model_name, sorted by name
    status: str
    note: str | None                     # why it ended early (policy reason) or failed (error)
    epoch: int                           # epochs finished
    progress: float                      # epochs finished, with the running epoch's fraction of batches
    number_of_epochs: int
    history: tuple[tuple[int, float], ...]  # (epoch, primary metric), by epoch
    current: float | None                # the primary metric at the last evaluated epoch
    best: float | None
    best_epoch: int | None
    run_id: str | None
    is_best: bool = False
    why: str | None = None               # why the sampler chose it (AutoMode's portfolio or refinement)

    @property
    def finished(self) -> bool:
        return self.status in CHILD_TERMINAL

    @property
    def cut_short(self) -> bool:
        """Ended before its last epoch by a policy, a user stop or a failure."""
        return self.status in CUT_STATUSES and (self.number_of_epochs == 0 or self.epoch < self.number_of_epochs)

    @property
    def fraction(self) -> float:
        """Epoch progress in [0, 1] (for the progress bar)."""
        if self.number_of_epochs <= 0:
            return 1.0 if self.status == "completed" else 0.0
        return min(1.0, max(0.0, self.progress / self.number_of_epochs))


@dataclass(frozen=True)
class Snapshot:
    """Everything a view draws, at one moment. Equal snapshots draw the same picture."""

    name: str
    task: str
    primary_metric: str
    status: str
    note: str | None                     # the experiment's reason or error
    done: int                            # children in a final status
    iterations: int
    elapsed: int                         # whole seconds since the experiment started (0 before)
    budget: float | None                 # seconds
    rows: tuple[ChildRow, ...]           # sorted: best metric first, then by id
    best_child: int | None
    counts: tuple[tuple[str, int], ...]  # status -> number of children

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    def row(self, child_id: int) -> ChildRow:
        for row in self.rows:
            if row.id == child_id:
                return row
        raise KeyError(child_id)

    @property
    def max_epochs(self) -> int:
        return max([row.number_of_epochs for row in self.rows] + [row.epoch for row in self.rows] + [1])


@dataclass
class _Live:
    """What a child's events told us beyond the state file."""

    started_epoch: int = 0               # the epoch in progress (1-based), 0 before the first
    batch_fraction: float = 0.0          # fraction of that epoch's batches done
    epochs_done: int = 0
    number_of_epochs: int = 0
    values: dict[int, float] = field(default_factory=dict)  # epoch -> primary metric


class DashboardModel:
    """Folds experiment states and run events into ``Snapshot`` objects.

    Parameters
    ----------
    clock : returns the current time in seconds since the epoch (``time.time``); tests pass their own.
    """

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.state: ExperimentState | None = None
        self._live: dict[str, _Live] = {}  # run_id -> live progress

    # -- inputs ----------------------------------------------------------------------------------------
    def apply_state(self, state: ExperimentState) -> None:
        """Take a newer experiment state (the whole state replaces the previous one)."""
        self.state = state

    def apply_events(self, run_id: str, events: Iterable[Event]) -> None:
        """Take the next events of one child's run, in the order they were written."""
        live = self._live.setdefault(run_id, _Live())
        for event in events:
            if isinstance(event, RunStarted):
                live.number_of_epochs = event.number_of_epochs or live.number_of_epochs
                live.epochs_done = max(live.epochs_done, event.resumed_from_epoch)
            elif isinstance(event, EpochStarted):
                live.started_epoch, live.batch_fraction = event.epoch, 0.0
                live.number_of_epochs = event.number_of_epochs or live.number_of_epochs
            elif isinstance(event, BatchProgress):
                live.started_epoch = event.epoch
                live.batch_fraction = event.batch / event.num_batches if event.num_batches else 0.0
            elif isinstance(event, EpochMetrics):
                live.epochs_done = max(live.epochs_done, event.epoch)
                live.started_epoch, live.batch_fraction = event.epoch, 1.0
                if event.primary_value is not None and _finite(event.primary_value):
                    live.values[event.epoch] = float(event.primary_value)

    # -- output ----------------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot | None:
        """The current picture; None until a state has been applied."""
        state = self.state
        if state is None:
            return None
        rows = [self._row(child) for child in state.children]
        rows.sort(key=_rank_key)
        best = self._best_child(state, rows)
        rows = [_replace(row, is_best=row.id == best) for row in rows]
        if state.started is None:
            elapsed = 0
        else:
            elapsed = int(max(0.0, (state.ended if state.ended is not None else self.clock()) - state.started))
        return Snapshot(
            name=state.name, task=state.task, primary_metric=state.primary_metric, status=state.status,
            note=state.error or state.reason, done=sum(1 for c in state.children if c.finished),
            iterations=state.iterations, elapsed=elapsed, budget=state.budget_seconds, rows=tuple(rows),
            best_child=best, counts=tuple(sorted(state.counts().items())))

    def _row(self, child: ChildState) -> ChildRow:
        live = self._live.get(child.run_id) if child.run_id else None
        values: dict[int, float] = {}
        for epoch, value in child.metric_history:
            if value is not None and _finite(value):
                values[int(epoch)] = float(value)
        epoch, progress, epochs = child.epoch, float(child.epoch), child.number_of_epochs
        if live is not None:
            values.update(live.values)
            epochs = epochs or live.number_of_epochs
            epoch = max(epoch, live.epochs_done)
            progress = float(epoch)
            # A partly done epoch shows only while the child runs; a finished child keeps what it finished.
            if child.status == "running" and live.started_epoch == epoch + 1:
                progress = epoch + live.batch_fraction
        if child.status == "completed" and epochs:
            progress = max(progress, float(epoch))
        history = tuple(sorted(values.items()))
        best_value, best_epoch = child.best_value, child.best_epoch
        if history:
            top_epoch, top_value = max(history, key=lambda item: (item[1], -item[0]))
            if best_value is None or not _finite(best_value) or top_value > best_value:
                best_value, best_epoch = top_value, top_epoch
        return ChildRow(
            id=child.id, model_name=child.model_name or str(child.params.get("model_name", "")),
            params=tuple(sorted((k, v) for k, v in child.params.items() if k != "model_name")),
            status=child.status, note=child.reason or child.error, epoch=epoch, progress=progress,
            number_of_epochs=epochs, history=history, current=history[-1][1] if history else None,
            best=best_value if best_value is not None and _finite(best_value) else None, best_epoch=best_epoch,
            run_id=child.run_id, why=child.why)

    @staticmethod
    def _best_child(state: ExperimentState, rows: list[ChildRow]) -> int | None:
        # Once the driver has decided (the experiment is over), its choice is the answer; while it runs,
        # the best metric seen so far (events included) leads.
        if state.finished and state.best_child is not None:
            return state.best_child
        for row in rows:
            if row.best is not None and row.status not in ("failed", "invalid"):
                return row.id
        return state.best_child


def _rank_key(row: ChildRow) -> tuple:
    # All primary metrics (accuracy, iou, mean_average_precision) are maximised: higher ranks first.
    return (row.best is None, -(row.best or 0.0), row.id)


def _replace(row: ChildRow, **changes: Any) -> ChildRow:
    from dataclasses import replace

    return replace(row, **changes)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# -- formatting shared by the views -------------------------------------------------------------------------
def format_value(value: Any) -> str:
    """A parameter or metric value, short: 4 significant digits for floats."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def format_metric(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``42s``; budgets of days show as ``7d``."""
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
