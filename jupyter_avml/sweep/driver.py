"""The background driver of one experiment: ``python -m jupyter_avml.sweep.driver WORKSPACE NAME [--resume]``.

``Experiment.submit`` starts it as a detached process (its own session, output to ``driver.log``), so a
notebook kernel can restart without stopping the sweep. It owns ``state.json`` and ``driver.json`` (see
``state.py``) and holds ``driver.lock`` (``flock``) for its whole life, so two drivers never run one
experiment.

What it does, every 0.1 s:

* asks the sampler for configurations while a slot is free and the budget allows; a configuration that
  ``AutoMLImageConfig`` refuses becomes an ``invalid`` child (told to the sampler as failed);
* hands each configuration to a warm worker of a free slot (``worker.py``), then starts a new spare;
* follows each running child: its run id from ``children/<id>.json``, its events by tailing
  ``runs/<run_id>/events.jsonl``. ``EpochMetrics`` update the child's state and, when they carry a primary
  value (the child's k-th evaluation), the early termination policy decides at step k; a ``STOP`` becomes
  ``request_stop(run_dir, reason, status="early_terminated")``. ``RunFinished`` gives the child's final
  status, told to the sampler;
* a worker that exits without ``RunFinished`` (killed, crashed) makes its child ``failed`` with the reason
  (the signal or exit code and the tail of its log); its MLflow run is ended as FAILED; the sweep goes on;
* the budget: at the deadline running children are stopped cleanly (status ``stopped``, reason
  ``experiment timeout``) and the experiment ends ``timed_out``. The ``STOP`` file, SIGTERM and SIGINT
  stop everything the same way, ending ``stopped``. Per-child stop requests arrive as
  ``children/<id>.stop``.

The budget counts the time drivers of this experiment ran (``previous_seconds`` in ``driver.json`` carries
earlier sessions), so a resumed sweep gets what is left of it.

At the end the parent MLflow run is tagged with the best child (``avml.best_child``,
``avml.best_child_run_id``, ``avml.best_value``, and the primary metric logged as a metric) and ended.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, IO

from jupyter_avml.sweep.state import ChildState, ExperimentState, experiment_dir, read_state, write_state
from jupyter_avml.workspace import Workspace

log = logging.getLogger("jupyter_avml.sweep.driver")

POLL_SECONDS = 0.1
HEARTBEAT_SECONDS = 5.0
#: How long a child asked to stop may take before its worker is killed (it stops after its current batch,
#: but an evaluation on a large validation set can take a while).
STOP_GRACE_SECONDS = 300.0
#: How long the driver waits at the end for workers that reported their end but still upload artifacts.
FINISH_GRACE_SECONDS = 300.0
LOG_TAIL_LINES = 15
LOCK_FILE = "driver.lock"
DRIVER_FILE = "driver.json"
STOP_FILE = "STOP"


# --------------------------------------------------------------------------------------------------------
def acquire_lock(folder: Path) -> IO | None:
    """Hold ``driver.lock`` (released by the OS when the process ends, however it ends)."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def lock_held(folder: Path) -> bool:
    """Whether some process holds the experiment's driver lock."""
    path = folder / LOCK_FILE
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
    os.replace(tmp, path)


def process_identity(pid: int) -> dict[str, Any]:
    """``pid``, ``create_time`` (as psutil reports it) and ``host``: what ``driver.json`` holds."""
    import psutil

    return {"pid": pid, "create_time": psutil.Process(pid).create_time(), "host": socket.gethostname()}


def tail_lines(path: Path, count: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-count:])


def tail_events(path: Path, offset: int, child_id: int) -> tuple[list, int]:
    """``events.read_events`` that skips (and logs) a line that does not parse: a worker killed in the middle
    of a write leaves half a line, and the sweep must read past it."""
    from jupyter_avml.training.events import read_events

    def skip(line: bytes, exc: Exception) -> None:
        log.warning("child %d: skipping an unreadable line of %s (%s)", child_id, path, exc)

    return read_events(path, offset, on_bad_line=skip)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"worker killed by signal {-code} ({name})"
    return f"worker exited with code {code}"


