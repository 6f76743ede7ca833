"""``ProcessExecutor``: children run in local worker processes (``worker.py``), one per slot at a time.

* Warm spares: a slot's next worker is started in advance (``prepare``), so that when the slot frees up the
  next child starts in a process that has already imported torch and opened the tracking store. A slot's
  next spare starts once its current child has started its run, so that the spare's imports do not slow
  down the start of the child it would replace.
* A worker is started with ``subprocess.Popen`` (fork + exec of a fresh interpreter, never a bare fork) with
  its slot's environment, gets its assignment as one JSON line on stdin, and later ``{"cmd": "stop"}``
  lines. It dies with the driver (``liveness.die_with_parent``).
* Following a child, wording its end and passing a stop to its run: ``following.FollowingExecutor`` (the same
  for Ray's tasks); a stop also reaches the worker as a line on its stdin.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_avml.sweep.executor import Assignment, ChildExited, Report, describe_exit
from jupyter_avml.sweep.folder import ExperimentFolder, tail_lines
from jupyter_avml.sweep.following import FollowedChild, FollowingExecutor
from jupyter_avml.sweep.slots import Slot

log = logging.getLogger("jupyter_avml.sweep.processes")

__all__ = ["ProcessExecutor", "WORKER_MODULE"]

WORKER_MODULE = "jupyter_avml.sweep.worker"


@dataclass(kw_only=True)
class _Child(FollowedChild):
    """A child handed to a worker process."""

    process: subprocess.Popen
    worker_log: Path                     # the worker's own log (its output before it had the child)


class ProcessExecutor(FollowingExecutor):
    """Worker processes on ``slots`` (the first ``concurrency`` of them are used).

    Parameters
    ----------
    folder:
        The experiment's folder (child info and logs, worker logs).
    workspace:
        The ``Workspace`` (runs' folders).
    slots, concurrency:
        The slots (``slots.plan_slots``) and how many are used at once.
    tracking_uri:
        Passed to workers (``--tracking-uri``) when set.
    worker_command:
        The command that starts a worker, before its arguments (default: this Python, ``-m
        jupyter_avml.sweep.worker``); tests give a light stand-in.
    """

    def __init__(self, folder: ExperimentFolder, workspace, slots: list[Slot], concurrency: int, *,
                 tracking_uri: str | None = None, worker_command: list[str] | None = None):
        self.folder, self.workspace = folder, workspace
        self.slots = list(slots)[:max(1, concurrency)]
        self.tracking_uri = tracking_uri
        self.worker_command = list(worker_command or [sys.executable, "-m", WORKER_MODULE])
        self.active: dict[int, _Child] = {}
        self.finishing: list[_Child] = []
        self.spares: dict[int, tuple[subprocess.Popen, Path]] = {}
        self.serial = 0

    # -- workers ----------------------------------------------------------------------------------------
    def _spawn(self, slot: Slot) -> tuple[subprocess.Popen, Path]:
        self.serial += 1
        path = self.folder.worker_log(self.serial)
        path.parent.mkdir(parents=True, exist_ok=True)
        command = [*self.worker_command, "--parent", str(os.getpid()), "--workspace", str(self.workspace.root),
                   "--serial", str(self.serial)]
        if self.tracking_uri:
            command += ["--tracking-uri", str(self.tracking_uri)]
        env = {**os.environ, **slot.env(), "PYTHONUNBUFFERED": "1"}
        with open(path, "ab") as out:
            # Popen = fork + exec of a new interpreter: nothing of the driver's state is inherited.
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                       env=env, close_fds=True)
        return process, path

    def start_spare(self, slot: Slot) -> None:
        spare = self.spares.get(slot.index)
        if spare is None or spare[0].poll() is not None:
            self.spares[slot.index] = self._spawn(slot)

    def prepare(self, remaining: int) -> None:
        """Start a spare for each slot in use that lacks one, while ``remaining`` children are left to hand
        out; a busy slot gets its spare once its child has started its run. Nothing left: spares retire."""
        if remaining <= 0:
            if self.spares:
                self.retire_spares()
            return
        live = sum(1 for process, _ in self.spares.values() if process.poll() is None)
        busy = {c.slot.index: c for c in self.active.values()}
        for slot in self.slots:
            if live >= remaining:
                return
            spare = self.spares.get(slot.index)
            if spare is not None and spare[0].poll() is None:
                continue
            child = busy.get(slot.index)
            if child is not None and not child.reported:
                continue
            self.start_spare(slot)
            live += 1

    @staticmethod
    def _send(process: subprocess.Popen, message: dict[str, Any]) -> bool:
        try:
            process.stdin.write((json.dumps(message, default=str) + "\n").encode("utf-8"))
            process.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    @staticmethod
    def _close_stdin(process: subprocess.Popen) -> None:
        try:
            process.stdin.close()
        except OSError:
            pass

    # -- the interface ----------------------------------------------------------------------------------
    def free_slots(self) -> list[Slot]:
        busy = {c.slot.index for c in self.active.values()}
        return [slot for slot in self.slots if slot.index not in busy]

    def submit(self, assignment: Assignment, slot: Slot) -> None:
        self.folder.clear_child_info(assignment.child)  # a stale one from an earlier session
        spare = self.spares.pop(slot.index, None)
        if spare is None or spare[0].poll() is not None:
            if spare is not None:
                log.warning("the spare worker of slot %d had exited (%s)", slot.index,
                            describe_exit(spare[0].returncode))
            spare = self._spawn(slot)
        process, worker_log = spare
        child = _Child(assignment=assignment, slot=slot, process=process, worker_log=worker_log,
                       run_id=assignment.resume_run_id)
        self.active[assignment.child] = child
        if not self._send(process, assignment.for_slot(slot)):
            log.warning("child %d: its worker is gone before the assignment", assignment.child)
        log.info("child %d -> slot %d (worker %d)%s", assignment.child, slot.index, process.pid,
                 f" resuming run {assignment.resume_run_id}" if assignment.resume_run_id else "")

    def poll(self) -> list[Report]:
        reports: list[Report] = []
        for child_id, child in list(self.active.items()):
            self._follow(child, reports)
            code = child.process.poll()
            if code is None:
                continue
            self._follow(child, reports)  # what it wrote before it exited
            del self.active[child_id]
            self._close_stdin(child.process)
            if child.run_ended:  # its run ended and then its process, within one poll: as if released
                self._log_late_exit(child, code)
                continue
            what = describe_exit(code)
            reports.append(ChildExited(child_id, code, what,
                                       self._end_error(child, what, fallback_log=child.worker_log)))
        for child in list(self.finishing):
            code = child.process.poll()
            if code is not None:
                self.finishing.remove(child)
                self._close_stdin(child.process)
                self._log_late_exit(child, code)
        return reports

    def _log_late_exit(self, child: _Child, code: int) -> None:
        """A process that fails after its run ended loses nothing, but is worth a line in the log."""
        if code != 0:
            log.warning("child %d: %s after its run ended (%s)", child.assignment.child, describe_exit(code),
                        tail_lines(self.folder.child_log(child.assignment.child), 3))

    def _order_stop(self, child: _Child, status: str, reason: str) -> None:
        # The run id may not be known yet: the worker also hears it on stdin.
        self._send(child.process, {"cmd": "stop", "status": status, "reason": reason})

    def kill(self, child: int) -> None:
        running = self.active.get(child)
        if running is not None and running.process.poll() is None:
            running.process.kill()

    def release(self, child: int) -> None:
        running = self.active.pop(child, None)
        if running is not None:
            self.finishing.append(running)

    def retire_spares(self) -> None:
        """Idle spares exit when their stdin closes (or at SIGTERM)."""
        for process, _ in self.spares.values():
            self._close_stdin(process)
            if process.poll() is None:
                process.terminate()
        for process, _ in self.spares.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.spares.clear()

    def close(self, grace: float) -> None:
        import time

        self.retire_spares()
        deadline = time.monotonic() + grace
        while self.finishing and time.monotonic() < deadline:
            self.poll()
            time.sleep(0.1)
        for child in self.finishing:
            log.warning("child %d: its worker is still uploading after %.0f s; leaving it", child.assignment.child,
                        grace)

    def abort(self) -> None:
        for child in [*self.active.values(), *self.finishing]:
            if child.process.poll() is None:
                child.process.kill()
        for process, _ in self.spares.values():
            if process.poll() is None:
                process.kill()

    def live_run_ids(self) -> set[str]:
        return {c.run_id for c in [*self.active.values(), *self.finishing] if c.run_id}
