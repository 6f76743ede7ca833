"""The Ray executor on a real local cluster (the README's two nodes on 127.0.0.1, ``conftest.ray_cluster``).

The executor tests run stand-in tasks (``fake_tasks.py``: the child protocol, no training) in this process's
Ray driver; the sweep tests run whole experiments through their background driver: the README's example, and
real children with a node killed mid-sweep, a stop and a resume.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from jupyter_avml.runs.events import RunFinished, RunStarted
from jupyter_avml.sweep.executor import Assignment, ChildEvents, ChildExited, RunAssigned
from jupyter_avml.sweep.folder import ExperimentFolder, process_identity
from jupyter_avml.workspace import Workspace

WAIT = 120  # seconds for anything the cluster does (a shared, loaded machine)


def wait_until(predicate, timeout: float = WAIT, what: str = "condition", poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def ray_setting(ray_cluster, tmp_path):
    """A workspace, an experiment folder with a driver record, and a parsed ``executor: ray`` experiment."""

    ws = Workspace.resolve(tmp_path / "ws")
    folder = ExperimentFolder.of(ws.root, "exp")
    folder.path.mkdir(parents=True)
    folder.write_driver_record({**process_identity(os.getpid()), "started": time.time()})
    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    spec = {"task": "image-classification", "training_data": str(data), "device": "cpu", "executor": "ray",
            "ray_address": ray_cluster.address, "tracking_uri": "http://127.0.0.1:9/unused",
            "max_concurrent_iterations": 2}
    return ws, folder, spec


def make_executor(ws, folder, spec, **settings):
    from jupyter_avml.sweep.config import parse_experiment
    from jupyter_avml.sweep.ray_executor import RayExecutor, plan_ray_slots

    experiment = parse_experiment({**spec, **settings})
    executor = RayExecutor(folder, ws, experiment, plan_ray_slots(experiment))
    import ray

    from tests.scale.fake_tasks import play

    executor.task = ray.remote(play)
    return executor


def assignment(ws, folder, child: int, behaviour: str) -> Assignment:
    return Assignment(child=child, experiment="exp", workspace=str(ws.root), folder=str(folder.path),
                      run_name=f"exp-child-{child}", config={"behaviour": behaviour})


def collect(executor, until, what: str) -> list:
    """Poll the executor until ``until(reports so far)``; returns the reports."""
    reports: list = []

    def done():
        reports.extend(executor.poll())
        return until(reports)

    wait_until(done, what=what)
    return reports


def exits(reports) -> dict:
    return {r.child: r for r in reports if isinstance(r, ChildExited)}


def events_of(reports, child: int) -> list:
    return [e for r in reports if isinstance(r, ChildEvents) and r.child == child for e in r.events]


def test_dead_workers_stops_and_kills(ray_setting):
    """A dead Ray worker fails only its child (``child_retries: 0``) or runs it once more, resuming its run
    (``child_retries: 1``); a stop order ends a run as asked; ``kill`` cancels the task."""
    ws, folder, spec = ray_setting
    executor = make_executor(ws, folder, spec)
    try:
        assert [s.kind for s in executor.slots] == ["cpu", "cpu"]  # one child per one-CPU node
        slots = executor.free_slots()  # also the storage probe on both nodes: it passes
        for child, slot in enumerate(slots):
            executor.submit(assignment(ws, folder, child, "hold"), slot)
        reports = collect(executor, lambda r: {0, 1} <= {x.child for x in r if isinstance(x, RunAssigned)},
                          "both children's runs")
        pid = folder.read_child_info(0)["pid"]
        assert pid != folder.read_child_info(1)["pid"]
        os.kill(pid, signal.SIGKILL)
        reports += collect(executor, lambda r: 0 in exits(r), "child 0's end")
        lost = exits(reports)[0]
        assert lost.what.startswith("its Ray worker process died") and lost.error.startswith(lost.what)
        assert 1 not in exits(reports)

        executor.request_stop(1, "early_terminated", "bandit policy")
        reports += collect(executor, lambda r: any(isinstance(e, RunFinished) for e in events_of(r, 1)),
                           "child 1's run end")
        finished = [e for e in events_of(reports, 1) if isinstance(e, RunFinished)][0]
        assert (finished.status, finished.reason) == ("early_terminated", "bandit policy")
        executor.release(1)
        assert len(executor.free_slots()) == 2
        wait_until(lambda: (executor.poll() or True) and not executor.finishing, what="child 1's task to end")

        executor.retries = 1  # as child_retries: 1 sets it
        first, second = executor.free_slots()
        executor.submit(assignment(ws, folder, 2, "hold"), first)
        executor.submit(assignment(ws, folder, 3, "hold"), second)
        collect(executor, lambda r: {2, 3} <= {x.child for x in r if isinstance(x, RunAssigned)}, "the runs")
        retried = executor.active[2]
        os.kill(folder.read_child_info(2)["pid"], signal.SIGKILL)
        # run once more, resuming its run: the same run id, a second RunStarted, then its end
        reports = collect(executor, lambda r: any(isinstance(e, RunFinished) for e in events_of(r, 2)),
                          "child 2's resumed run to end")
        assert [x.run_id for x in reports if isinstance(x, RunAssigned) and x.child == 2] == ["run2"]
        assert [type(e) for e in events_of(reports, 2)] == [RunStarted, RunFinished]
        # its second task ends after its run did (not released here): not a loss, nothing more to report
        reports += collect(executor, lambda r: 2 not in executor.active, "child 2's second task to end")
        assert retried.attempts == 2 and 2 not in exits(reports)

        executor.kill(3)
        reports = collect(executor, lambda r: 3 in exits(r), "child 3's task to be cancelled")
        assert exits(reports)[3].what == "Ray task cancelled (killed)"
    finally:
        executor.abort()


def test_a_node_that_does_not_share_the_storage_is_named(ray_setting, ray_cluster):
    from jupyter_avml.sweep.ray_executor import RayClusterError, check_cluster_storage, connect, storage_probe

    ws, folder, _ = ray_setting
    connect(ray_cluster.address)
    probe = storage_probe(folder, ws, type("Spec", (), {"fixed": {"tracking_uri": "http://127.0.0.1:9/x"}})())
    assert check_cluster_storage(probe, str(ws.root)) == 2
    # Each machine has its own folder at that path: the node reads another driver's record there.
    with pytest.raises(RayClusterError) as caught:
        check_cluster_storage({**probe, "driver": {**probe["driver"], "pid": 1}}, str(ws.root))
    message = str(caught.value)
    assert message.count("Ray node 127.0.0.1") == 2 and "another folder than the driver's" in message
    assert str(folder.path) in message and "shared storage mounted at the same path on every node" in message
    with pytest.raises(RayClusterError, match="missing.db does not exist there"):
        check_cluster_storage({**probe, "paths": [str(ws.root / "missing.db")]}, str(ws.root))


# -- a whole sweep through its background driver ------------------------------------------------------------
SMALL = dict(task="image-classification", model_name="resnet18", pretrained=0, train_crop_size=32,
             valid_resize_size=32, valid_crop_size=32, training_batch_size=16, validation_batch_size=32,
             early_stopping=0, optimizer="sgd", log_every_n_batches=1)


@pytest.fixture(scope="module")
def sweep_data(tmp_path_factory):
    from jupyter_avml.data.shapes import make_shapes

    return make_shapes(tmp_path_factory.mktemp("ray-data"), "image-classification", n=40, size=32, seed=3,
                       color_by_class=True)


def fresh_workspace(root, empty_tracking_db):
    """A workspace with an empty tracking store (its schema made once per session: MLflow's migrations take
    seconds)."""
    import shutil

    root.mkdir(parents=True)
    shutil.copyfile(empty_tracking_db, root / "mlflow.db")
    return root


@pytest.mark.slow(seconds=30)
def test_the_readme_sweep_runs_on_the_cluster(ray_cluster, sweep_data, tmp_path, monkeypatch, empty_tracking_db):
    """The README's ``%%avml`` cell, as written, in an IPython shell: both children on the cluster."""
    import shutil

    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from tests.scale.conftest import scaling_out_cells

    cell = scaling_out_cells()[1]
    assert cell.startswith("%%avml") and "executor: ray" in cell
    (tmp_path / "data").mkdir()
    for item in sweep_data.parent.iterdir():  # the quick start's data/ folder
        (shutil.copytree if item.is_dir() else shutil.copy)(item, tmp_path / "data" / item.name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AVML_WORKSPACE", str(fresh_workspace(tmp_path / "ws", empty_tracking_db)))
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)  # as the README's first cell sets it
    shell = InteractiveShell.instance()
    try:
        shell.run_cell("%load_ext jupyter_avml", store_history=False)
        with capture_output() as captured:
            result = shell.run_cell(cell, store_history=False)
        assert result.success, f"{captured.stdout}\n{captured.stderr}\n{result.error_in_exec}"
        sweep = shell.user_ns["ray_sweep"]
        assert sweep.state.status == "completed" and len(sweep.state.children) == 2
        nodes = {child_info_node(sweep, child.id) for child in sweep.state.children}
        assert len(nodes) == 2, nodes  # one child per node: both ran at once
    finally:
        from tests.sweep.test_experiment import kill_leftovers

        shell.run_line_magic("unload_ext", "jupyter_avml")  # through IPython, so that the next load_ext loads
        kill_leftovers(tmp_path / "ws")


