"""Experiments and runs as the verbs read them: statuses, damaged files and resume hints, each from one place.

* status of an experiment: ``ExperimentHandle.status`` (the sweep's derivation: ``interrupted`` when no driver
  runs an unfinished experiment); of a run: ``training.run.run_status``. Nothing here derives them again.
* a damaged ``state.json`` or ``run.json`` (truncated, not JSON, not UTF-8, not a record) becomes one
  ``AvmlError`` naming the file and what can still be done (``damaged_experiment``, ``damaged_run``); listings
  keep such entries, marked ``damaged``, instead of losing them.
* the hints that end an ``interrupted`` line (``resume_hint``) name the verb in the door the user is in
  (``avml resume NAME`` in a shell, ``%avml resume NAME`` in a notebook).

The lower layers raise plain ``ValueError``/``TypeError`` on a damaged file today (``sweep.state.read_state``)
or read it as empty (``training.run.read_run_json``); these functions turn both into the message, and pass on
an ``AvmlError`` the lower layers raise themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_avml.errors import AvmlError, DamagedRunError
from jupyter_avml.workspace import Workspace

DAMAGED = "damaged"
#: What reading a damaged JSON record raises below the verbs (``UnicodeDecodeError`` is a ``ValueError``).
_DAMAGE = (OSError, ValueError, TypeError, KeyError, AttributeError)


def damage_reason(exc: BaseException) -> str:
    """Why a record could not be read, in a few words."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"not a record of the expected form: {type(exc).__name__}: {exc}"


# -- experiments ---------------------------------------------------------------------------------------------
def damaged_experiment(name: str, workspace: Workspace, reason: str, command: str = "avml") -> AvmlError:
    """The error for an experiment whose ``state.json`` cannot be read, saying what can still be done."""
    from jupyter_avml.sweep import ExperimentHandle
    from jupyter_avml.sweep.status import damaged_state_message

    folder = ExperimentHandle(name, workspace).folder
    return AvmlError(damaged_state_message(folder, f"{folder.state_file} is damaged ({reason})", command))


def open_experiment(name: str, workspace: str | Path | Workspace | None, command: str = "avml"):
    """The ``ExperimentHandle`` of ``name``, its state read once (a damaged one fails here, clearly).

    Raises
    ------
    NotFoundError
        No such experiment (the message lists the workspace's experiments).
    AvmlError
        Its ``state.json`` is damaged.
    """
    from jupyter_avml.sweep import DamagedStateError, attach
    from jupyter_avml.sweep.status import damaged_state_message

    ws = Workspace.resolve(workspace)
    try:
        handle = attach(name, ws)
        handle.state  # noqa: B018 - reading it is the check
    except DamagedStateError as exc:  # the sweep's words, with this door's commands
        raise AvmlError(damaged_state_message(exc.folder, exc.what, command)) from None
    except AvmlError:
        raise
    except _DAMAGE as exc:
        raise damaged_experiment(name, ws, damage_reason(exc), command) from None
    return handle


def experiment_status(handle) -> str:
    """The status shown for an experiment (``ExperimentHandle.status``: ``interrupted`` included)."""
    return handle.status


def resume_hint(name: str, command: str = "avml") -> str:
    """The line shown under an ``interrupted`` experiment or run (the sweep's hint, in the user's door)."""
    from jupyter_avml.sweep import resume_hint as sweep_resume_hint

    return f"nothing runs it any more: {sweep_resume_hint(name, command)}"


@dataclass
class ExperimentRow:
    """One experiment of a listing: its state, or the problem that keeps it from being read."""

    name: str
    status: str
    state: Any = None               # ExperimentState; None when damaged
    problem: str | None = None      # the damaged-file message

    def to_dict(self) -> dict[str, Any]:
        if self.state is None:
            return {"name": self.name, "status": self.status, "error": self.problem}
        return {**self.state.to_dict(), "status": self.status}


def experiment_rows(workspace: str | Path | Workspace | None, command: str = "avml") -> list[ExperimentRow]:
    """Every experiment of the workspace, oldest first; those whose state is damaged marked ``damaged``."""
    from jupyter_avml.sweep import list_experiments

    rows = []
    for state in list_experiments(Workspace.resolve(workspace), observed=True):
        if state.status == DAMAGED:
            rows.append(ExperimentRow(state.name, DAMAGED, None, state.error or state.reason))
        else:
            rows.append(ExperimentRow(state.name, state.status, state))
    return rows