# --------------------------------------------------------------------------------------------------------
@dataclass
class _Running:
    """A child handed to a worker process."""

    child: ChildState
    trial: Any
    slot: Any
    process: subprocess.Popen
    run_id: str | None = None
    offset: int = 0
    stop: tuple[str, str] | None = None   # (status, reason) asked
    stop_time: float | None = None
    killed_after_stop: bool = False
    reported: bool = False                # the worker wrote children/<id>.json (it is warm and started)


class Driver:
    def __init__(self, workspace: Workspace, name: str, resume: bool):
        self.ws = workspace
        self.name = name
        self.folder = experiment_dir(workspace.root, name)
        self.resume = resume
        self.state: ExperimentState | None = None
        self.tracker = None
        self.spec = None
        self.sampler = None
        self.slots: list = []
        self.concurrency = 1
        self.running: dict[int, _Running] = {}
        self.finishing: list[_Running] = []
        self.spares: dict[int, subprocess.Popen] = {}
        self.spare_serial = 0
        self.worker_logs: dict[int, Path] = {}   # worker pid -> its log before it got a child
        self.trials: dict[int, Any] = {}
        self.pending: list[ChildState] = []
        self.told: set[int] = set()
        self.exhausted = False
        self.ending: tuple[str, str] | None = None   # (experiment status, reason)
        self.signal_reason: str | None = None
        self.deadline = float("inf")
        self.dirty = False
        self.last_heartbeat = 0.0
        self.session_started = time.time()
        self.previous_seconds = 0.0

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
        from jupyter_avml.sweep.slots import plan_slots

        info = read_json(self.folder / DRIVER_FILE)
        if info.get("pid") == os.getpid():
            self.previous_seconds = float(info.get("previous_seconds") or 0.0)
        self.write_driver_file()
        self.spec = spec = read_experiment(self.folder / "experiment.yaml")
        state = read_state(self.folder)
        if state is None:
            state = ExperimentState(name=self.name, task=spec.task, primary_metric=spec.primary_metric,
                                    created=time.time())
        if state.children and not self.resume:
            raise RuntimeError(f"experiment {self.name} already has children; resume it instead")
        self.state = state
        state.task, state.primary_metric = spec.task, spec.primary_metric
        state.sampling, state.iterations = spec.sampling, spec.iterations
        state.early_termination_policy = spec.policy_config
        state.budget_seconds = spec.budget_seconds
        state.status, state.reason, state.error, state.ended = "running", None, None, None
        state.started = state.started or time.time()
        self.deadline = self.session_started + max(0.0, spec.budget_seconds - self.previous_seconds)

        self.slots = plan_slots(str(spec.fixed.get("device") or "auto"), cpu_slots=spec.cpu_slots,
                                max_concurrent=spec.max_concurrent_iterations,
                                cpu_threads=spec.fixed.get("cpu_threads"))
        wanted = spec.max_concurrent_iterations or spec.iterations
        self.concurrency = max(1, min(wanted, len(self.slots), spec.iterations))
        state.max_concurrent_iterations = self.concurrency
        log.info("experiment %s: %s sampling, %d iterations, %d at once on %s", self.name, spec.sampling,
                 spec.iterations, self.concurrency, ", ".join(s.describe() for s in self.slots[:self.concurrency]))

        # Spares first: their imports take seconds, and they overlap with the tracking store's set-up here.
        unfinished = sum(1 for c in state.children if not c.finished)
        for slot in self.slots[:min(self.concurrency, unfinished + max(0, spec.iterations - len(state.children)))]:
            self.start_spare(slot)

        from jupyter_avml.sweep.worker import tracking_store_lock
        from jupyter_avml.tracking.store import Tracker

        with tracking_store_lock(self.ws.root):
            self.tracker = Tracker(self.ws, spec.fixed.get("tracking_uri"))
            self.tracker.client.search_experiments(max_results=1)
        self.sampler = self.make_sampler()
        if self.resume:
            self.sync_with_state()
        self.start_parent_run()
        if self.resume:
            self.end_orphan_runs(keep={c.run_id for c in self.pending if c.run_id})
        self.save()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.on_signal)

    def make_sampler(self):
        from jupyter_avml.sweep.sampling import make_sampler

        spec = self.spec
        storage = None
        if spec.sampling == "bayesian":
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            storage = "sqlite:///" + str(self.folder / "optuna.db")
        return make_sampler(spec.sampling, spec.space, seed=spec.seed, storage=storage, study_name=self.name,
                            early_termination=spec.has_policy)

    def sync_with_state(self) -> None:
        """Resume: finished children stay as they are; unfinished ones run again, first.

        Random and grid sampling regenerate their deterministic sequence (same seed) and skip the trials
        already in the state; the Bayesian sampler continues its Optuna study (its trials asked but not told
        are the unfinished children, or configurations the killed driver asked and never recorded).
        """
        from jupyter_avml.sweep.sampling import BayesianSampler, Trial

        state = self.state
        children = sorted(state.children, key=lambda c: c.id)
        if isinstance(self.sampler, BayesianSampler):
            asked = {t.number: t for t in self.sampler.running_trials()}
            for child in children:
                trial = asked.pop(child.id, None)
                if child.finished:
                    if trial is not None:  # recorded as finished, never told: tell it now
                        self.trials[child.id] = trial
                        self.tell(child)
                    self.told.add(child.id)
                    continue
                if trial is None:  # already told by the killed driver
                    self.told.add(child.id)
                    trial = Trial(number=child.id, params=dict(child.params))
                self.trials[child.id] = trial
                self.pending.append(child)
            for number, trial in sorted(asked.items()):
                child = ChildState(id=number, params=dict(trial.params))
                state.children.append(child)
                self.trials[number] = trial
                self.pending.append(child)
        else:
            for child in children:
                trial = self.sampler.ask()
                if trial is None or trial.number != child.id:
                    raise RuntimeError(f"cannot regenerate trial {child.id} of {self.spec.sampling} sampling "
                                       f"(was experiment.yaml changed?)")
                if trial.params != child.params:
                    log.warning("child %d: the regenerated configuration %s differs from the recorded %s; "
                                "keeping the recorded one", child.id, trial.params, child.params)
                trial.params = dict(child.params)
                self.trials[child.id] = trial
                if child.finished:
                    self.tell(child)
                else:
                    self.pending.append(child)
        for child in self.pending:
            child.status = "queued"
        log.info("resuming: %d finished children kept, %d to run again", len(children) - len(self.pending),
                 len(self.pending))

    def start_parent_run(self) -> None:
        state, spec = self.state, self.spec
        if state.parent_run_id:
            self.tracker.reopen(state.parent_run_id)
            return
        state.parent_run_id = self.tracker.start_run(
            experiment=self.name, run_name=self.name,
            tags={"avml.sweep": self.name, "avml.role": "parent", "task": spec.task})
        params = {"sampling": spec.sampling, "iterations": spec.iterations,
                  "max_concurrent_iterations": self.concurrency, "budget_seconds": spec.budget_seconds,
                  "early_termination_policy": json.dumps(spec.policy_config),
                  "search_space": json.dumps(spec.space.to_config() if spec.has_search_space else None,
                                             default=str)}
        params.update({k: v for k, v in spec.fixed.items() if k not in params})
        self.tracker.log_params(state.parent_run_id, params)

    # -- main loop --------------------------------------------------------------------------------------
    def loop(self) -> None:
        while True:
            now = time.time()
            self.check_stop_requests(now)
            self.poll_children(now)
            self.poll_finishing()
            if self.ending is None:
                self.launch()
                self.top_up_spares()
            if not self.running and (self.ending is not None or not self.more_to_launch()):
                break
            if self.dirty:
                self.save()
            if now - self.last_heartbeat > HEARTBEAT_SECONDS:
                self.write_driver_file()
            time.sleep(POLL_SECONDS)

    def on_signal(self, signum, frame) -> None:
        self.signal_reason = f"stopped: the driver received {signal.Signals(signum).name}"

    def check_stop_requests(self, now: float) -> None:
        if self.ending is None:
            stop_file = self.folder / STOP_FILE
            if self.signal_reason:
                self.end_all("stopped", self.signal_reason)
            elif stop_file.exists():
                reason = read_json(stop_file).get("reason") or "stopped by user"
                self.end_all("stopped", reason)
            elif now >= self.deadline:
                budget = self.spec.budget_seconds
                self.end_all("timed_out", f"experiment timeout (budget {budget:g} s)",
                             child_reason="experiment timeout")
        children_dir = self.folder / "children"
        if children_dir.is_dir():
            for path in children_dir.glob("*.stop"):
                try:
                    child_id = int(path.stem)
                except ValueError:
                    continue
                reason = read_json(path).get("reason") or "stopped by user"
                path.unlink(missing_ok=True)
                self.stop_one(child_id, reason)
        for r in list(self.running.values()):
            if r.stop_time is not None and now - r.stop_time > STOP_GRACE_SECONDS and r.process.poll() is None:
                log.warning("child %d did not stop within %.0f s: killing its worker", r.child.id, STOP_GRACE_SECONDS)
                r.killed_after_stop = True
                r.process.kill()

    def end_all(self, status: str, reason: str, child_reason: str | None = None) -> None:
        log.info("ending the experiment: %s (%s)", status, reason)
        self.ending = (status, reason)
        for r in self.running.values():
            self.ask_stop(r, "stopped", child_reason or reason)
        for child in self.pending:
            self.close_child(child, "stopped", reason=child_reason or reason)
        self.pending.clear()
        self.retire_spares()

    def stop_one(self, child_id: int, reason: str) -> None:
        if child_id in self.running:
            self.ask_stop(self.running[child_id], "stopped", reason)
            return
        for child in list(self.pending):
            if child.id == child_id:
                self.pending.remove(child)
                self.close_child(child, "stopped", reason=reason)

    def ask_stop(self, r: _Running, status: str, reason: str) -> None:
        from jupyter_avml.training.events import request_stop

        if r.stop is not None:
            return
        r.stop, r.stop_time = (status, reason), time.time()
        log.info("child %d: asking it to stop (%s: %s)", r.child.id, status, reason)
        if r.run_id:
            request_stop(self.ws.run_dir(r.run_id), reason, status=status)
        self.send(r.process, {"cmd": "stop", "status": status, "reason": reason})

    @staticmethod
    def send(process: subprocess.Popen, message: dict[str, Any]) -> bool:
        try:
            process.stdin.write((json.dumps(message) + "\n").encode("utf-8"))
            process.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    # -- launching --------------------------------------------------------------------------------------
    def more_to_launch(self) -> bool:
        if self.pending:
            return True
        return not self.exhausted and len(self.state.children) < self.spec.iterations

    def free_slots(self) -> list:
        busy = {r.slot.index for r in self.running.values()}
        return [s for s in self.slots[:self.concurrency] if s.index not in busy]

    def launch(self) -> None:
        for slot in self.free_slots():
            while self.more_to_launch():
                child = self.next_child()
                if child is None:
                    break
                if child.status == "invalid":
                    continue
                self.dispatch(child, slot)
                break

    def next_child(self) -> ChildState | None:
        from jupyter_avml.errors import ConfigError

        if self.pending:
            child = self.pending.pop(0)
            if not child.run_id:
                try:
                    self.validate(child, self.trials[child.id])
                except ConfigError:
                    pass
            return child
        trial = self.sampler.ask()
        if trial is None:
            self.exhausted = True
            return None
        self.trials[trial.number] = trial
        child = ChildState(id=trial.number, params=dict(trial.params))
        self.state.children.append(child)
        self.dirty = True
        try:
            self.validate(child, trial)
        except ConfigError:
            pass
        return child

    def validate(self, child: ChildState, trial) -> None:
        """Validate the sampled configuration; a refused one makes the child ``invalid`` (and re-raises)."""
        from jupyter_avml.errors import ConfigError

        try:
            config = self.spec.child_config(trial.params)
        except ConfigError as exc:
            log.info("child %d: invalid configuration %s: %s", child.id, trial.params, exc)
            child.model_name = str(trial.params.get("model_name", self.spec.fixed.get("model_name", "")))
            self.close_child(child, "invalid", error=str(exc))
            raise
        child.model_name = config.model_name
        child.number_of_epochs = config.number_of_epochs

    def child_values(self, child: ChildState, slot) -> dict[str, Any]:
        values = self.spec.child_config(self.trials[child.id].params).user_values()
        if "cpu_threads" not in values:
            values["cpu_threads"] = slot.threads
        if slot.kind == "gpu" and str(values.get("device", "")).startswith("cuda:"):
            values["device"] = "cuda"  # the slot's worker sees only its GPU, as cuda:0
        return values

    def dispatch(self, child: ChildState, slot) -> None:
        from jupyter_avml.sweep.worker import child_info_path

        child_info_path(self.folder, child.id).unlink(missing_ok=True)  # a stale one from an earlier session
        resume_run = child.run_id if child.run_id and self.ws.run_dir(child.run_id).is_dir() else None
        assignment = {
            "child": child.id, "slot": slot.index, "experiment": self.name, "workspace": str(self.ws.root),
            "folder": str(self.folder), "threads": slot.threads, "parent_run_id": self.state.parent_run_id,
            "run_name": f"{self.name}-child-{child.id}", "tags": {"avml.sweep": self.name, "avml.child": child.id},
            "resume_run_id": resume_run,
            "config": None if resume_run else self.child_values(child, slot),
        }
        process = self.spares.pop(slot.index, None)
        if process is None or process.poll() is not None:
            if process is not None:
                log.warning("the spare worker of slot %d had exited (%s)", slot.index,
                            describe_exit(process.returncode))
            process = self.spawn_worker(slot)
        now = time.time()
        child.status, child.started, child.ended, child.reason, child.error = "running", now, None, None, None
        if not resume_run:
            child.run_id, child.epoch, child.metric_history = None, 0, []
            child.best_value = child.best_epoch = child.model_path = None
        r = _Running(child=child, trial=self.trials[child.id], slot=slot, process=process, run_id=resume_run)
        self.running[child.id] = r
        self.dirty = True
        if not self.send(process, assignment):
            log.warning("child %d: its worker is gone before the assignment", child.id)
        log.info("child %d -> slot %d (worker %d)%s: %s", child.id, slot.index, process.pid,
                 f" resuming run {resume_run}" if resume_run else "", child.params)

    def top_up_spares(self) -> None:
        """Start a spare for each slot in use that lacks one, while children remain to hand out.

        A slot's next spare starts once its current child has started its run, so that the spare's imports
        do not slow down the start of the child it would replace.
        """
        live = sum(1 for p in self.spares.values() if p.poll() is None)
        busy = {r.slot.index: r for r in self.running.values()}
        for slot in self.slots[:self.concurrency]:
            if live >= self.remaining():
                return
            spare = self.spares.get(slot.index)
            if spare is not None and spare.poll() is None:
                continue
            r = busy.get(slot.index)
            if r is not None and not r.reported:
                continue
            self.start_spare(slot)
            live += 1

    def remaining(self) -> int:
        """Children still to hand out (an estimate for grid sampling, which may run out early)."""
        if self.ending is not None:
            return 0
        left = len(self.pending)
        if not self.exhausted:
            left += max(0, self.spec.iterations - len(self.state.children))
        return left

    def start_spare(self, slot) -> None:
        if slot.index in self.spares and self.spares[slot.index].poll() is None:
            return
        self.spares[slot.index] = self.spawn_worker(slot)

    def spawn_worker(self, slot) -> subprocess.Popen:
        self.spare_serial += 1
        logs = self.folder / "workers"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **slot.env(), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "jupyter_avml.sweep.worker", "--parent", str(os.getpid()),
                   "--workspace", str(self.ws.root), "--serial", str(self.spare_serial)]
        uri = self.spec.fixed.get("tracking_uri")
        if uri:
            command += ["--tracking-uri", str(uri)]
        path = logs / f"worker-{self.spare_serial}.log"
        with open(path, "ab") as out:
            # Popen = fork + exec of a new interpreter: nothing of the driver's state is inherited.
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                       env=env, close_fds=True)
        self.worker_logs[process.pid] = path
        return process

    def retire_spares(self) -> None:
        for process in self.spares.values():
            try:
                process.stdin.close()  # an idle spare exits when its stdin closes
            except OSError:
                pass
            if process.poll() is None:
                process.terminate()
        for process in self.spares.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.spares.clear()

    # -- following children -----------------------------------------------------------------------------
    def poll_children(self, now: float) -> None:
        for child_id, r in list(self.running.items()):
            self.refresh_run_id(r)
            if r.run_id:
                self.read_child_events(r)
            if r.child.finished:
                del self.running[child_id]
                self.finishing.append(r)
                continue
            if r.process.poll() is not None:
                self.refresh_run_id(r)
                if r.run_id:
                    self.read_child_events(r)
                del self.running[child_id]
                if r.child.finished:
                    self.finishing.append(r)
                else:
                    self.worker_lost(r)
                    self.close_stdin(r.process)

    def poll_finishing(self) -> None:
        for r in list(self.finishing):
            if r.process.poll() is not None:
                self.finishing.remove(r)
                self.close_stdin(r.process)
                if r.process.returncode != 0:
                    log.warning("child %d: %s after its run ended (%s)", r.child.id,
                                describe_exit(r.process.returncode), tail_lines(self.child_log(r.child.id), 3))

    @staticmethod
    def close_stdin(process: subprocess.Popen) -> None:
        try:
            process.stdin.close()
        except OSError:
            pass

    def child_log(self, child_id: int) -> Path:
        from jupyter_avml.sweep.worker import child_log_path

        return child_log_path(self.folder, child_id)

    def refresh_run_id(self, r: _Running) -> None:
        if r.reported:
            return
        from jupyter_avml.sweep.worker import child_info_path

        info = read_json(child_info_path(self.folder, r.child.id))
        r.reported = bool(info)
        if info.get("run_id") and not r.run_id:
            r.run_id = r.child.run_id = info["run_id"]
            self.dirty = True
            if r.stop is not None:
                from jupyter_avml.training.events import request_stop

                request_stop(self.ws.run_dir(r.run_id), r.stop[1], status=r.stop[0])

    def read_child_events(self, r: _Running) -> None:
        from jupyter_avml.training.events import EpochMetrics, RunFinished, RunStarted

        events, r.offset = tail_events(self.ws.run_dir(r.run_id) / "events.jsonl", r.offset, r.child.id)
        child = r.child
        for event in events:
            if isinstance(event, RunStarted):
                child.model_name = event.model_name or child.model_name
                child.number_of_epochs = event.number_of_epochs or child.number_of_epochs
                self.dirty = True
            elif isinstance(event, EpochMetrics):
                self.on_epoch(r, event)
            elif isinstance(event, RunFinished):
                self.on_finished(r, event)

    def on_epoch(self, r: _Running, event) -> None:
        from jupyter_avml.sweep.policies import Decision

        child = r.child
        child.epoch = max(child.epoch, event.epoch)
        self.dirty = True
        value = event.primary_value
        if value is None or any(int(e) == event.epoch for e, _ in child.metric_history):
            return
        child.metric_history.append([event.epoch, float(value)])
        if child.best_value is None or value > child.best_value:
            child.best_value, child.best_epoch = float(value), event.epoch
        self.update_best()
        if not self.spec.has_policy or r.stop is not None or child.finished:
            return
        step = len(child.metric_history)
        decision, reason = self.spec.policy.decide(str(child.id), step, self.histories(),
                                                   maximize=True, metric=self.state.primary_metric)
        if decision is Decision.STOP:
            self.ask_stop(r, "early_terminated", reason)

    def histories(self) -> dict[str, Any]:
        from jupyter_avml.sweep.policies import TrialHistory

        started = sorted((c for c in self.state.children if c.started is not None and c.metric_history),
                         key=lambda c: (c.started, c.id))
        return {str(c.id): TrialHistory(str(c.id), {k + 1: v for k, (_, v) in enumerate(c.metric_history)},
                                        finished=c.status == "completed")
                for c in started}

    def on_finished(self, r: _Running, event) -> None:
        child = r.child
        status = event.status if event.status in ("completed", "early_terminated", "stopped", "failed") else "failed"
        if event.best_value is not None:
            child.best_value, child.best_epoch = float(event.best_value), event.best_epoch
        child.model_path = event.model_path
        self.close_child(child, status, reason=event.reason, error=event.error, ended=event.time)
        log.info("child %d %s%s", child.id, status, f" ({event.reason or event.error})"
                 if (event.reason or event.error) else "")

    def worker_lost(self, r: _Running) -> None:
        """The worker exited without the run's last event."""
        from jupyter_avml.sweep.worker import child_info_path

        child = r.child
        what = describe_exit(r.process.returncode)
        info = read_json(child_info_path(self.folder, child.id))
        if r.killed_after_stop and r.stop is not None:
            status, reason = r.stop
            self.close_child(child, status, reason=f"{reason} ({what} after {STOP_GRACE_SECONDS:.0f} s)")
        else:
            log_path = self.child_log(child.id)
            if not log_path.is_file():  # it died before its assignment: its output is in its own log
                log_path = self.worker_logs.get(r.process.pid, log_path)
            tail = tail_lines(log_path)
            error = info.get("error") or what
            if info.get("error"):
                error = f"{error} ({what})"
            if tail:
                error += f"; last lines of {log_path}:\n{tail}"
            self.close_child(child, "failed", error=error)
            log.warning("child %d failed: %s", child.id, what)
        if child.run_id:
            self.end_run_record(child.run_id, child.status, child.error or child.reason or what)

    def end_run_record(self, run_id: str, status: str, message: str) -> None:
        """End the MLflow run and run.json of a run whose process could not."""
        from jupyter_avml.training.run import record_run_status

        try:
            self.tracker.set_tags(run_id, {"avml.error" if status == "failed" else "avml.reason": message[:5000]})
            self.tracker.end_run(run_id, status)
        except Exception as exc:  # noqa: BLE001 - the sweep goes on
            log.warning("could not end MLflow run %s: %s", run_id, exc)
        run_dir = self.ws.run_dir(run_id)
        if run_dir.is_dir():
            record_run_status(run_dir, status, **({"error": message} if status == "failed" else {"reason": message}))

    def close_child(self, child: ChildState, status: str, *, reason: str | None = None, error: str | None = None,
                    ended: float | None = None) -> None:
        child.status, child.reason, child.error = status, reason, error
        child.ended = ended or time.time()
        self.tell(child)
        self.update_best()
        self.dirty = True

    def tell(self, child: ChildState) -> None:
        if child.id in self.told or child.id not in self.trials:
            return
        self.told.add(child.id)
        trial = self.trials[child.id]
        last = child.metric_history[-1][1] if child.metric_history else None
        try:
            if child.status == "completed" and child.best_value is not None:
                self.sampler.tell(trial, child.best_value, "complete")
            elif child.status in ("early_terminated", "stopped"):
                self.sampler.tell(trial, last, "pruned", step=len(child.metric_history) or None)
            else:
                self.sampler.tell(trial, None, "failed")
        except (ValueError, KeyError) as exc:
            log.info("child %d: sampler not told (%s)", child.id, exc)

    def update_best(self) -> None:
        candidates = [c for c in self.state.children
                      if c.best_value is not None and c.status not in ("failed", "invalid")]
        best = max(candidates, key=lambda c: (c.best_value, -c.id), default=None)
        if (best.id if best else None) != self.state.best_child:
            self.state.best_child = best.id if best else None
            self.dirty = True

    # -- the end ----------------------------------------------------------------------------------------
    def finish(self) -> None:
        self.retire_spares()
        deadline = time.time() + FINISH_GRACE_SECONDS
        while self.finishing and time.time() < deadline:
            self.poll_finishing()
            time.sleep(POLL_SECONDS)
        for r in self.finishing:
            log.warning("child %d: its worker is still uploading after %.0f s; leaving it", r.child.id,
                        FINISH_GRACE_SECONDS)
        state = self.state
        status, reason = self.ending or ("completed", None)
        self.end_orphan_runs(keep=set())
        self.update_best()
        self.end_parent(status)
        state.status, state.reason, state.ended = status, reason, time.time()
        self.save()
        self.write_driver_file(ended=True)
        counts = ", ".join(f"{v} {k}" for k, v in sorted(state.counts().items()))
        log.info("experiment %s %s: %s", self.name, status, counts or "no children")

    def end_parent(self, status: str) -> None:
        state = self.state
        if not state.parent_run_id:
            return
        from jupyter_avml.tracking.store import STATUS_TAG

        tags: dict[str, Any] = {STATUS_TAG: status}
        if state.best_child is not None:
            best = state.child(state.best_child)
            tags.update({"avml.best_child": best.id, "avml.best_child_run_id": best.run_id or "",
                         "avml.best_value": best.best_value, "avml.best_model_name": best.model_name})
            self.tracker.log_metrics(state.parent_run_id, {state.primary_metric: best.best_value}, step=0)
        self.tracker.set_tags(state.parent_run_id, tags)
        mlflow_status = {"completed": "FINISHED", "timed_out": "FINISHED", "stopped": "KILLED"}.get(status, "FAILED")
        self.tracker.client.set_terminated(state.parent_run_id, mlflow_status)

    def end_orphan_runs(self, keep: set[str]) -> None:
        """End the MLflow runs of this sweep left RUNNING by killed workers (their children are settled)."""
        try:
            runs = self.tracker.search(experiment=self.name,
                                       filter_string="attributes.status = 'RUNNING' and tags.`avml.sweep` = "
                                                     f"'{self.name}'")
        except Exception as exc:  # noqa: BLE001
            log.warning("could not search for interrupted runs: %s", exc)
            return
        for run in runs:
            run_id = run.info.run_id
            if run_id == self.state.parent_run_id or run_id in keep:
                continue
            if any(r.run_id == run_id for r in list(self.running.values()) + self.finishing):
                continue
            log.info("ending interrupted run %s as failed", run_id)
            self.end_run_record(run_id, "failed", "interrupted: its worker ended without finishing the run")

    def fail(self, exc: BaseException) -> None:
        for r in list(self.running.values()) + self.finishing:
            if r.process.poll() is None:
                r.process.kill()
        for process in self.spares.values():
            if process.poll() is None:
                process.kill()
        if self.state is None:
            self.state = read_state(self.folder) or ExperimentState(name=self.name, task="", primary_metric="",
                                                                    created=time.time())
        self.state.status, self.state.ended = "failed", time.time()
        self.state.error = f"{type(exc).__name__}: {exc}"
        try:
            if self.tracker is not None and self.state.parent_run_id:
                self.tracker.set_tags(self.state.parent_run_id, {"avml.status": "failed",
                                                                 "avml.error": self.state.error[:5000]})
                self.tracker.client.set_terminated(self.state.parent_run_id, "FAILED")
        except Exception:  # noqa: BLE001
            log.exception("could not end the parent run")
        self.save()
        self.write_driver_file(ended=True)

    # -- files ------------------------------------------------------------------------------------------
    def save(self) -> None:
        write_state(self.folder, self.state)
        self.dirty = False

    def write_driver_file(self, ended: bool = False) -> None:
        now = time.time()
        data = {**process_identity(os.getpid()), "started": self.session_started, "heartbeat": now,
                "previous_seconds": self.previous_seconds}
        if ended:
            data["ended"] = now
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.folder / DRIVER_FILE, data)
        self.last_heartbeat = now


def session_seconds(info: dict[str, Any]) -> float:
    """Budget used by the drivers recorded in a ``driver.json`` (earlier sessions plus its own)."""
    started = info.get("started")
    last = info.get("ended") or info.get("heartbeat") or started
    own = max(0.0, float(last) - float(started)) if started and last else 0.0
    return float(info.get("previous_seconds") or 0.0) + own


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
    folder = experiment_dir(workspace.root, args.name)
    lock = acquire_lock(folder)
    if lock is None:
        log.error("another driver is running experiment %s (%s holds the lock)", args.name, folder / LOCK_FILE)
        return 3
    try:
        return Driver(workspace, args.name, args.resume).run()
    finally:
        lock.close()


if __name__ == "__main__":
    sys.exit(main())
