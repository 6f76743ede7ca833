"""The run folder ``<workspace>/runs/<run_id>/``: its paths, its record (``run.json``), its lock, its status.

``run_id`` is the MLflow run id (32 hexadecimal characters), so a run folder, its events and its MLflow record
share one name. Inside:

* ``config.yaml``: the resolved configuration (every default filled in);
* ``run.json``: status and summary, cheap to read from any process (``read_run_json``, ``write_run_json``);
* ``events.jsonl``: the event stream (``runs.events``), followed live by sweeps and dashboards;
* ``train.log``: the log; ``checkpoints/last.pt``: resumable state; ``checkpoints/epoch_NNN.pt``: periodic
  model files; ``outputs/``: ``model.pt`` and the reports;
* ``STOP``: written by ``request_stop`` to end the run after its current batch;
* ``.lock``: held (``fileio.try_lock``) by the process that trains the run, from start to end, so that a
  second process (``resume`` of a run still training) is refused instead of racing on its files.

Run ids given by users are checked (``check_run_id``): only run-id-shaped names (hexadecimal, 6 to 32
characters; 6+ is a unique prefix) are looked up, and never outside ``<workspace>/runs``.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from jupyter_avml.errors import DamagedRunError, NotFoundError, RunBusyError
from jupyter_avml.runs.events import STOP_FILENAME
from jupyter_avml.workspace import Workspace

RUN_ID_PATTERN = re.compile(r"[0-9a-f]{6,32}")
"""A run id (MLflow: 32 lowercase hexadecimal characters) or a unique prefix of one, 6 characters at least."""

DAMAGED = "damaged"
"""The status ``list_runs`` gives a run whose ``run.json`` cannot be read."""


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (nothing is created)."""

    path: Path

    @classmethod
    def of(cls, workspace: Workspace, run_id: str) -> RunFolder:
        return cls(workspace.runs_dir / run_id)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def record_file(self) -> Path:
        return self.path / "run.json"

    @property
    def events_file(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def log_file(self) -> Path:
        return self.path / "train.log"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints_dir / "last.pt"

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints_dir / f"epoch_{epoch:03d}.pt"

    @property
    def outputs_dir(self) -> Path:
        return self.path / "outputs"

    @property
    def model_file(self) -> Path:
        return self.outputs_dir / "model.pt"

    @property
    def stop_file(self) -> Path:
        return self.path / STOP_FILENAME

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"


# -- finding a run -----------------------------------------------------------------------------------------
def check_run_id(run_id: Any) -> str:
    """``run_id`` as a run id or unique prefix (lowercase hexadecimal, 6-32 characters); ``NotFoundError`` else."""
    text = run_id.strip().lower() if isinstance(run_id, str) else ""
    if not RUN_ID_PATTERN.fullmatch(text):
        raise NotFoundError(f"{run_id!r} is not a run id: run ids are the 32 hexadecimal characters MLflow gives "
                            f"a run (a unique prefix of 6 or more is enough; see `avml runs list`)")
    return text


def find_run_dir(workspace: Workspace, run_id: str) -> Path:
    """The folder of ``run_id`` inside ``<workspace>/runs``; a unique prefix of at least 6 characters is enough.

    Raises ``NotFoundError`` for a name that is not run-id-shaped, an unknown or ambiguous id, and a run folder
    that resolves outside the runs folder (a symbolic link).
    """
    workspace = Workspace.resolve(workspace)
    run_id = check_run_id(run_id)
    runs = workspace.runs_dir
    where = runs
    if (runs / run_id).is_dir():
        matches = [runs / run_id]
    else:
        matches = sorted(p for p in runs.iterdir() if p.name.startswith(run_id) and p.is_dir()) \
            if runs.is_dir() else []
    if len(matches) > 1:
        raise NotFoundError(f"run id prefix {run_id!r} matches {len(matches)} runs in {where}")
    if not matches:
        raise NotFoundError(f"no run {run_id!r} in {where} (see `avml runs list`)")
    found = matches[0]
    if not found.resolve().is_relative_to(runs.resolve()):
        raise NotFoundError(f"run {found.name} in {where} points outside the runs folder ({found.resolve()})")
    return found


# -- the record ----------------------------------------------------------------------------------------------
def read_run_json(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The record of a run (``run.json``); ``{}`` when there is none yet.

    Raises ``DamagedRunError`` (naming the file and what can be done) when the file exists but is not a JSON
    object: a damaged record is never mistaken for a missing one.
    """
    from jupyter_avml.fileio import DamagedFileError, read_json_object

    folder = RunFolder(Path(run_dir))
    try:
        data = read_json_object(folder.record_file)
    except OSError as exc:
        reason = f"cannot be read: {exc.strerror or exc}"
    except DamagedFileError as exc:
        reason = exc.reason
    else:
        return data if data is not None else {}
    raise DamagedRunError(damaged_run_message(folder.path, reason), folder.path, reason) from None


def damaged_run_message(run_dir: str | os.PathLike, reason: str | None, command: str = "avml") -> str:
    """What to tell a user whose run record (``run.json``) is damaged (``reason``) or missing (``None``), in
    the words of their door (``command``: ``avml`` or ``%avml``): what is still intact and how to go on."""
    folder = RunFolder(Path(run_dir))
    problem = f"is damaged ({reason})" if reason is not None else "is missing"
    text = f"{folder.record_file} {problem}: the status of run {folder.run_id} is unknown; "
    model = folder.model_file
    text += f"its model file {model} is intact" if model.is_file() else "it has no model file"
    resumable = "its last checkpoint" if folder.last_checkpoint.is_file() else "the beginning (no checkpoint yet)"
    if reason is not None:
        text += (f"; move the file aside (or delete it) and `{command} train --resume {folder.run_id}` "
                 f"continues the run from {resumable} with a new record")
    if folder.config_file.is_file():
        text += f"; or train it again with `{command} train {folder.config_file}`"
    return text


def write_run_json(run_dir: str | os.PathLike, **changes: Any) -> dict[str, Any]:
    """Update the record of a run with ``changes`` (and ``updated``), atomically; returns the new record."""
    from jupyter_avml.fileio import atomic_write_json

    folder = RunFolder(Path(run_dir))
    data = read_run_json(folder.path)
    data.update(changes)
    data["updated"] = time.time()
    atomic_write_json(folder.record_file, jsonable(data), indent=2)
    return data


def record_run_status(run_dir: str | os.PathLike, status: str, **fields: Any) -> None:
    """Record in ``run.json`` how a run ended when its own process could not (e.g. it was killed)."""
    write_run_json(run_dir, status=status, ended=time.time(), **fields)


def run_status(info: dict[str, Any], run_dir: str | os.PathLike | None = None) -> str:
    """The recorded status, or ``interrupted`` for a run marked running whose process is gone.

    With ``run_dir``, a run is running while its lock is held (immune to a reused process id); without it, while
    the recorded process exists.
    """
    status = info.get("status", "unknown")
    if status != "running":
        return status
    if run_dir is not None and RunFolder(Path(run_dir)).lock_file.exists():
        from jupyter_avml.fileio import lock_is_held

        return "running" if lock_is_held(RunFolder(Path(run_dir)).lock_file) else "interrupted"
    if info.get("pid") and not pid_alive(int(info["pid"])):
        return "interrupted"
    return status


def list_runs(workspace: str | os.PathLike | Workspace | None = None) -> list[dict[str, Any]]:
    """The records of every run of the workspace, newest first, each with its derived ``status``.

    A run whose ``run.json`` is damaged is listed with status ``damaged`` and the reason in ``error``; folders
    that are not runs (no run-id-shaped name, no record and no configuration) are skipped.
    """
    ws = Workspace.resolve(workspace)
    infos = []
    if not ws.runs_dir.is_dir():
        return infos
    for path in ws.runs_dir.iterdir():
        if not (path.is_dir() and RUN_ID_PATTERN.fullmatch(path.name)):
            continue
        folder = RunFolder(path)
        try:
            info = read_run_json(path)
        except DamagedRunError as exc:
            info = {"run_id": path.name, "status": DAMAGED, "error": str(exc),
                    "created": folder.config_file.stat().st_mtime if folder.config_file.exists() else 0}
        else:
            if not info and not folder.config_file.exists():
                continue
            info = {"run_id": path.name, **info}
            info["status"] = run_status(info, path)
        infos.append(info)
    return sorted(infos, key=lambda i: i.get("created") or 0, reverse=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the lock of the training process ------------------------------------------------------------------------
def lock_run(run_dir: str | os.PathLike) -> IO:
    """Take the run's lock for this process (release: close the returned handle, or end the process).

    Raises ``RunBusyError`` naming the run and the process that trains it when another process holds it.
    """
    from jupyter_avml.fileio import try_lock

    folder = RunFolder(Path(run_dir))
    handle = try_lock(folder.lock_file)
    if handle is None:
        try:
            pid = read_run_json(folder.path).get("pid")
        except DamagedRunError:
            pid = None
        who = f"process {pid}" if pid else "another process"
        raise RunBusyError(f"run {folder.run_id} is being trained by {who} (its lock {folder.lock_file} is held); "
                           f"wait for it to end, or stop it first (the STOP file: request_stop)")
    return handle


def jsonable(value: Any) -> Any:
    """JSON-ready copy: non-finite floats become None, numpy/torch scalars plain numbers, tuples lists."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):
        return jsonable(value.item())
    return value