def experiment_or_run(target: str, workspace: str | Path | Workspace | None, command: str = "avml"
                      ) -> tuple[str, Any]:
    """``("experiment", ExperimentHandle)`` when ``target`` names an experiment, else ``("run", RUN_ID)`` when
    it names a run (a unique prefix of 6+ characters is enough), as ``register`` and ``resume`` take them.

    Raises
    ------
    NotFoundError
        Neither (the message says where to look).
    """
    from jupyter_avml.errors import NotFoundError
    from jupyter_avml.training.run import find_run_dir

    ws = Workspace.resolve(workspace)
    try:
        return "experiment", open_experiment(target, ws, command)
    except NotFoundError:
        pass
    try:
        return "run", find_run_dir(ws, target).name
    except NotFoundError:
        raise NotFoundError(f"{target!r} is neither an experiment nor a run of {ws.root} (see `{command} list` and "
                            f"`{command} runs list`)") from None


# -- runs ----------------------------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """A run folder as the verbs show it: ``run.json``'s fields and the derived status, or its problem."""

    run_id: str
    folder: Path
    info: dict[str, Any] = field(default_factory=dict)
    status: str = "unknown"
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.problem is not None:
            return {"run_id": self.run_id, "status": self.status, "error": self.problem}
        return {**self.info, "run_id": self.info.get("run_id", self.run_id), "status": self.status}


def damaged_run(run_dir: Path, reason: str | None, command: str = "avml") -> str:
    """The message for a run whose ``run.json`` is damaged (``reason``) or missing (``None``), in this door's
    words (the run folder's own derivation: ``runs.folder.damaged_run_message``)."""
    from jupyter_avml.runs.folder import damaged_run_message

    return damaged_run_message(run_dir, reason, command)


def read_run(run_dir: Path, command: str = "avml") -> RunRecord | None:
    """The ``RunRecord`` of a run folder; ``None`` for a folder with no ``run.json`` (not a run yet)."""
    from jupyter_avml.training.run import read_run_json, run_status

    run_dir = Path(run_dir)
    path = run_dir / "run.json"
    try:
        info = read_run_json(run_dir)
    except DamagedRunError as exc:
        return RunRecord(run_dir.name, run_dir, status=DAMAGED, problem=damaged_run(run_dir, exc.reason, command))
    except AvmlError as exc:
        return RunRecord(run_dir.name, run_dir, status=DAMAGED, problem=str(exc))
    except _DAMAGE as exc:
        return RunRecord(run_dir.name, run_dir, status=DAMAGED, problem=damaged_run(run_dir, damage_reason(exc),
                                                                                     command))
    if not info:
        if not path.exists():
            return None
        # read_run_json reads a damaged file as {}: find out why, for the message.
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            reason = "empty record" if isinstance(data, dict) else f"a JSON {type(data).__name__}, not a record"
        except _DAMAGE as exc:
            reason = damage_reason(exc)
        return RunRecord(run_dir.name, run_dir, status=DAMAGED, problem=damaged_run(run_dir, reason, command))
    if not isinstance(info, dict):
        return RunRecord(run_dir.name, run_dir, status=DAMAGED,
                         problem=damaged_run(run_dir, f"a JSON {type(info).__name__}, not a record", command))
    try:
        status = run_status(info)
    except _DAMAGE as exc:  # a record whose fields have the wrong types (e.g. a pid that is not a number)
        return RunRecord(run_dir.name, run_dir, status=DAMAGED, problem=damaged_run(run_dir, damage_reason(exc),
                                                                                     command))
    return RunRecord(run_dir.name, run_dir, info, status)


def run_records(workspace: str | Path | Workspace | None, command: str = "avml") -> list[RunRecord]:
    """Every run of the workspace, newest first; damaged ones included, marked ``damaged``."""
    ws = Workspace.resolve(workspace)
    records = []
    if ws.runs_dir.is_dir():
        for run_dir in ws.runs_dir.iterdir():
            if run_dir.is_dir():
                record = read_run(run_dir, command)
                if record is not None:
                    records.append(record)

    def created(record: RunRecord) -> float:
        value = record.info.get("created")
        return float(value) if isinstance(value, (int, float)) else 0.0

    return sorted(records, key=created, reverse=True)


def open_run(workspace: str | Path | Workspace | None, run_id: str, command: str = "avml") -> RunRecord:
    """The ``RunRecord`` of ``run_id`` (a unique prefix of 6+ characters is enough).

    Raises
    ------
    NotFoundError
        No such run.
    AvmlError
        Its ``run.json`` is damaged or missing.
    """
    from jupyter_avml.training.run import find_run_dir

    run_dir = find_run_dir(Workspace.resolve(workspace), run_id)
    record = read_run(run_dir, command)
    if record is None:
        raise AvmlError(damaged_run(run_dir, None, command))
    if record.problem is not None:
        raise AvmlError(record.problem)
    return record
