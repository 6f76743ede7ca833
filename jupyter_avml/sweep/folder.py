"""The experiment folder: every file of ``<workspace>/experiments/<name>/``, who writes it, who reads it.

This module is the only place that knows these names; the driver, the workers, the launcher and the
readers (handles, CLI, dashboard) all go through ``ExperimentFolder``. Writes are atomic
(``jupyter_avml.fileio``), so a reader never sees half a file.

==========================  ================================================================================
``experiment.yaml``         the submitted experiment (run + sweep settings). Written once by ``submit``.
``state.json``              ``ExperimentState`` (``state.py``). Written by ``submit`` (initial, ``queued``)
                            and then only by the driver, after every change; by ``stop()`` when no driver
                            runs. Every reader reads it.
``driver.json``             the driver's identity (``pid``, ``create_time`` of that pid, ``host``), its
                            session ``started``, ``heartbeat`` (every few seconds), ``previous_seconds``
                            (budget used by earlier sessions) and ``ended``. Written only by the driver.
``launch.json``             the driver process a launcher just started (``pid``, ``create_time``, ``host``,
                            ``time``), so that it counts as alive before it holds its lock. Written only
                            by the launcher (``launcher.py``).
``driver.lock``             ``flock``-ed by the driver for its whole life: one driver per experiment.
``driver.log``              the driver's output (the launcher appends a header per start).
``STOP``                    ``{"reason", "time"}``: stop every child cleanly and end. Written by ``stop()``,
                            removed by ``resume()``.
``children/<id>.json``      a child's worker: ``child``, ``slot``, ``pid``, ``log``, ``run_id`` once its run
                            exists, or ``error`` when it failed before. Written by the worker.
``children/<id>.log``       the worker's output once it has the child.
``children/<id>.stop``      ``{"reason", "time"}``: stop this child. Written by ``stop_child()``, removed by
                            the driver when it acts on it.
``children/<id>.order``     ``{"status", "reason", "time"}``: the driver's stop order to the child's worker,
                            for an executor with no pipe to it (Ray). Written by the executor, read by the
                            worker (which then stops as a local worker told on its stdin does).
``workers/worker-<n>.log``  a worker's output before it gets a child (its warm-up).
==========================  ================================================================================

Each child is an ordinary run (``<workspace>/runs/<run_id>/``, see ``training.run``): its ``events.jsonl``
carries per-epoch metrics and per-batch progress.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import IO, Any

from jupyter_avml.errors import AvmlError
from jupyter_avml.fileio import atomic_write_json, atomic_write_text, lock_is_held, read_json_object, try_lock

__all__ = ["ExperimentFolder", "DamagedStateError", "experiment_dir", "process_identity", "tail_lines"]

CONFIG_FILE = "experiment.yaml"
STATE_FILE = "state.json"
DRIVER_FILE = "driver.json"
LAUNCH_FILE = "launch.json"
LOCK_FILE = "driver.lock"
LOG_FILE = "driver.log"
STOP_FILE = "STOP"
CHILDREN_DIR = "children"
WORKERS_DIR = "workers"
LOG_TAIL_LINES = 15


class DamagedStateError(AvmlError):
    """``state.json`` exists but cannot be read; the message names the file and what can still be done.

    ``what`` says what is wrong with the file; ``folder`` is the experiment's ``ExperimentFolder``, so that a
    door can say the same in its own words (``status.damaged_state_message(folder, what, command)``).
    """

    def __init__(self, message: str, path: Path, *, what: str = "", folder: ExperimentFolder | None = None):
        super().__init__(message)
        self.path = path
        self.what = what
        self.folder = folder


def experiment_dir(workspace_root: str | os.PathLike, name: str) -> Path:
    """``<workspace>/experiments/<name>``."""
    return Path(workspace_root) / "experiments" / name


def process_identity(pid: int) -> dict[str, Any]:
    """``pid``, ``create_time`` (as psutil reports it) and ``host``: how a process is recognised after pid reuse."""
    import psutil

    return {"pid": pid, "create_time": psutil.Process(pid).create_time(), "host": socket.gethostname()}


def tail_lines(path: str | os.PathLike, count: int = LOG_TAIL_LINES) -> str:
    """The last ``count`` lines of a log ('' when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-count:])


def _read_quietly(path: Path) -> dict[str, Any]:
    """A small JSON record, ``{}`` when missing or damaged (records other than the state are advisory)."""
    try:
        return read_json_object(path) or {}
    except (OSError, ValueError):
        return {}


