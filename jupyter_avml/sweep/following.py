"""What every executor does for a child once it is handed out, wherever it runs: follow its run, word its end, stop it.

* Following: the child's run id from ``children/<id>.json`` (``ExperimentFolder.read_child_info``), then its
  events by tailing ``runs/<run_id>/events.jsonl`` from the byte offset reached (a line a killed process left
  half-written is skipped and logged). Local workers and Ray tasks write both files the same way, into the
  workspace the driver reads.
* Stopping: the executor's own way to reach the child (a line on the worker's stdin, a stop order file the Ray
  task watches), and the run's STOP file as soon as the run id is known, so that a stop asked before the run
  existed still reaches it.
* The error of a child that ended without its run's last event: its own error, how its process or task ended,
  and the end of its log, in one wording for every executor.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path

from jupyter_avml.runs.events import RunFinished, read_events
from jupyter_avml.sweep.executor import Assignment, ChildEvents, Executor, Report, RunAssigned
from jupyter_avml.sweep.folder import ExperimentFolder, tail_lines
from jupyter_avml.sweep.slots import Slot

log = logging.getLogger("jupyter_avml.sweep.executor")


@dataclass
class FollowedChild:
    """A child handed out, as the executor follows it (executors add how they reach it)."""

    assignment: Assignment
    slot: Slot
    run_id: str | None = None
    offset: int = 0                      # bytes of the run's events.jsonl already read
    reported: bool = False               # children/<id>.json exists: the child has started
    stop: tuple[str, str] | None = None  # (status, reason) asked
    run_ended: bool = False              # its run's last event (RunFinished) was read


class FollowingExecutor(Executor):
    """An executor whose children report through the experiment folder and the workspace (see the module
    docstring). Subclasses set ``folder``, ``workspace`` and ``active`` and say how a stop reaches a child."""

    folder: ExperimentFolder
    active: dict[int, FollowedChild]

    @abstractmethod
    def _order_stop(self, child: FollowedChild, status: str, reason: str) -> None:
        """Tell the running child (before its run id may be known) to stop as ``status`` with ``reason``."""

    def request_stop(self, child: int, status: str, reason: str) -> None:
        running = self.active.get(child)
        if running is None or running.stop is not None:
            return
        running.stop = (status, reason)
        self._order_stop(running, status, reason)
        if running.run_id:
            self._stop_run(running)

    def _stop_run(self, child: FollowedChild) -> None:
        from jupyter_avml.runs.events import request_stop

        status, reason = child.stop
        request_stop(self.workspace.run_dir(child.run_id), reason, status=status)

    def _follow(self, child: FollowedChild, reports: list[Report]) -> None:
        """Append what ``child`` reported since the last call: its run id once, then its new events."""
        child_id = child.assignment.child
        if not child.reported:
            info = self.folder.read_child_info(child_id)
            child.reported = bool(info)
            run_id = info.get("run_id")
            if run_id:
                child.run_id = run_id
                reports.append(RunAssigned(child_id, run_id))
                if child.stop is not None:
                    self._stop_run(child)
        if child.run_id:
            path = self.workspace.run_dir(child.run_id) / "events.jsonl"

            def skip(line: bytes, exc: Exception) -> None:
                log.warning("child %d: skipping an unreadable line of %s (%s)", child_id, path, exc)

            events, child.offset = read_events(path, child.offset, on_bad_line=skip)
            if events:
                reports.append(ChildEvents(child_id, events))
                child.run_ended = child.run_ended or any(isinstance(e, RunFinished) for e in events)

    def _end_error(self, child: FollowedChild, what: str, own_error: str | None = None,
                    fallback_log: Path | None = None) -> str:
        """The error of a child that ended without its run's last event: ``own_error`` (or the one the child
        recorded in its info file), ``what`` ended it, and the end of the child's log (``fallback_log`` when the
        child died before it had one)."""
        own = own_error or self.folder.read_child_info(child.assignment.child).get("error")
        error = f"{own} ({what})" if own else what
        log_path = Path(self.folder.child_log(child.assignment.child))
        if not log_path.is_file() and fallback_log is not None:
            log_path = fallback_log
        tail = tail_lines(log_path) if log_path.is_file() else ""
        if tail:
            error += f"; last lines of {log_path}:\n{tail}"
        return error
