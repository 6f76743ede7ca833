"""Faults: a killed worker fails only its child; a killed driver takes its workers along and the sweep resumes;
a stop request ends everything cleanly."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from jupyter_avml.errors import AvmlError
from jupyter_avml.sweep import Experiment, attach
from jupyter_avml.training.events import RunStarted, read_events
from tests.sweep.test_experiment import (SMALL, WAIT, assert_no_processes, child_info, kill_leftovers, state_of, sweep_processes,
                                         wait_for)


@pytest.fixture(scope="module")
def sweep_data(tmp_path_factory):
    from jupyter_avml.data.shapes import make_shapes

    return make_shapes(tmp_path_factory.mktemp("faults-data"), "image-classification", n=60, size=32, seed=4,
                       color_by_class=True)


@pytest.fixture(scope="module")
def sweep_ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults-ws") / "ws"
    yield root
    kill_leftovers(root)


@pytest.fixture(autouse=True)
def _cleanup(sweep_ws):
    yield
    kill_leftovers(sweep_ws)


def mlflow_runs(workspace, experiment: str) -> dict:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    return {r.info.run_id: r for r in client.search_runs([found.experiment_id])}


@pytest.mark.slow
def test_a_killed_worker_fails_only_its_child(sweep_data, sweep_ws):
    config = {**SMALL, "training_data": str(sweep_data), "number_of_epochs": 2, "sampling": "grid",
              "iterations": 3, "max_concurrent_iterations": 2, "cpu_slots": 2,
              "search_space": {"learning_rate": "choice(0.01, 0.02, 0.03)"}}
    handle = Experiment("kill-worker", sweep_ws).submit(config)
    info = wait_for(lambda: child_info(handle, 0).get("run_id") and child_info(handle, 0), what="child 0's run id")
    os.kill(info["pid"], signal.SIGKILL)

    state = handle.wait(timeout=WAIT)
    assert state.status == "completed"
    child0 = state.child(0)
    assert child0.status == "failed" and child0.run_id == info["run_id"]
    assert child0.error.startswith("worker killed by signal 9 (SIGKILL)")
    assert [c.status for c in state.children[1:]] == ["completed", "completed"]
    runs = mlflow_runs(sweep_ws, "kill-worker")
    assert runs[child0.run_id].info.status == "FAILED"
    assert runs[child0.run_id].data.tags["avml.status"] == "failed"
    assert "SIGKILL" in runs[child0.run_id].data.tags["avml.error"]
    run_json = json.loads((sweep_ws / "runs" / child0.run_id / "run.json").read_text())
    assert run_json["status"] == "failed" and "SIGKILL" in run_json["error"]
    assert all(r.info.status != "RUNNING" for r in runs.values())


@pytest.mark.slow
def test_a_killed_driver_takes_its_workers_and_resume_finishes(sweep_data, sweep_ws):
    config = {**SMALL, "training_data": str(sweep_data), "number_of_epochs": 3, "sampling": "random",
              "iterations": 3, "max_concurrent_iterations": 1, "cpu_slots": 1, "seed": 5,
              "search_space": {"learning_rate": "uniform(0.01, 0.05)"}}
    handle = Experiment("kill-driver", sweep_ws).submit(config)
    # child 0 finished, child 1 past its first epoch (it has an epoch checkpoint)
    wait_for(lambda: (c := state_of(handle, 1)) is not None and c.epoch >= 1, what="child 1's first epoch")
    before = handle.state
    assert before.child(0).status == "completed"
    driver_pid = json.loads((handle.folder / "driver.json").read_text())["pid"]
    workers = [p for p in sweep_processes(sweep_ws) if p.pid != driver_pid]
    assert workers, "a worker runs child 1"
    os.kill(driver_pid, signal.SIGKILL)
    # the workers die with their driver (PR_SET_PDEATHSIG, and a watchdog)
    gone, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, [p.pid for p in alive]
    wait_for(lambda: not handle.driver_alive, timeout=30, what="the driver to be seen dead")
    assert handle.status == "interrupted"
    with pytest.raises(AvmlError, match="resume it"):
        handle.wait(timeout=5)

    attach("kill-driver", sweep_ws).resume()
    with pytest.raises(AvmlError, match="is running"):
        handle.resume()
    state = handle.wait(timeout=WAIT)
    assert state.status == "completed"
    assert [c.status for c in state.children] == ["completed", "completed", "completed"]
    kept = before.child(0)
    assert (state.child(0).run_id, state.child(0).ended, state.child(0).params) == (kept.run_id, kept.ended, kept.params)
    child1 = state.child(1)
    assert child1.run_id == before.child(1).run_id and child1.params == before.child(1).params
    events, _ = read_events(sweep_ws / "runs" / child1.run_id / "events.jsonl")
    resumed = [e.resumed_from_epoch for e in events if isinstance(e, RunStarted)]
    assert len(resumed) == 2 and resumed[1] >= 1, resumed  # resumed from its epoch checkpoint
    assert [e for e, _ in child1.metric_history] == [1, 2, 3]
    # the random sequence was regenerated, not restarted: three distinct learning rates
    assert len({c.params["learning_rate"] for c in state.children}) == 3
    runs = mlflow_runs(sweep_ws, "kill-driver")
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs.values())


@pytest.mark.slow
def test_stop_ends_every_child_cleanly(sweep_data, sweep_ws):
    config = {**SMALL, "training_data": str(sweep_data), "number_of_epochs": 200, "sampling": "grid",
              "iterations": 3, "max_concurrent_iterations": 2, "cpu_slots": 2,
              "search_space": {"learning_rate": "choice(0.01, 0.02, 0.03)"}}
    handle = Experiment("stop-all", sweep_ws).submit(config)
    wait_for(lambda: all(child_info(handle, i).get("run_id") for i in (0, 1)), what="two children running")
    handle.stop("enough")
    state = handle.wait(timeout=WAIT)
    assert (state.status, state.reason) == ("stopped", "enough")
    # the running children stopped cleanly; the third was never started
    assert [(c.status, c.reason) for c in state.children] == [("stopped", "enough"), ("stopped", "enough")]
    runs = mlflow_runs(sweep_ws, "stop-all")
    assert runs[state.parent_run_id].info.status == "KILLED"
    for child in state.children:
        assert runs[child.run_id].info.status == "KILLED" and runs[child.run_id].data.tags["avml.status"] == "stopped"
    assert_no_processes(sweep_ws)
