"""Faults: a killed worker fails only its child; a killed driver takes its workers along and the sweep resumes;
a stop request ends everything cleanly."""

from __future__ import annotations

import json
import os
import signal

import psutil
import pytest

from jupyter_avml.errors import AvmlError
from jupyter_avml.runs.events import RunStarted, read_events
from jupyter_avml.sweep import Experiment, attach
from jupyter_avml.sweep.sampling import make_sampler
from tests.sweep.test_experiment import (
    SMALL,
    WAIT,
    assert_no_processes,
    avml,
    child_info,
    kill_leftovers,
    state_of,
    sweep_processes,
    wait_for,
)


@pytest.fixture(scope="module")
def sweep_data(tmp_path_factory):
    from jupyter_avml.data.shapes import make_shapes

    return make_shapes(tmp_path_factory.mktemp("faults-data"), "image-classification", n=60, size=32, seed=4,
                       color_by_class=True)


@pytest.fixture(scope="module")
def sweep_ws(module_tmp):
    root = module_tmp / "ws"
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


@pytest.mark.slow(seconds=65)
def test_killed_worker_and_killed_driver(sweep_data, sweep_ws):
    """A killed worker fails only its child; a killed driver takes its workers along; resume finishes the sweep
    keeping the finished children and resuming the interrupted ones from their epoch checkpoints."""
    config = {**SMALL, "training_data": str(sweep_data), "number_of_epochs": 3, "sampling": "random",
              "iterations": 5, "max_concurrent_iterations": 2, "cpu_slots": 2, "seed": 5,
              "search_space": {"learning_rate": "uniform(0.01, 0.05)"}}
    handle = Experiment("faults", sweep_ws).submit(config)

    # 1. SIGKILL the worker of child 0: that child fails with the reason, the sweep goes on
    info = wait_for(lambda: child_info(handle, 0).get("run_id") and child_info(handle, 0), what="child 0's run id",
                    handle=handle)
    os.kill(info["pid"], signal.SIGKILL)
    child0 = wait_for(lambda: (c := state_of(handle, 0)).finished and c, what="child 0 to be failed", handle=handle)
    assert child0.status == "failed" and child0.run_id == info["run_id"]
    assert child0.error.startswith("worker killed by signal 9 (SIGKILL)")
    runs = mlflow_runs(sweep_ws, "faults")
    assert runs[child0.run_id].info.status == "FAILED" and runs[child0.run_id].data.tags["avml.status"] == "failed"
    assert "SIGKILL" in runs[child0.run_id].data.tags["avml.error"]
    run_json = json.loads((sweep_ws / "runs" / child0.run_id / "run.json").read_text())
    assert run_json["status"] == "failed" and "SIGKILL" in run_json["error"]

    # 2. SIGKILL the driver once child 1 completed while another child is past an epoch (it has a checkpoint)
    def interrupted_point():
        state = handle.state
        done = [c for c in state.children if c.status == "completed"]
        busy = [c for c in state.children if c.status == "running" and c.epoch >= 1]
        return bool(done and busy) and state

    before = wait_for(interrupted_point, what="a completed child and a child past its first epoch",
                      handle=handle)
    driver_pid = json.loads((handle.folder / "driver.json").read_text())["pid"]
    workers = [p for p in sweep_processes(sweep_ws) if p.pid != driver_pid]
    assert workers, "workers run the children"
    os.kill(driver_pid, signal.SIGKILL)
    # the workers (running ones and warm spares) die with their driver: PR_SET_PDEATHSIG and a watchdog
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, [p.pid for p in alive]
    wait_for(lambda: not handle.driver_alive, timeout=30, what="the driver to be seen dead")
    assert handle.status == "interrupted"
    with pytest.raises(AvmlError, match="resume it"):
        handle.wait(timeout=5)

    attach("faults", sweep_ws).resume()
    with pytest.raises(AvmlError, match="is running"):
        handle.resume()
    state = handle.wait(timeout=WAIT)
    assert state.status == "completed"
    assert [c.status for c in state.children] == ["failed"] + ["completed"] * 4
    # finished children are kept as they were
    for kept in before.children:
        if kept.finished:
            now = state.child(kept.id)
            assert (now.status, now.run_id, now.ended, now.params) == \
                (kept.status, kept.run_id, kept.ended, kept.params)
    # an interrupted child past its first epoch went on in the same run, from its checkpoint
    resumed = [c for c in before.children if c.status == "running" and c.epoch >= 1]
    for old in resumed:
        child = state.child(old.id)
        assert child.run_id == old.run_id and child.params == old.params
        events, _ = read_events(sweep_ws / "runs" / child.run_id / "events.jsonl")
        starts = [e.resumed_from_epoch for e in events if isinstance(e, RunStarted)]
        assert len(starts) == 2 and starts[1] >= 1, starts
        assert [e for e, _ in child.metric_history] == [1, 2, 3]
    # the random sequence was regenerated and continued after the resume, not restarted
    assert len(before.children) < 5
    sampler = make_sampler("random", config["search_space"], seed=5)
    assert [c.params for c in state.children] == [sampler.ask().params for _ in range(5)]
    runs = mlflow_runs(sweep_ws, "faults")
    assert {state.parent_run_id} | {c.run_id for c in state.children} <= set(runs)
    assert [r.info.status for r in runs.values()].count("RUNNING") == 0
    assert runs[state.parent_run_id].info.status == "FINISHED"
    assert_no_processes(sweep_ws)


@pytest.mark.slow(seconds=20)
def test_stop_ends_every_child_cleanly(sweep_data, sweep_ws, tmp_path, capsys):
    """Submitted and stopped through the CLI: ``avml sweep FILE --detach --json``, ``avml stop NAME``."""
    import yaml

    config = {**SMALL, "training_data": str(sweep_data), "number_of_epochs": 200, "sampling": "grid",
              "iterations": 3, "max_concurrent_iterations": 2, "cpu_slots": 2,
              "search_space": {"learning_rate": "choice(0.01, 0.02, 0.03)"}}
    path = tmp_path / "stop all.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert avml(["--workspace", str(sweep_ws), "sweep", str(path), "--detach", "--json"]) == 0
    submitted = json.loads(capsys.readouterr().out)
    assert (submitted["name"], submitted["children"], submitted["best"]) == ("stop-all-1", [], None)
    handle = attach("stop-all-1", sweep_ws)
    wait_for(lambda: all(child_info(handle, i).get("run_id") for i in (0, 1)), what="two children running",
             handle=handle)
    assert avml(["--workspace", str(sweep_ws), "stop", "stop-all-1", "--reason", "enough"]) == 0
    state = handle.wait(timeout=WAIT)
    assert (state.status, state.reason) == ("stopped", "enough")
    # the running children stopped cleanly; the third was never started
    assert [(c.status, c.reason) for c in state.children] == [("stopped", "enough"), ("stopped", "enough")]
    runs = mlflow_runs(sweep_ws, "stop-all-1")
    assert runs[state.parent_run_id].info.status == "KILLED"
    for child in state.children:
        assert runs[child.run_id].info.status == "KILLED" and runs[child.run_id].data.tags["avml.status"] == "stopped"
    assert_no_processes(sweep_ws)