def child_info_node(handle, child_id: int) -> str:
    from tests.sweep.test_experiment import child_info

    return child_info(handle, child_id)["node_id"]


@pytest.mark.slow(seconds=55)
def test_sweep_over_two_nodes_survives_a_dead_node_then_stops_and_resumes(ray_cluster, sweep_data, tmp_path,
                                                                          empty_tracking_db):
    """4 children over the 2 nodes; the node running one dies mid-run (it resumes on the other node from its
    epoch checkpoint: child_retries 1); a stop ends the running children and their Ray tasks; a resumed
    driver joins the cluster again and finishes the sweep."""
    import ray

    from jupyter_avml.runs.events import read_events
    from jupyter_avml.sweep import Experiment
    from jupyter_avml.sweep.state import read_state
    from tests.sweep.test_experiment import child_info, kill_leftovers, wait_for

    ws = fresh_workspace(tmp_path / "ws", empty_tracking_db)
    config = {**SMALL, "training_data": str(sweep_data), "number_of_epochs": 4, "sampling": "random",
              "iterations": 4, "seed": 2, "search_space": {"learning_rate": "uniform(0.01, 0.05)"},
              "executor": "ray", "ray_address": ray_cluster.address, "child_retries": 1}
    handle = Experiment("on-ray", ws).submit(config)
    try:
        node = ray_cluster.workers[0]

        def child_on_node_past_epoch_1():
            for child in read_state(handle.folder).children:
                info = child_info(handle, child.id)
                if info.get("node_id") == node.node_id and child.status == "running" and child.epoch >= 1:
                    return child
            return None

        victim = wait_for(child_on_node_past_epoch_1, timeout=WAIT, what="a child past epoch 1 on the worker node",
                          handle=handle)
        ray_cluster.kill_node(node)
        events_file = ws / "runs" / victim.run_id / "events.jsonl"

        def resumed_on_other_node():
            starts = [e for e in read_events(events_file)[0] if isinstance(e, RunStarted)]
            return len(starts) == 2 and starts[1]

        restart = wait_for(resumed_on_other_node, timeout=WAIT, what="the child to resume elsewhere", handle=handle)
        assert restart.resumed_from_epoch >= 1
        assert child_info(handle, victim.id)["node_id"] != node.node_id
        assert handle.stop("stopped by the test")
        state = handle.wait(timeout=WAIT)
        assert state.status == "stopped" and "stopped" in [c.status for c in state.children]
        stopped_before = {c.id: c for c in state.children}
        wait_until(lambda: not handle.driver_alive, what="the driver to exit")
        # the stopped children's Ray tasks ended: the cluster's CPU is free again
        from jupyter_avml.sweep.ray_executor import connect

        connect(ray_cluster.address)
        wait_until(lambda: ray.available_resources().get("CPU", 0) == ray.cluster_resources().get("CPU"),
                   what="the cluster's CPUs to be free")

        handle.resume()
        # (until the new driver writes its first state, state.json still says stopped: wait() would return)
        wait_until(lambda: read_state(handle.folder).status == "running" or not handle.driver_alive,
                   what="the resumed driver to start")
        state = handle.wait(timeout=WAIT)
        assert state.status == "completed" and len(state.children) == 4
        assert all(c.status in ("completed", "stopped") and not c.error for c in state.children), state.children
        for child_id, before in stopped_before.items():  # finished children are kept as they were
            assert (state.child(child_id).status, state.child(child_id).run_id) == (before.status, before.run_id)
        assert state.child(victim.id).run_id == victim.run_id
        log = (handle.folder / "driver.log").read_text()
        assert log.count("joined the Ray cluster") == 2 and "running it again (child_retries: 1)" in log
    finally:
        kill_leftovers(ws)
