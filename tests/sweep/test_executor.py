"""The process executor with stand-in workers (``fake_worker.py``: the worker protocol, no training), and the
driver composing it with the scheduler, without MLflow. A few seconds each: the workers import little."""

from __future__ import annotations

import os
import sys
import time

import psutil
import pytest

from jupyter_avml.sweep.driver import Driver
from jupyter_avml.sweep.executor import Assignment, ChildEvents, ChildExited, RunAssigned
from jupyter_avml.sweep.folder import ExperimentFolder, process_identity
from jupyter_avml.sweep.processes import ProcessExecutor
from jupyter_avml.sweep.slots import plan_slots
from jupyter_avml.training.events import EpochMetrics, RunFinished, RunStarted
from jupyter_avml.workspace import Workspace

FAKE_WORKER = [sys.executable, "-m", "tests.sweep.fake_worker"]


def children_of_this_process() -> list:
    out = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "fake_worker" in " ".join(process.cmdline()):
                out.append(process)
        except psutil.Error:  # gone (or a zombie) meanwhile
            continue
    return out


@pytest.fixture
def setting(tmp_path):
    ws = Workspace.resolve(tmp_path / "ws")
    folder = ExperimentFolder.of(ws.root, "exp")
    executor = ProcessExecutor(folder, ws, plan_slots("cpu", cpu_slots=2, cores=4), 2, worker_command=FAKE_WORKER)
    yield ws, folder, executor
    executor.abort()
    psutil.wait_procs(children_of_this_process(), timeout=10)


def assignment(folder, ws, child: int, **config) -> Assignment:
    return Assignment(child=child, experiment="exp", workspace=str(ws.root), folder=str(folder.path),
                      run_name=f"exp-child-{child}", config=config)


def collect(executor, until, timeout: float = 30.0) -> list:
    """Poll like the driver (releasing a child when its run reports its end) until ``until(reports)``."""
    reports = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for report in executor.poll():
            reports.append(report)
            if isinstance(report, ChildEvents) and any(isinstance(e, RunFinished) for e in report.events):
                executor.release(report.child)
        if until(reports):
            return reports
        time.sleep(0.05)
    raise AssertionError(f"timed out; reports so far: {reports}")


def events_of(reports, child: int) -> list:
    return [e for r in reports if isinstance(r, ChildEvents) and r.child == child for e in r.events]


def test_children_run_on_warm_workers_report_their_events_and_stop_when_asked(setting):
    ws, folder, executor = setting
    executor.prepare(3)
    assert len(executor.spares) == 2  # one warm spare per slot
    spare_pids = {process.pid for process, _ in executor.spares.values()}
    slot0, slot1 = executor.free_slots()
    executor.submit(assignment(folder, ws, 0, behaviour="complete", values=[0.4, 0.6]), slot0)
    executor.submit(assignment(folder, ws, 1, behaviour="wait", values=[0.3]), slot1)
    assert executor.free_slots() == [] and {c.process.pid for c in executor.active.values()} == spare_pids

    reports = collect(executor, lambda rs: any(isinstance(e, RunFinished) for e in events_of(rs, 0))
                      and any(isinstance(e, EpochMetrics) for e in events_of(rs, 1)))
    assert RunAssigned(0, "fake000s1") in reports
    kinds = [type(e) for e in events_of(reports, 0)]
    assert kinds == [RunStarted, EpochMetrics, EpochMetrics, RunFinished]
    assert executor.free_slots() == [slot0]  # released: its slot takes the next child
    executor.prepare(2)
    assert set(executor.spares) == {0, 1}  # both children started their runs: each slot has its next spare

    executor.request_stop(1, "stopped", "enough")
    run1 = next(r.run_id for r in reports if isinstance(r, RunAssigned) and r.child == 1)
    assert (ws.run_dir(run1) / "STOP").is_file()  # the run hears it too, in case the worker misses stdin
    reports = collect(executor, lambda rs: any(isinstance(e, RunFinished) for e in events_of(rs, 1)))
    finished = [e for e in events_of(reports, 1) if isinstance(e, RunFinished)]
    assert [(e.status, e.reason) for e in finished] == [("stopped", "enough")]
    assert not any(isinstance(r, ChildExited) for r in reports), reports  # a released child's exit is not a loss
    executor.close(grace=10)
    assert executor.spares == {} and executor.finishing == []
    _, alive = psutil.wait_procs(children_of_this_process(), timeout=10)
    assert not alive


def test_a_worker_that_fails_dies_or_ignores_a_stop_is_reported_with_why(setting):
    ws, folder, executor = setting
    slot0, slot1 = executor.free_slots()
    executor.submit(assignment(folder, ws, 0, behaviour="fail_early"), slot0)
    executor.submit(assignment(folder, ws, 1, behaviour="die", values=[0.2]), slot1)
    reports = collect(executor, lambda rs: sum(isinstance(r, ChildExited) for r in rs) == 2)
    exits = {r.child: r for r in reports if isinstance(r, ChildExited)}
    assert (exits[0].returncode, exits[0].what) == (1, "worker exited with code 1")
    assert exits[0].error.startswith("DataError: train.jsonl: no usable row (worker exited with code 1); "
                                     f"last lines of {folder.worker_log(1)}")
    assert (exits[1].returncode, exits[1].error.split(";")[0]) == (3, "worker exited with code 3")
    assert [type(e) for e in events_of(reports, 1)] == [RunStarted, EpochMetrics]  # read before its exit
    assert executor.free_slots() == [slot0, slot1]

    executor.submit(assignment(folder, ws, 2, behaviour="ignore_stop"), slot0)
    collect(executor, lambda rs: any(isinstance(r, RunAssigned) for r in rs))
    executor.request_stop(2, "stopped", "enough")
    executor.kill(2)
    reports = collect(executor, lambda rs: any(isinstance(r, ChildExited) for r in rs))
    exited = next(r for r in reports if isinstance(r, ChildExited))
    assert (exited.child, exited.returncode, exited.what) == (2, -9, "worker killed by signal 9 (SIGKILL)")


