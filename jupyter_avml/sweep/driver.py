"""The background driver of one experiment: ``python -m jupyter_avml.sweep.driver WORKSPACE NAME [--resume]``.

``Experiment.submit`` starts it as a detached process (its own session, output to ``driver.log``), so a
notebook kernel can restart without stopping the sweep. It holds ``driver.lock`` for its whole life (two
drivers never run one experiment), and is the only writer of ``state.json`` and ``driver.json`` while it
runs (``folder.py``).

The driver only composes four parts, each testable alone:

* ``Scheduler`` (``scheduler.py``): the queue, the sampler's proposals, what results mean, the policy's
  decisions, the deadline, the best child;
* an ``Executor`` (``executor.py``; ``processes.ProcessExecutor`` here): where children run and what they
  report;
* ``ExperimentFolder`` (``folder.py``): the files it reads (stop requests) and writes (state, heartbeat);
* ``SweepRuns`` (``bookkeeping.py``): the parent MLflow run and the runs dead workers left open.

Every 0.1 s (``step``): stop requests (``STOP``, signals, the deadline, ``children/<id>.stop``) become stop
requests to the executor; the executor's reports (run ids, events, exits) go to the scheduler, whose
decisions go back to the executor (stop a child the policy cut, kill a worker past its stop grace period);
free slots get the next children; the state is saved when it changed; a heartbeat goes to ``driver.json``
every few seconds.

The budget counts the time the drivers of this experiment ran: a resumed driver reads what the previous one
recorded in ``driver.json`` (``previous_seconds`` plus its own session) before writing its own record, so a
resumed sweep gets what is left of it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from jupyter_avml.sweep.executor import Assignment, ChildEvents, ChildExited, Executor, RunAssigned
from jupyter_avml.sweep.folder import ExperimentFolder, process_identity
from jupyter_avml.sweep.scheduler import Scheduler, StopRequest
from jupyter_avml.sweep.state import ExperimentState
from jupyter_avml.workspace import Workspace

log = logging.getLogger("jupyter_avml.sweep.driver")

__all__ = ["Driver", "main", "session_seconds"]

POLL_SECONDS = 0.1
HEARTBEAT_SECONDS = 5.0
#: How long a child asked to stop may take before its worker is killed (it stops after its current batch,
#: but an evaluation on a large validation set can take a while).
STOP_GRACE_SECONDS = 300.0
#: How long the driver waits at the end for workers that reported their end but still upload artifacts.
FINISH_GRACE_SECONDS = 300.0


def session_seconds(record: dict[str, Any]) -> float:
    """Budget used by the drivers recorded in a ``driver.json`` (earlier sessions plus its own)."""
    started = record.get("started")
    last = record.get("ended") or record.get("heartbeat") or started
    try:
        own = max(0.0, float(last) - float(started)) if started and last else 0.0
        return float(record.get("previous_seconds") or 0.0) + own
    except (TypeError, ValueError):
        return 0.0


def concurrency_of(spec, slots: list) -> int:
    """How many children run at once: ``max_concurrent_iterations`` (default all), bounded by the slots."""
    wanted = spec.max_concurrent_iterations or spec.iterations
    return max(1, min(wanted, len(slots), spec.iterations))


class Driver:
    """One driver session (see the module docstring).

    ``executor_factory(folder, workspace, spec)`` and ``runs`` replace the process executor and the MLflow
    bookkeeping (tests); ``clock`` replaces ``time.time`` in the scheduler.
    """

    def __init__(self, workspace: Workspace, name: str, resume: bool, *,
                 executor_factory: Callable[..., Executor] | None = None, runs=None,
                 clock: Callable[[], float] = time.time):
        self.ws, self.name, self.resume = workspace, name, resume
        self.folder = ExperimentFolder.of(workspace.root, name)
        self.executor_factory = executor_factory or _process_executor
        self.runs = runs
        self.clock = clock
        self.session_started = time.time()
        self.previous_seconds = 0.0
        self.spec = None
        self.state: ExperimentState | None = None
        self.scheduler: Scheduler | None = None
        self.executor: Executor | None = None
        self.signal_reason: str | None = None
        self.last_heartbeat = 0.0

    # -- the whole life ---------------------------------------------------------------------------------
    def run(self) -> int:
        try:
            self.setup()
            self.loop()
            self.finish()
            return 0
        except BaseException as exc:  # noqa: BLE001 - the state must say why the driver ended
            log.exception("driver failed")
            self.fail(exc)
            return 1

    def setup(self) -> None:
        from jupyter_avml.sweep.config import read_experiment
        from jupyter_avml.sweep.sampling import make_sampler
        from jupyter_avml.sweep.slots import plan_slots

        if self.resume:  # read before this session's record replaces it
            self.previous_seconds = session_seconds(self.folder.read_driver_record())
        self.write_driver_record()
        self.spec = spec = read_experiment(self.folder.config_file)
        state = self.folder.read_state() or ExperimentState(name=self.name, task=spec.task,
                                                            primary_metric=spec.primary_metric, created=time.time())
        self.state = state
        sampler = make_sampler(spec.sampling, spec.space, seed=spec.seed, early_termination=spec.has_policy)
        self.scheduler = Scheduler(spec, state, sampler, previous_seconds=self.previous_seconds, clock=self.clock)
        slots = plan_slots(str(spec.fixed.get("device") or "auto"), cpu_slots=spec.cpu_slots,
                           max_concurrent=spec.max_concurrent_iterations, cpu_threads=spec.fixed.get("cpu_threads"))
        concurrency = concurrency_of(spec, slots)
        self.scheduler.begin(resume=self.resume, concurrency=concurrency)
        log.info("experiment %s: %s sampling, %d iterations, %d at once on %s", self.name, spec.sampling,
                 spec.iterations, concurrency, ", ".join(s.describe() for s in slots[:concurrency]))
        # Spares first: their imports take seconds, and they overlap with the tracking store's set-up here.
        self.executor = self.executor_factory(self.folder, self.ws, spec, slots[:concurrency])
        self.executor.prepare(self.scheduler.unfinished())
        if self.runs is None:
            from jupyter_avml.sweep.bookkeeping import SweepRuns

            self.runs = SweepRuns(self.ws, self.name, spec.fixed.get("tracking_uri"))
        self.runs.open()
        self.runs.start_parent(state, spec, concurrency)
        if self.resume:
            self.runs.end_orphans(state, keep={c.run_id for c in state.children if not c.finished and c.run_id})
        self.save()

    def on_signal(self, signum, frame) -> None:
        self.signal_reason = f"stopped: the driver received {signal.Signals(signum).name}"

    # -- the loop ---------------------------------------------------------------------------------------
    def loop(self) -> None:
        while True:
            self.step()
            if self.scheduler.done():
                break
            if self.scheduler.dirty:
                self.save()
            if time.time() - self.last_heartbeat > HEARTBEAT_SECONDS:
                self.save()  # also repairs a state.json damaged from outside: readers are told to retry
                self.write_driver_record()
            time.sleep(POLL_SECONDS)

    def step(self) -> None:
        """One round: stop requests, the executor's reports, then new children on free slots."""
        scheduler, executor = self.scheduler, self.executor
        if self.signal_reason:
            self.send_stops(scheduler.end_all("stopped", self.signal_reason))
        elif (reason := self.folder.stop_request()) is not None:
            self.send_stops(scheduler.end_all("stopped", reason))
        self.send_stops(scheduler.check_deadline())
        self.send_stops(scheduler.check_trial_timeouts())
        for child_id, reason in self.folder.take_child_stop_requests():
            self.send_stops({child_id: scheduler.request_stop(child_id, "stopped", reason)})
        for child_id in scheduler.overdue_stops(STOP_GRACE_SECONDS):
            executor.kill(child_id)
        for report in executor.poll():
            self.on_report(report)
        if scheduler.ending is None:
            self.launch()
        executor.prepare(scheduler.remaining())

    def send_stops(self, requests: dict[int, StopRequest | None]) -> None:
        for child_id, request in requests.items():
            if request is not None:
                self.executor.request_stop(child_id, request.status, request.reason)

    def on_report(self, report) -> None:
        from jupyter_avml.training.events import EpochMetrics, RunFinished, RunStarted

        scheduler = self.scheduler
        if isinstance(report, RunAssigned):
            scheduler.on_run_id(report.child, report.run_id)
        elif isinstance(report, ChildEvents):
            for event in report.events:
                if scheduler.state.child(report.child).finished:
                    break
                if isinstance(event, RunStarted):
                    scheduler.on_run_started(report.child, event.model_name, event.number_of_epochs)
                elif isinstance(event, EpochMetrics):
                    stop = scheduler.on_epoch(report.child, event.epoch, event.metrics, event.primary_value,
                                              train_loss=event.train_loss)
                    self.send_stops({report.child: stop})
                elif isinstance(event, RunFinished):
                    scheduler.on_finished(report.child, event.status, best_value=event.best_value,
                                          best_epoch=event.best_epoch, model_path=event.model_path,
                                          reason=event.reason, error=event.error, ended=event.time)
                    self.executor.release(report.child)
        elif isinstance(report, ChildExited):
            child = scheduler.state.child(report.child)
            if child.finished:
                if report.returncode != 0:
                    log.warning("child %d: %s after its run ended", child.id, report.what)
                return
            scheduler.on_lost(report.child, report.what, report.error)
            if child.run_id:
                self.runs.end_run_record(child.run_id, child.status, child.error or child.reason or report.what)

    def launch(self) -> None:
        """Hand the next children to the free slots."""
        from jupyter_avml.errors import ConfigError

        for slot in self.executor.free_slots():
            child = self.scheduler.next_child()
            if child is None:
                return
            resume_run = child.run_id if child.run_id and self.ws.run_dir(child.run_id).is_dir() else None
            try:
                config = None if resume_run else self.scheduler.child_values(child)
            except ConfigError as exc:  # an interrupted child whose run is gone, refused by this version
                self.scheduler.close_child(child, "invalid", error=str(exc))
                continue
            assignment = Assignment(
                child=child.id, experiment=self.name, workspace=str(self.ws.root), folder=str(self.folder.path),
                run_name=f"{self.name}-child-{child.id}", parent_run_id=self.state.parent_run_id,
                tags={"avml.sweep": self.name, "avml.child": child.id}, resume_run_id=resume_run, config=config)
            self.scheduler.dispatched(child, resume_run=resume_run)
            self.executor.submit(assignment, slot)
            log.info("child %d: %s", child.id, child.params)

    # -- the end ----------------------------------------------------------------------------------------
    def finish(self) -> None:
        self.executor.close(FINISH_GRACE_SECONDS)
        status, _ = self.scheduler.finish()
        self.runs.end_orphans(self.state, keep=self.executor.live_run_ids())
        self.runs.end_parent(self.state, status)
        self.save()
        self.write_driver_record(ended=True)
        counts = ", ".join(f"{v} {k}" for k, v in sorted(self.state.counts().items()))
        log.info("experiment %s %s: %s", self.name, status, counts or "no children")

    def fail(self, exc: BaseException) -> None:
        if self.executor is not None:
            self.executor.abort()
        if self.state is None:
            try:
                self.state = self.folder.read_state()
            except Exception:  # noqa: BLE001 - a damaged state is replaced by one that says why we failed
                self.state = None
            self.state = self.state or ExperimentState(name=self.name, task="", primary_metric="",
                                                       created=time.time())
        self.state.status, self.state.ended = "failed", time.time()
        self.state.error = f"{type(exc).__name__}: {exc}"
        if self.runs is not None:
            self.runs.fail_parent(self.state)
        self.save()
        self.write_driver_record(ended=True)

    # -- files ------------------------------------------------------------------------------------------
    def save(self) -> None:
        self.folder.write_state(self.state)
        if self.scheduler is not None:
            self.scheduler.saved()

    def write_driver_record(self, ended: bool = False) -> None:
        now = time.time()
        record = {**process_identity(os.getpid()), "started": self.session_started, "heartbeat": now,
                  "previous_seconds": self.previous_seconds}
        if ended:
            record["ended"] = now
        self.folder.write_driver_record(record)
        self.last_heartbeat = now


def _process_executor(folder: ExperimentFolder, workspace: Workspace, spec, slots: list) -> Executor:
    from jupyter_avml.sweep.processes import ProcessExecutor

    return ProcessExecutor(folder, workspace, slots, len(slots), tracking_uri=spec.fixed.get("tracking_uri"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupyter_avml.sweep.driver",
                                     description="Run one experiment (started by Experiment.submit).")
    parser.add_argument("workspace")
    parser.add_argument("name")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "mlflow", "optuna"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    workspace = Workspace.resolve(args.workspace)
    folder = ExperimentFolder.of(workspace.root, args.name)
    lock = folder.try_driver_lock()
    if lock is None:
        log.error("another driver is running experiment %s (%s holds the lock)", args.name, folder.lock_file)
        return 3
    driver = Driver(workspace, args.name, args.resume)
    for signum in (signal.SIGTERM, signal.SIGINT):  # both stop every child cleanly, as STOP does
        signal.signal(signum, driver.on_signal)
    try:
        return driver.run()
    finally:
        lock.close()


if __name__ == "__main__":
    sys.exit(main())