class ExperimentFolder:
    """The files of one experiment (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def of(cls, workspace_root: str | os.PathLike, name: str) -> ExperimentFolder:
        return cls(experiment_dir(workspace_root, name))

    @property
    def name(self) -> str:
        return self.path.name

    def __repr__(self) -> str:
        return f"ExperimentFolder({str(self.path)!r})"

    # -- paths ------------------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    @property
    def driver_file(self) -> Path:
        return self.path / DRIVER_FILE

    @property
    def launch_file(self) -> Path:
        return self.path / LAUNCH_FILE

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def log_file(self) -> Path:
        return self.path / LOG_FILE

    @property
    def stop_file(self) -> Path:
        return self.path / STOP_FILE

    def child_info_file(self, child_id: int) -> Path:
        return self.path / CHILDREN_DIR / f"{int(child_id)}.json"

    def child_log(self, child_id: int) -> Path:
        return self.path / CHILDREN_DIR / f"{int(child_id)}.log"

    def child_stop_file(self, child_id: int) -> Path:
        return self.path / CHILDREN_DIR / f"{int(child_id)}.stop"

    def child_order_file(self, child_id: int) -> Path:
        return self.path / CHILDREN_DIR / f"{int(child_id)}.order"

    def worker_log(self, serial: int) -> Path:
        return self.path / WORKERS_DIR / f"worker-{int(serial)}.log"

    def exists(self) -> bool:
        """Whether an experiment was submitted here (its configuration or its state is written)."""
        return self.config_file.exists() or self.state_file.exists()

    # -- the configuration ------------------------------------------------------------------------------
    def write_config(self, yaml_text: str) -> None:
        atomic_write_text(self.config_file, yaml_text)

    # -- the state --------------------------------------------------------------------------------------
    def read_state(self):
        """The ``ExperimentState`` of ``state.json``; None when there is none.

        Raises ``DamagedStateError`` naming the file when it is not a state (not JSON, not an object, fields
        of the wrong kind).
        """
        from jupyter_avml.sweep.state import ExperimentState

        try:
            data = read_json_object(self.state_file)
        except ValueError as exc:
            raise self._damaged(str(exc)) from None
        except OSError as exc:
            raise self._damaged(f"{self.state_file} cannot be read ({exc.strerror or exc})") from None
        if data is None:
            return None
        try:
            return ExperimentState.from_dict(data)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise self._damaged(f"{self.state_file} is damaged (not an experiment state: {exc})") from None

    def _damaged(self, what: str) -> DamagedStateError:
        from jupyter_avml.sweep.status import damaged_state_message

        return DamagedStateError(damaged_state_message(self, what), self.state_file, what=what, folder=self)

    def write_state(self, state) -> None:
        """Atomically replace ``state.json``."""
        atomic_write_json(self.state_file, state.to_dict(), default=_json_default)

    def state_mtime(self) -> float | None:
        try:
            return self.state_file.stat().st_mtime
        except OSError:
            return None

    # -- the driver's records ---------------------------------------------------------------------------
    def read_driver_record(self) -> dict[str, Any]:
        """``driver.json`` (``{}`` when missing or damaged: it is rewritten by every heartbeat)."""
        return _read_quietly(self.driver_file)

    def write_driver_record(self, record: dict[str, Any]) -> None:
        """Only the driver calls this."""
        atomic_write_json(self.driver_file, record)

    def read_launch_record(self) -> dict[str, Any]:
        return _read_quietly(self.launch_file)

    def write_launch_record(self, record: dict[str, Any]) -> None:
        """Only the launcher calls this."""
        atomic_write_json(self.launch_file, record)

    def try_driver_lock(self) -> IO | None:
        """Take ``driver.lock`` (held until the handle is closed or the process ends), or None when taken."""
        return try_lock(self.lock_file)

    def driver_lock_held(self) -> bool:
        return lock_is_held(self.lock_file)

    # -- stop requests ----------------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        atomic_write_json(self.stop_file, {"reason": reason, "time": time.time()})

    def stop_request(self) -> str | None:
        """The reason of a pending ``STOP`` (``stopped by user`` when it has none), or None."""
        if not self.stop_file.exists():
            return None
        return str(_read_quietly(self.stop_file).get("reason") or "stopped by user")

    def clear_stop(self) -> None:
        self.stop_file.unlink(missing_ok=True)

    def request_child_stop(self, child_id: int, reason: str) -> None:
        atomic_write_json(self.child_stop_file(child_id), {"reason": reason, "time": time.time()})

    def take_child_stop_requests(self) -> list[tuple[int, str]]:
        """The pending per-child stop requests ``(child id, reason)``, removed as they are read."""
        folder = self.path / CHILDREN_DIR
        if not folder.is_dir():
            return []
        out = []
        for path in sorted(folder.glob("*.stop")):
            try:
                child_id = int(path.stem)
            except ValueError:
                continue
            reason = str(_read_quietly(path).get("reason") or "stopped by user")
            path.unlink(missing_ok=True)
            out.append((child_id, reason))
        return out

    def order_child_stop(self, child_id: int, status: str, reason: str) -> None:
        """The executor tells a child's worker to stop (``children/<id>.order``)."""
        atomic_write_json(self.child_order_file(child_id), {"status": status, "reason": reason, "time": time.time()})

    def child_stop_order(self, child_id: int) -> tuple[str, str] | None:
        """``(status, reason)`` of a stop order for the child's worker, or None."""
        path = self.child_order_file(child_id)
        if not path.exists():
            return None
        order = _read_quietly(path)
        return str(order.get("status") or "stopped"), str(order.get("reason") or "stopped by user")

    def clear_child_order(self, child_id: int) -> None:
        self.child_order_file(child_id).unlink(missing_ok=True)

    # -- what workers report ----------------------------------------------------------------------------
    def write_child_info(self, child_id: int, info: dict[str, Any]) -> None:
        """Only the child's worker calls this."""
        atomic_write_json(self.child_info_file(child_id), info)

    def read_child_info(self, child_id: int) -> dict[str, Any]:
        return _read_quietly(self.child_info_file(child_id))

    def clear_child_info(self, child_id: int) -> None:
        """Forget what an earlier worker of this child reported (before the child is handed out again)."""
        self.child_info_file(child_id).unlink(missing_ok=True)

    # -- liveness ---------------------------------------------------------------------------------------
    def last_seen(self) -> float | None:
        """When the driver was last known to be working: its last heartbeat or end, or the state's last write."""
        record = self.read_driver_record()
        times = [t for t in (record.get("ended"), record.get("heartbeat"), record.get("started"),
                             self.state_mtime()) if isinstance(t, (int, float))]
        return max(times) if times else None


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
