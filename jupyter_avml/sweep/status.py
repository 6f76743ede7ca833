"""What readers show about an experiment when its driver is gone or its state is damaged: derived here, once.

The driver writes ``state.json``; when it dies (SIGKILL, a reboot) the file keeps saying ``running``. Every
reader (``ExperimentHandle``, ``avml status``, ``%avml list``, the dashboard) asks this module instead of
trusting the file alone:

* ``driver_alive(folder)``: the driver's lock is held, or the process recorded in ``driver.json`` (or the one
  a launcher just started, ``launch.json``) still runs (same pid and creation time);
* ``observe(state, alive=..., last_seen=...)``: the state as it should be shown. A state that is not final
  while no driver runs it becomes ``interrupted``, with ``reason`` saying how to resume it; its running
  children become ``interrupted`` too; ``ended`` is set to the driver's last sign of life
  (``ExperimentFolder.last_seen``), so every clock computed as ``(ended or now) - started`` stops there;
* ``resume_hint(name)``: how to resume (``avml resume NAME``, ``attach(NAME).resume()``);
* ``damaged_state_advice`` / ``damaged_placeholder``: what can still be done with an experiment whose
  ``state.json`` cannot be read, and the entry that lists it as ``damaged``.
"""

from __future__ import annotations

import copy
import socket
import time

from jupyter_avml.liveness import process_alive
from jupyter_avml.sweep.folder import ExperimentFolder
from jupyter_avml.sweep.state import DAMAGED, INTERRUPTED, ExperimentState

__all__ = ["driver_alive", "observe", "observe_folder", "resume_hint", "damaged_state_advice",
           "damaged_state_message", "damaged_placeholder"]


def driver_alive(folder: ExperimentFolder) -> bool:
    """Whether a driver runs this experiment (see the module docstring).

    On another host only the lock can tell (and a lock on a network file system may not): a driver recorded
    on another host counts as alive while the state is not final.
    """
    if folder.driver_lock_held():
        return True
    for record in (folder.read_driver_record(), folder.read_launch_record()):
        if not record or record.get("ended") or not record.get("pid"):
            continue
        if record.get("host") and record["host"] != socket.gethostname():
            try:
                state = folder.read_state()
            except Exception:  # noqa: BLE001 - a damaged state says nothing about the driver
                state = None
            if state is not None and not state.finished:
                return True
            continue
        if process_alive(record):
            return True
    return False


def resume_hint(name: str, command: str = "avml") -> str:
    """How to resume experiment ``name``, for messages; ``command`` is the door (``avml`` or ``%avml``)."""
    return f"resume it with `{command} resume {name}` (in Python: attach({name!r}).resume())"


def observe(state: ExperimentState, *, alive: bool, last_seen: float | None = None) -> ExperimentState:
    """The state as readers should show it (a copy when it differs from ``state``).

    ``alive`` is ``driver_alive``'s answer; ``last_seen`` the driver's last sign of life (default: now).
    """
    if state.finished or alive:
        return state
    view = copy.deepcopy(state)
    frozen = last_seen if last_seen is not None else time.time()
    view.status = INTERRUPTED
    view.reason = f"the driver of experiment {state.name!r} is not running; {resume_hint(state.name)}"
    if view.started is not None:
        view.ended = max(frozen, view.started)
    for child in view.children:
        if child.status == "running":
            child.status = INTERRUPTED
            child.reason = "interrupted with its experiment: it runs again (from its last checkpoint) on resume"
            if child.started is not None:
                child.ended = max(frozen, child.started)
    return view


def observe_folder(folder: ExperimentFolder, state: ExperimentState | None = None) -> ExperimentState | None:
    """``observe`` of the folder's state (read here unless given); None when there is no state.

    Raises ``DamagedStateError`` when ``state.json`` cannot be read.
    """
    state = folder.read_state() if state is None else state
    if state is None or state.finished:
        return state
    if driver_alive(folder):
        return state
    # The driver may have finished between the two reads: read again before calling it interrupted.
    state = folder.read_state() or state
    return observe(state, alive=False, last_seen=folder.last_seen())


def damaged_state_advice(folder: ExperimentFolder, command: str = "avml") -> str:
    """What can still be done with an experiment whose ``state.json`` is damaged (``command``: the door, ``avml``
    or ``%avml``)."""
    name = folder.name
    if driver_alive(folder):
        return (f"its driver is running and rewrites the file at its next change: try again in a moment, or "
                f"stop it (`{command} stop {name}`)")
    runs = folder.path.parent.parent / "runs"
    text = (f"experiment {name!r} cannot be shown, stopped or resumed. Its children's runs are still in {runs} "
            f"(`{command} runs list`; register one with `{command} register RUN_ID MODEL_NAME`)")
    if folder.config_file.is_file():
        text += (f"; to run it again, submit its configuration under a new name: "
                 f"`{command} sweep {folder.config_file} --name NEW_NAME`")
    return text


def damaged_state_message(folder: ExperimentFolder, what: str, command: str = "avml") -> str:
    """The whole message of ``DamagedStateError``: ``what`` is wrong with ``state.json``, and the advice."""
    return f"{what}: {damaged_state_advice(folder, command)}"


def damaged_placeholder(folder: ExperimentFolder, error: Exception) -> ExperimentState:
    """The entry that lists an experiment with a damaged state: status ``damaged``, ``error`` saying why."""
    created = None
    for path in (folder.config_file, folder.state_file, folder.path):
        try:
            created = path.stat().st_mtime
            break
        except OSError:
            continue
    return ExperimentState(name=folder.name, task="", primary_metric="", status=DAMAGED, created=created or 0.0,
                           error=str(error))
