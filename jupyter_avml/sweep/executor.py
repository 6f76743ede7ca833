"""Where children run: the executor interface between the driver and whatever runs a child's training.

The driver hands a child (an ``Assignment``) to a free slot with ``submit``; from then on it learns what
happens only from ``poll()``'s reports: the child's run id (``RunAssigned``), the run's events in order
(``ChildEvents``: the training engine's ``RunStarted``, ``EpochMetrics``, ``RunFinished``...), and the end
of the process that ran it (``ChildExited``, with why when it ended without the run's last event). It can
ask a child to stop cleanly (``request_stop``: the run ends after its current batch, keeping its best
model), kill it (``kill``), give its slot to the next child once the run reported its end (``release``)
and shut everything down (``close``).

``processes.ProcessExecutor`` runs each child in a local worker process, one slot per GPU or a share of the
CPU cores (``slots.py``), with a warm spare per slot. ``ray_executor.RayExecutor`` (``executor: ray``) runs
each child as a Ray task placed by Ray's scheduler; ``kill`` is ``ray.cancel(force=True)``. Both follow a
child's run the same way (``following.FollowingExecutor``: ``children/<id>.json``, then the run's
``events.jsonl`` on the shared workspace) and differ in how a stop reaches it: a line on the worker's stdin, a
stop order the Ray task watches. The driver and the scheduler are the same for both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from jupyter_avml.sweep.slots import Slot

__all__ = ["Assignment", "RunAssigned", "ChildEvents", "ChildExited", "Report", "Executor", "describe_exit"]


@dataclass
class Assignment:
    """What a worker needs to train one child (sent as one JSON object).

    ``config`` holds the child's run settings (``AutoMLImageConfig`` user values) for a new run; with
    ``resume_run_id`` the worker continues that run from its last checkpoint instead.
    """

    child: int
    experiment: str
    workspace: str
    folder: str
    run_name: str
    parent_run_id: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    resume_run_id: str | None = None
    config: dict[str, Any] | None = None

    def for_slot(self, slot: Slot) -> dict[str, Any]:
        """The message for a worker of ``slot``: the assignment with the slot's threads and device."""
        message = {**self.__dict__, "slot": slot.index, "threads": slot.threads}
        if self.config is not None:
            message["config"] = slot.child_values(self.config)
        return message


@dataclass
class RunAssigned:
    """The child's run exists: its id (also the run folder's name)."""

    child: int
    run_id: str


@dataclass
class ChildEvents:
    """Events the child's run wrote since the last report, in order (``runs.events``)."""

    child: int
    events: list


@dataclass
class ChildExited:
    """The process (or task) that ran the child ended.

    ``what`` says how (``worker exited with code 1``, ``worker killed by signal 9 (SIGKILL)``); ``error`` is
    what the driver records when the run did not report its end: the worker's own error (a failure before
    any run existed), ``what``, and the end of its log.
    """

    child: int
    returncode: int
    what: str
    error: str


Report = RunAssigned | ChildEvents | ChildExited


class Executor(ABC):
    """Runs children on slots (see the module docstring). ``slots`` are the places a child can run."""

    slots: list[Slot]

    @abstractmethod
    def free_slots(self) -> list[Slot]:
        """Slots with no child (a released child's process may still be finishing there)."""

    @abstractmethod
    def submit(self, assignment: Assignment, slot: Slot) -> None:
        """Start ``assignment`` on ``slot`` (which ``free_slots`` listed)."""

    @abstractmethod
    def poll(self) -> list[Report]:
        """What happened since the last call: per child, ``RunAssigned`` then ``ChildEvents`` in order; a
        ``ChildExited`` comes after the last events of that child."""

    @abstractmethod
    def request_stop(self, child: int, status: str, reason: str) -> None:
        """Ask a child to stop after its current batch and end its run as ``status`` with ``reason``."""

    @abstractmethod
    def kill(self, child: int) -> None:
        """End a child's process now (its run is then ended by the driver)."""

    @abstractmethod
    def release(self, child: int) -> None:
        """The child's run reported its end: free its slot (its process may still be uploading)."""

    def prepare(self, remaining: int) -> None:  # noqa: B027 - optional: an executor without warm-up needs nothing
        """Get ready for ``remaining`` more children (a process executor starts warm spares). Optional."""

    @abstractmethod
    def close(self, grace: float) -> None:
        """Stop idle workers; wait up to ``grace`` seconds for released children's processes to finish."""

    @abstractmethod
    def abort(self) -> None:
        """Kill everything now (the driver itself is failing)."""

    @abstractmethod
    def live_run_ids(self) -> set[str]:
        """Run ids of children whose processes still run (their MLflow runs are not orphans)."""


def describe_exit(code: int) -> str:
    """``worker exited with code N`` or ``worker killed by signal N (NAME)``."""
    import signal

    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"worker killed by signal {-code} ({name})"
    return f"worker exited with code {code}"
