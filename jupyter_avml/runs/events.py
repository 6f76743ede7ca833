"""Structured progress events and the one callback interface that consumes them.

A training run emits events; a CLI progress bar, the tracking store, a sweep driver in another process and
a notebook widget all consume the same stream. Across processes the stream travels as JSON lines
(``events.jsonl`` in the run folder), written by ``JsonlEventWriter`` and read by ``read_events``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol


@dataclass
class Event:
    kind: ClassVar[str] = "event"
    run_id: str
    time: float = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **asdict(self)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Event:
        data = dict(data)
        cls = EVENT_TYPES[data.pop("event")]
        return cls(**data)


@dataclass
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    task: str = ""
    model_name: str = ""
    output_dir: str = ""
    number_of_epochs: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    resumed_from_epoch: int = 0


@dataclass
class EpochStarted(Event):
    kind: ClassVar[str] = "epoch_started"
    epoch: int = 0
    number_of_epochs: int = 0


@dataclass
class BatchProgress(Event):
    """Every ``log_every_n_batches`` batches, and at the last batch of an epoch."""

    kind: ClassVar[str] = "batch_progress"
    epoch: int = 0
    batch: int = 0
    num_batches: int = 0
    loss: float = float("nan")


@dataclass
class EpochMetrics(Event):
    """End of an epoch. ``metrics`` holds the validation metrics when the epoch was evaluated (else empty)."""

    kind: ClassVar[str] = "epoch_metrics"
    epoch: int = 0
    train_loss: float = float("nan")
    learning_rate: float = float("nan")
    metrics: dict[str, float] = field(default_factory=dict)
    primary_metric: str = ""
    primary_value: float | None = None
    is_best: bool = False
    seconds: float = 0.0


@dataclass
class CheckpointSaved(Event):
    kind: ClassVar[str] = "checkpoint_saved"
    epoch: int = 0
    path: str = ""
    best: bool = False


@dataclass
class RunFinished(Event):
    """The last event of a run. ``status``: completed, stopped, early_terminated or failed."""

    kind: ClassVar[str] = "run_finished"
    status: str = "completed"
    primary_metric: str = ""
    best_value: float | None = None
    best_epoch: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    model_path: str | None = None
    reason: str | None = None
    error: str | None = None


EVENT_TYPES: dict[str, type[Event]] = {cls.kind: cls for cls in
                                       (RunStarted, EpochStarted, BatchProgress, EpochMetrics,
                                        CheckpointSaved, RunFinished)}
TERMINAL_STATUSES = ("completed", "stopped", "early_terminated", "failed")


class Callback(Protocol):
    """Anything that wants to know how a run goes."""

    def on_event(self, event: Event) -> None: ...


class CallbackList:
    """Fans one event out to many callbacks, in order."""

    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks = [cb for cb in callbacks if cb is not None]

    def on_event(self, event: Event) -> None:
        for callback in self.callbacks:
            callback.on_event(event)


class JsonlEventWriter:
    """Appends each event as one JSON line and flushes, so another process can follow the run live."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def on_event(self, event: Event) -> None:
        from jupyter_avml.fileio import DiskFullError, is_disk_full

        try:
            self._file.write(json.dumps(event.to_dict(), default=_json_default) + "\n")
            self._file.flush()
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(self.path) from exc
            raise
        if isinstance(event, RunFinished):
            self.close()

    def close(self) -> None:
        if not self._file.closed:
            try:
                self._file.close()
            except OSError:  # a flush that failed (full disk) already raised where it happened
                pass


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, (Path, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def read_events(path: str | os.PathLike, offset: int = 0,
                on_bad_line: Callable[[bytes, Exception], None] | None = None) -> tuple[list[Event], int]:
    """Events written after byte ``offset``; returns them and the offset to read from next time.

    A partly written last line is left for the next call. A whole line that does not parse raises, unless
    ``on_bad_line`` is given: it is then called with the line and the error and the line is skipped (a
    worker killed mid-write leaves half a line, which its resumed run completes with a whole one).
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n") + 1
    events = []
    for line in chunk[:end].splitlines():
        if not line.strip():
            continue
        try:
            events.append(Event.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            if on_bad_line is None:
                raise
            on_bad_line(line, exc)
    return events, offset + end


class StopSignal:
    """A request to end a run cleanly after the current batch.

    Set in-process with ``request()`` or from another process with ``request_stop(run_dir, ...)``, which
    writes the run's stop file (JSON: status and reason). Checking costs one ``stat`` per batch.
    ``status`` is ``stopped`` (by a user or a deadline) or ``early_terminated`` (by a sweep policy).
    """

    def __init__(self, stop_file: str | os.PathLike | None = None):
        self.stop_file = Path(stop_file) if stop_file else None
        self._request: tuple[str, str] | None = None

    def request(self, reason: str = "stopped by user", status: str = "stopped") -> None:
        self._request = (status, reason)

    def _read(self) -> tuple[str, str] | None:
        if self._request is None and self.stop_file is not None and self.stop_file.exists():
            try:
                data = json.loads(self.stop_file.read_text(encoding="utf-8"))
                self._request = (data.get("status", "stopped"), data.get("reason", "stopped by user"))
            except (ValueError, OSError):
                self._request = ("stopped", "stopped by user")
        return self._request

    @property
    def reason(self) -> str | None:
        request = self._read()
        return request[1] if request else None

    @property
    def status(self) -> str | None:
        request = self._read()
        return request[0] if request else None

    def __bool__(self) -> bool:
        return self._read() is not None


STOP_FILENAME = "STOP"


def request_stop(run_dir: str | os.PathLike, reason: str = "stopped by user", status: str = "stopped") -> None:
    """Ask the run in ``run_dir`` (from any process) to stop after its current batch."""
    from jupyter_avml.fileio import atomic_write_json

    atomic_write_json(Path(run_dir) / STOP_FILENAME, {"status": status, "reason": reason})