class FakeRuns:
    """``SweepRuns`` without MLflow: records what the driver asks."""

    def __init__(self):
        self.calls = []

    def open(self):
        self.calls.append(("open",))

    def start_parent(self, state, spec, concurrency):
        state.parent_run_id = state.parent_run_id or "parent-run"
        self.calls.append(("start_parent", concurrency))

    def end_parent(self, state, status):
        self.calls.append(("end_parent", status, state.best_child))

    def fail_parent(self, state):
        self.calls.append(("fail_parent", state.error))

    def end_run_record(self, run_id, status, message):
        self.calls.append(("end_run_record", run_id, status, message.split(";")[0]))

    def end_orphans(self, state, keep):
        self.calls.append(("end_orphans", set(keep)))


def submitted(tmp_path, rates: str, **sweep) -> tuple[Workspace, ExperimentFolder]:
    """An experiment folder as ``submit`` leaves it (no driver started)."""
    from jupyter_avml.sweep.config import parse_experiment

    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    spec = parse_experiment({"task": "image-classification", "training_data": str(data), "model_name": "resnet18",
                             "device": "cpu", "cpu_slots": 2, "sampling": "grid", "seed": None,
                             "search_space": {"learning_rate": f"choice({rates})"}, **sweep})
    ws = Workspace.resolve(tmp_path / "ws")
    folder = ExperimentFolder.of(ws.root, "exp")
    folder.write_config(spec.to_yaml())
    return ws, folder


def fake_executor(folder, workspace, spec, slots):
    return ProcessExecutor(folder, workspace, slots, len(slots), worker_command=FAKE_WORKER)


def test_the_driver_composes_scheduler_executor_folder_and_bookkeeping(tmp_path):
    ws, folder = submitted(tmp_path, "0.01, 0.02, 0.03, 0.04", iterations=4)
    runs = FakeRuns()
    driver = Driver(ws, "exp", resume=False, executor_factory=fake_executor, runs=runs)
    try:
        driver.setup()
        assert folder.read_state().status == "running" and folder.read_driver_record()["pid"] == os.getpid()
        driver.loop()
        driver.finish()
    finally:
        driver.executor.abort()
    state = folder.read_state()
    assert state.status == "completed" and state.succeeded
    by_rate = {c.params["learning_rate"]: c for c in state.children}  # the grid is shuffled (seed 0)
    done, best, early, died = (by_rate[rate] for rate in (0.01, 0.02, 0.03, 0.04))
    assert [c.status for c in (done, best, early, died)] == ["completed", "completed", "failed", "failed"]
    assert (done.metric_history, done.best_value) == ([[1, 0.4], [2, 0.6]], 0.6)
    assert done.intermediate_values == [[1, "accuracy", 0.4], [1, "train_loss", 1.0], [2, "accuracy", 0.6],
                                        [2, "train_loss", 0.5]]
    assert state.best_child == best.id and best.best_value == 0.7
    assert early.error.startswith("DataError: train.jsonl: no usable row") and early.run_id is None
    assert died.error.startswith("worker exited with code 3") and died.run_id
    assert ("end_run_record", died.run_id, "failed", "worker exited with code 3") in runs.calls
    assert runs.calls[-1] == ("end_parent", "completed", best.id)
    assert folder.read_driver_record()["ended"]
    _, alive = psutil.wait_procs(children_of_this_process(), timeout=10)
    assert not alive


def test_a_resumed_driver_counts_the_budget_its_predecessors_used(tmp_path):
    """The driver is the only writer of driver.json: it reads what earlier sessions used before writing its own
    record, whatever the launcher wrote meanwhile (launch.json)."""
    ws, folder = submitted(tmp_path, "0.05", iterations=1, timeout_minutes=10)
    folder.write_driver_record({"pid": 1, "started": 1_000.0, "heartbeat": 1_130.0, "previous_seconds": 50.0})
    folder.write_launch_record({**process_identity(os.getpid()), "time": time.time()})
    from jupyter_avml.sweep.state import ExperimentState

    folder.write_state(ExperimentState(name="exp", task="image-classification", primary_metric="accuracy",
                                       status="stopped"))
    clock = lambda: 10_000.0  # noqa: E731
    driver = Driver(ws, "exp", resume=True, executor_factory=fake_executor, runs=FakeRuns(), clock=clock)
    try:
        driver.setup()
        assert driver.previous_seconds == 180.0  # 50 s before, 130 s in the last session
        assert driver.scheduler.deadline == 10_000.0 + 600 - 180
        record = folder.read_driver_record()
        assert record["pid"] == os.getpid() and record["previous_seconds"] == 180.0
        folder.request_stop("enough")
        driver.loop()
        driver.finish()
    finally:
        driver.executor.abort()
    state = folder.read_state()
    assert (state.status, state.reason) == ("stopped", "enough") and not state.succeeded
