"""The scheduler of a sweep: which child runs next, what its results mean, when the experiment ends.

Pure bookkeeping over the ``ExperimentState`` (no process, no file, no MLflow): the driver feeds it what
happened (a child dispatched, a run id, an epoch's metrics, a run's end, a worker lost, a stop request) and
carries out what it decides (stop this child, kill that worker). Time comes from ``clock`` (``time.time``
unless a test gives a fake one), so deadlines and stop grace periods are testable without waiting.

* the queue: children to run again first (``resume``), then new ones proposed by the sampler from the
  recorded children (``TrialRecord`` per child: the state is the sampler's only memory); a configuration
  that ``AutoMLImageConfig`` refuses becomes an ``invalid`` child and the next one is proposed;
* results: ``on_epoch`` records every metric of the epoch as ``(step, metric, value)`` and, on an evaluated
  epoch (the child's k-th evaluation), asks the early termination policy at step k; ``on_finished`` and
  ``on_lost`` close the child; the best child is kept up to date;
* the end: ``end_all`` (the user's ``STOP``, a signal) and the deadline (the budget left to this session)
  stop the running children cleanly and close the queued ones; ``check_trial_timeouts`` stops one child
  that has run ``trial_timeout_minutes``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyter_avml.sweep.state import ChildState, ExperimentState

log = logging.getLogger("jupyter_avml.sweep.scheduler")

__all__ = ["Scheduler", "StopRequest", "trial_record"]

RUN_END_STATUSES = ("completed", "early_terminated", "stopped", "failed")


@dataclass
class StopRequest:
    """A stop the scheduler asked for: the status and reason the child should end with, and when."""

    status: str
    reason: str
    time: float
    killed: bool = False  # its worker did not stop within the grace period and was killed


def trial_record(child: ChildState):
    """What the sampler learns from a recorded child (``sampling.TrialRecord``).

    Completed children count with their best value; children stopped early (by the policy, the user or the
    deadline) as pruned with their evaluations; failed and invalid ones as failed; the others as running.
    """
    from jupyter_avml.sweep.sampling import RUNNING, TrialRecord

    evaluations = tuple((int(epoch), float(value)) for epoch, value in child.metric_history
                        if value is not None and math.isfinite(float(value)))
    if child.status == "completed" and child.best_value is not None:
        state, value = "complete", float(child.best_value)
    elif child.status in ("early_terminated", "stopped"):
        state, value = "pruned", (evaluations[-1][1] if evaluations else None)
    elif child.status in ("failed", "invalid", "completed"):
        state, value = "failed", None
    else:
        state, value = RUNNING, None
    return TrialRecord(number=child.id, params=dict(child.params), state=state, value=value,
                       subspace=child.subspace, intermediate=evaluations if state == "pruned" else ())


class Scheduler:
    """Decisions of one driver session over ``state`` (see the module docstring).

    Parameters
    ----------
    spec:
        The ``ExperimentConfig`` (iterations, budget, policy, and ``child_config`` to validate a child).
    state:
        The experiment's state, updated in place; ``dirty`` tells when it changed since ``saved()``.
    sampler:
        A ``sampling.Sampler``; asked ``propose(next id, records of the children)``.
    previous_seconds:
        Budget used by earlier sessions of this experiment: the deadline is what is left of the budget.
    clock:
        Seconds since the epoch (``time.time``).
    """

    def __init__(self, spec, state: ExperimentState, sampler, *, previous_seconds: float = 0.0,
                 clock: Callable[[], float] = time.time):
        self.spec, self.state, self.sampler, self.clock = spec, state, sampler, clock
        self.started = clock()
        self.deadline = self.started + max(0.0, float(spec.budget_seconds) - float(previous_seconds))
        self.pending: list[int] = []          # child ids queued to run (again), in order
        self.running: set[int] = set()        # child ids handed to a worker whose run has not ended
        self.stops: dict[int, StopRequest] = {}
        self.exhausted = False                # the sampler has nothing more to propose
        self.ending: tuple[str, str] | None = None   # (experiment status, reason) once it is ending
        self.dirty = False

    # -- the start --------------------------------------------------------------------------------------
    def begin(self, *, resume: bool, concurrency: int) -> None:
        """Mark the experiment running; with ``resume``, queue its unfinished children to run again.

        Raises ``RuntimeError`` when the experiment already has children and ``resume`` is not set.
        """
        state, spec = self.state, self.spec
        if state.children and not resume:
            raise RuntimeError(f"experiment {state.name} already has children; resume it instead")
        state.task, state.primary_metric = spec.task, spec.primary_metric
        state.sampling, state.iterations = spec.sampling, spec.iterations
        state.early_termination_policy = spec.policy_config
        state.budget_seconds = spec.budget_seconds
        state.max_concurrent_iterations = concurrency
        state.status, state.reason, state.error, state.ended = "running", None, None, None
        state.started = state.started or self.started
        for child in sorted(state.children, key=lambda c: c.id):
            if not child.finished:
                # It runs again first, with its parameters (and from its run's last checkpoint when it has one).
                child.status, child.started, child.ended = "queued", None, None
                self.pending.append(child.id)
        self.dirty = True
        if resume:
            log.info("resuming: %d finished children kept, %d to run again",
                     len(state.children) - len(self.pending), len(self.pending))

    def unfinished(self) -> int:
        """Children that will still run: queued ones plus those the sampler may still propose."""
        return len(self.pending) + max(0, self.spec.iterations - len(self.state.children))

    # -- the queue --------------------------------------------------------------------------------------
    def more_to_launch(self) -> bool:
        if self.ending is not None:
            return False
        if self.pending:
            return True
        return not self.exhausted and len(self.state.children) < self.spec.iterations

    def remaining(self) -> int:
        """Children still to hand out (an estimate for grid sampling, which may run out early)."""
        if self.ending is not None:
            return 0
        left = len(self.pending)
        if not self.exhausted:
            left += max(0, self.spec.iterations - len(self.state.children))
        return left

    def next_child(self) -> ChildState | None:
        """The next child to hand to a worker (queued ones first, then a new proposal), or None.

        Refused configurations are closed as ``invalid`` on the way (they count as iterations).
        """
        while self.more_to_launch():
            if self.pending:
                child = self.state.child(self.pending.pop(0))
                if child.run_id or self._validate(child):
                    return child
                continue
            child = self._propose()
            if child is None:
                return None
            if self._validate(child):
                return child
        return None

    def _propose(self) -> ChildState | None:
        number = max((c.id for c in self.state.children), default=-1) + 1
        trial = self.sampler.propose(number, [trial_record(c) for c in self.state.children])
        if trial is None:
            self.exhausted = True
            return None
        child = ChildState(id=number, params=dict(trial.params), subspace=trial.subspace, why=trial.why)
        self.state.children.append(child)
        self.dirty = True
        return child

    def _validate(self, child: ChildState) -> bool:
        """Validate the child's configuration; a refused one is closed as ``invalid`` (returns False)."""
        from jupyter_avml.errors import ConfigError

        try:
            config = self.spec.child_config(child.params)
        except ConfigError as exc:
            log.info("child %d: invalid configuration %s: %s", child.id, child.params, exc)
            child.model_name = str(child.params.get("model_name", self.spec.fixed.get("model_name", "")))
            self.close_child(child, "invalid", error=str(exc))
            return False
        child.model_name = config.model_name
        child.number_of_epochs = config.number_of_epochs
        return True

    def child_values(self, child: ChildState) -> dict[str, Any]:
        """The run settings of a child (the fixed ones with its parameters on top), as the user gave them."""
        return self.spec.child_config(child.params).user_values()

    def dispatched(self, child: ChildState, *, resume_run: str | None) -> None:
        """The child was handed to a worker (to continue ``resume_run`` when given, else a new run)."""
        child.status, child.started, child.ended = "running", self.clock(), None
        child.reason = child.error = None
        if not resume_run:
            child.run_id, child.epoch, child.metric_history, child.intermediate_values = None, 0, [], []
            child.best_value = child.best_epoch = child.model_path = None
        self.running.add(child.id)
        self.dirty = True

    # -- what runs report -------------------------------------------------------------------------------
    def on_run_id(self, child_id: int, run_id: str) -> None:
        child = self.state.child(child_id)
        if child.run_id != run_id:
            child.run_id = run_id
            self.dirty = True

    def on_run_started(self, child_id: int, model_name: str, number_of_epochs: int) -> None:
        child = self.state.child(child_id)
        child.model_name = model_name or child.model_name
        child.number_of_epochs = number_of_epochs or child.number_of_epochs
        self.dirty = True

    def on_epoch(self, child_id: int, epoch: int, metrics: dict[str, float], primary_value: float | None,
                 train_loss: float | None = None) -> StopRequest | None:
        """An epoch ended: record its metrics; returns a stop the early termination policy asks for, if any."""
        from jupyter_avml.sweep.policies import Decision

        child = self.state.child(child_id)
        child.epoch = max(child.epoch, int(epoch))
        self.dirty = True
        if any(int(step) == int(epoch) for step, _, _ in child.intermediate_values):
            return None  # a resumed run reports its last epochs again
        values = dict(metrics or {})
        if train_loss is not None and math.isfinite(train_loss):
            values.setdefault("train_loss", float(train_loss))
        child.intermediate_values.extend([int(epoch), str(name), float(value)] for name, value in values.items()
                                         if isinstance(value, (int, float)) and not isinstance(value, bool))
        if primary_value is None or any(int(e) == int(epoch) for e, _ in child.metric_history):
            return None
        value = float(primary_value)
        child.metric_history.append([int(epoch), value])
        if child.best_value is None or value > child.best_value:
            child.best_value, child.best_epoch = value, int(epoch)
        self.update_best()
        if not self.spec.has_policy or child.id in self.stops or child.finished:
            return None
        step = len(child.metric_history)
        decision, reason = self.spec.policy.decide(str(child.id), step, self.histories(), maximize=True,
                                                   metric=self.state.primary_metric)
        if decision is Decision.STOP:
            return self.request_stop(child.id, "early_terminated", reason)
        return None

    def histories(self) -> dict[str, Any]:
        """The policies' view: each started child's primary values by evaluation (1, 2, ...), oldest first."""
        from jupyter_avml.sweep.policies import TrialHistory

        started = sorted((c for c in self.state.children if c.started is not None and c.metric_history),
                         key=lambda c: (c.started, c.id))
        return {str(c.id): TrialHistory(str(c.id), {k + 1: v for k, (_, v) in enumerate(c.metric_history)},
                                        finished=c.status == "completed")
                for c in started}

    def on_finished(self, child_id: int, status: str, *, best_value: float | None = None,
                    best_epoch: int | None = None, model_path: str | None = None, reason: str | None = None,
                    error: str | None = None, ended: float | None = None) -> None:
        """The run reported its end (``RunFinished``)."""
        child = self.state.child(child_id)
        status = status if status in RUN_END_STATUSES else "failed"
        if best_value is not None:
            child.best_value, child.best_epoch = float(best_value), best_epoch
        child.model_path = model_path
        self.close_child(child, status, reason=reason, error=error, ended=ended)
        log.info("child %d %s%s", child.id, status, f" ({reason or error})" if (reason or error) else "")

    def on_lost(self, child_id: int, what: str, error: str | None = None) -> ChildState:
        """The worker exited without the run's end (``what``: the signal or exit code; ``error``: the whole
        story, with the end of its log). A worker killed after its stop grace period ends its child as asked."""
        child = self.state.child(child_id)
        stop = self.stops.get(child_id)
        if stop is not None and stop.killed:
            self.close_child(child, stop.status, reason=f"{stop.reason} ({what} after the stop grace period)")
        else:
            self.close_child(child, "failed", error=error or what)
            log.warning("child %d failed: %s", child.id, what)
        return child

    # -- stopping ---------------------------------------------------------------------------------------
    def request_stop(self, child_id: int, status: str, reason: str) -> StopRequest | None:
        """Stop one child: a queued one is closed now (returns None); a running one gets a ``StopRequest``
        for the driver to send (None when one was already sent)."""
        if child_id in self.pending:
            self.pending.remove(child_id)
            self.close_child(self.state.child(child_id), "stopped", reason=reason)
            return None
        if child_id not in self.running or child_id in self.stops:
            return None
        request = self.stops[child_id] = StopRequest(status, reason, self.clock())
        log.info("child %d: asking it to stop (%s: %s)", child_id, status, reason)
        return request

    def end_all(self, status: str, reason: str, child_reason: str | None = None) -> dict[int, StopRequest]:
        """End the experiment as ``status``: every running child is asked to stop, queued ones are closed.

        Returns the new stop requests by child id. Only the first call counts.
        """
        if self.ending is not None:
            return {}
        log.info("ending the experiment: %s (%s)", status, reason)
        self.ending = (status, reason)
        requests = {}
        for child_id in sorted(self.running):
            request = self.request_stop(child_id, "stopped", child_reason or reason)
            if request is not None:
                requests[child_id] = request
        for child_id in list(self.pending):
            self.request_stop(child_id, "stopped", child_reason or reason)
        return requests

    def check_deadline(self) -> dict[int, StopRequest]:
        """At the deadline: end the experiment as ``timed_out`` (running children stop cleanly)."""
        if self.ending is not None or self.clock() < self.deadline:
            return {}
        budget = self.spec.budget_seconds
        return self.end_all("timed_out", f"experiment timeout (budget {budget:g} s)", child_reason="experiment timeout")

    def check_trial_timeouts(self) -> dict[int, StopRequest]:
        """Running children that have trained ``trial_timeout_minutes`` are asked to stop (status ``stopped``,
        their best model kept). A child run again by a resumed driver gets the whole limit again."""
        limit = getattr(self.spec, "trial_timeout_seconds", None)
        if not limit or self.ending is not None:
            return {}
        now, requests = self.clock(), {}
        for child_id in sorted(self.running - set(self.stops)):
            started = self.state.child(child_id).started
            if started is not None and now - started >= limit:
                request = self.request_stop(child_id, "stopped", f"trial timeout ({limit / 60:g} min)")
                if request is not None:
                    requests[child_id] = request
        return requests

    def overdue_stops(self, grace: float) -> list[int]:
        """Running children asked to stop more than ``grace`` seconds ago: their workers are to be killed."""
        now = self.clock()
        overdue = [cid for cid, stop in self.stops.items()
                   if cid in self.running and not stop.killed and now - stop.time > grace]
        for child_id in overdue:
            self.stops[child_id].killed = True
            log.warning("child %d did not stop within %.0f s: killing its worker", child_id, grace)
        return overdue

    # -- closing ----------------------------------------------------------------------------------------
    def close_child(self, child: ChildState, status: str, *, reason: str | None = None, error: str | None = None,
                    ended: float | None = None) -> None:
        child.status, child.reason, child.error = status, reason, error
        child.ended = ended or self.clock()
        self.running.discard(child.id)
        self.update_best()
        self.dirty = True

    def update_best(self) -> None:
        best = max((c for c in self.state.children if c.best_value is not None
                    and c.status not in ("failed", "invalid")), key=lambda c: (c.best_value, -c.id), default=None)
        best_id = best.id if best else None
        if best_id != self.state.best_child:
            self.state.best_child = best_id
            self.dirty = True

    def done(self) -> bool:
        """Whether the loop may end: nothing runs and nothing more will be launched."""
        return not self.running and not self.more_to_launch()

    def finish(self) -> tuple[str, str | None]:
        """Close the experiment: its final status and reason (``completed`` unless it was ended)."""
        status, reason = self.ending or ("completed", None)
        self.update_best()
        self.state.status, self.state.reason, self.state.ended = status, reason, self.clock()
        self.dirty = True
        return status, reason

    def saved(self) -> None:
        self.dirty = False
