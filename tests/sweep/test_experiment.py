"""Experiments end to end: background driver, warm workers, policy, state.json vs MLflow, best child, registry.

The sweeps train tiny children (resnet18, 32 px, 60-90 generated images, one CPU thread each). Helpers here are
shared with ``test_faults.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from jupyter_avml.data.shapes import make_shapes
from jupyter_avml.errors import AvmlError, ConfigError, NotFoundError
from jupyter_avml.runs.events import EpochMetrics, read_events
from jupyter_avml.sweep import Experiment, ExperimentHandle, attach, list_experiments
from jupyter_avml.sweep.experiment import default_experiment_name
from jupyter_avml.sweep.state import CHILD_TERMINAL, read_state

SMALL = dict(task="image-classification", model_name="resnet18", pretrained=0, train_crop_size=32,
             valid_resize_size=32, valid_crop_size=32, training_batch_size=16, validation_batch_size=32,
             device="cpu", cpu_threads=1, early_stopping=0, optimizer="sgd", log_every_n_batches=1)
WAIT = 900  # seconds: generous, the machine is shared


# -- helpers shared with test_faults.py ---------------------------------------------------------------------
def sweep_processes(workspace: Path) -> list:
    """Drivers and workers of experiments in ``workspace`` (processes the tests started)."""
    import psutil

    out = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if "jupyter_avml.sweep." in cmdline and str(workspace) in cmdline:
            out.append(proc)
    return out


def kill_leftovers(workspace: Path) -> None:
    """Stop every experiment of ``workspace`` and kill, by pid, whatever process of it remains."""
    import psutil

    for state in list_experiments(workspace):
        handle = ExperimentHandle(state.name, workspace)
        if handle.driver_alive:
            handle.stop("test cleanup")
            try:
                handle.wait(timeout=60)
            except Exception:  # noqa: BLE001 - killed below
                pass
    for proc in sweep_processes(workspace):
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(sweep_processes(workspace), timeout=10)


def avml(argv: list[str]) -> int:
    """The sweep verbs of the CLI, through the same ``register(subparsers)`` that ``avml`` uses."""
    import argparse

    from jupyter_avml.cli import sweep as sweep_verbs

    parser = argparse.ArgumentParser(prog="avml")
    parser.add_argument("--workspace", default=None)
    sweep_verbs.register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def assert_no_processes(workspace: Path) -> None:
    """The driver and its workers exit once the experiment is over."""
    import psutil

    _, alive = psutil.wait_procs(sweep_processes(workspace), timeout=30)
    assert not alive, [" ".join(p.cmdline()) for p in alive]


def wait_for(predicate, timeout: float = WAIT, poll: float = 0.2, what: str = "condition", handle=None):
    """Poll ``predicate`` until it returns something true; fail when ``handle``'s experiment ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if handle is not None and read_state(handle.folder).finished:
            state = read_state(handle.folder)
            raise AssertionError(f"experiment {state.name} ended {state.status} before {what}: "
                                 f"{[(c.id, c.status, c.epoch) for c in state.children]}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def child_info(handle, child_id: int) -> dict:
    try:
        return json.loads((handle.folder / "children" / f"{child_id}.json").read_text())
    except (OSError, ValueError):
        return {}


def state_of(handle, child_id: int):
    state = read_state(handle.folder)
    try:
        return state.child(child_id)
    except KeyError:
        return None


@pytest.fixture(scope="module")
def sweep_data(tmp_path_factory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("sweep-data"), "image-classification", n=72, size=32, seed=3,
                       color_by_class=True)


@pytest.fixture(scope="module")
def sweep_ws(module_tmp) -> Path:
    """One workspace per module, so the tracking store is created once."""
    root = module_tmp / "ws"
    yield root
    kill_leftovers(root)


@pytest.fixture(autouse=True)
def _cleanup(request):
    yield
    if "sweep_ws" in request.fixturenames:
        kill_leftovers(request.getfixturevalue("sweep_ws"))


# -- without processes ----------------------------------------------------------------------------------------
def test_names_and_lookups(tmp_path, sweep_data):
    ws = tmp_path / "ws"
    with pytest.raises(ConfigError, match="experiment name must be"):
        Experiment("no spaces", ws)
    with pytest.raises(NotFoundError, match=r"no experiment 'nope' .* \(experiments: none\)"):
        attach("nope", ws)
    assert list_experiments(ws) == []
    assert default_experiment_name("configs/my sweep.yaml", ws) == "my-sweep-1"
    (ws / "experiments" / "my-sweep-1").mkdir(parents=True)
    assert default_experiment_name("configs/my sweep.yaml", ws) == "my-sweep-2"
    # a bad configuration is refused before anything is written or started
    with pytest.raises(ConfigError, match="unknown setting 'learning_rat'"):
        Experiment("bad", ws).submit({**SMALL, "training_data": str(sweep_data), "learning_rat": 0.1})
    assert not (ws / "experiments" / "bad").exists()


# -- end to end -----------------------------------------------------------------------------------------------
@pytest.mark.slow(seconds=40)
def test_sweep_end_to_end(sweep_data, sweep_ws, monkeypatch, capsys):
    from mlflow import MlflowClient

    config = {**SMALL, "training_data": str(sweep_data), "number_of_epochs": 2, "sampling": "grid",
              "iterations": 5, "max_concurrent_iterations": 2, "cpu_slots": 2,
              "early_termination_policy": {"type": "bandit", "slack_factor": 0.5},
              # the second sub-space is refused by validation (resnet18 has 5 layer groups): an "invalid" child.
              # (A range entirely outside its parameter's, e.g. learning_rate: choice(2.0), is refused at submit:
              # tests/hostile/test_sweeps.py.)
              "search_space": [{"learning_rate": "choice(0.05, 0.01)", "momentum": "choice(0.9, 0.0)"},
                               {"learning_rate": "choice(0.05)", "layers_to_freeze": "choice(9)"}]}
    started = time.monotonic()
    handle = Experiment("e2e", sweep_ws).submit(config)
    print(f"submit returned after {time.monotonic() - started:.2f} s")
    assert handle.driver_alive and handle.status in ("queued", "running")
    with pytest.raises(ConfigError, match="already exists"):
        Experiment("e2e", sweep_ws).submit(config)

    # Watch the state the way a dashboard does; note when each child's first epoch shows up in it.
    seen_epoch1: dict[int, float] = {}
    while True:
        state = handle.state
        now = time.time()
        for child in state.children:
            if child.epoch >= 1 and child.id not in seen_epoch1:
                seen_epoch1[child.id] = now
        if state.finished:
            break
        assert time.monotonic() - started < WAIT, "the sweep did not finish"
        time.sleep(0.1)
    assert state.status == "completed", (state.error, (handle.folder / "driver.log").read_text()[-3000:])

    # every child has a final status; exactly one invalid configuration, told as such
    assert len(state.children) == 5 and {c.id for c in state.children} == set(range(5))
    assert all(c.status in CHILD_TERMINAL for c in state.children)
    invalid = [c for c in state.children if c.status == "invalid"]
    assert len(invalid) == 1 and invalid[0].params == {"learning_rate": 0.05, "layers_to_freeze": 9}
    assert "layers_to_freeze must be in [1, 5]" in invalid[0].error and invalid[0].run_id is None
    trained = [c for c in state.children if c.status != "invalid"]
    assert {c.status for c in trained} <= {"completed", "early_terminated"}
    assert state.max_concurrent_iterations == 2 and state.early_termination_policy["type"] == "bandit"

    # watch latency: the state showed each first epoch soon after the child reported it (measured, not timed)
    latencies = []
    for child in trained:
        events, _ = read_events(sweep_ws / "runs" / child.run_id / "events.jsonl")
        epoch1 = next(e for e in events if isinstance(e, EpochMetrics) and e.epoch == 1)
        assert child.id in seen_epoch1
        latencies.append(seen_epoch1[child.id] - epoch1.time)
    print(f"state.json showed an epoch end {min(latencies):.2f}-{max(latencies):.2f} s after it happened")

    # state.json and MLflow agree: a parent and 4 children that name it
    client = MlflowClient(tracking_uri=f"sqlite:///{sweep_ws / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("e2e")
    runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {state.parent_run_id} | {c.run_id for c in trained}
    parent = runs[state.parent_run_id]
    assert parent.info.status == "FINISHED" and parent.data.tags["avml.status"] == "completed"
    for child in trained:
        run = runs[child.run_id]
        assert run.data.tags["mlflow.parentRunId"] == state.parent_run_id
        assert run.data.tags["avml.sweep"] == "e2e" and run.data.tags["avml.child"] == str(child.id)
        assert run.data.tags["avml.status"] == child.status
        assert run.info.status == {"completed": "FINISHED", "early_terminated": "KILLED"}[child.status]
        assert [m.value for m in client.get_metric_history(child.run_id, "accuracy")] == \
            [v for _, v in child.metric_history]
        run_json = json.loads((sweep_ws / "runs" / child.run_id / "run.json").read_text())
        assert run_json["status"] == child.status

    # the best child is the max of the children's best values, and the parent says so
    best = handle.get_best_child()
    top = max(trained, key=lambda c: (c.best_value, -c.id))
    assert (best.child_id, best.run_id, best.primary_metric_value) == (top.id, top.run_id, top.best_value)
    assert best.primary_metric == "accuracy" and best.model_name == "resnet18"
    assert best.metrics["accuracy"] == pytest.approx(best.primary_metric_value)
    assert Path(best.model_path).is_file() and best.params == top.params
    assert state.best_child == top.id
    assert parent.data.tags["avml.best_child_run_id"] == top.run_id
    assert float(parent.data.tags["avml.best_value"]) == pytest.approx(top.best_value)

    frame = handle.children
    assert list(frame["id"]) == [0, 1, 2, 3, 4]
    assert {"run_id", "model_name", "status", "learning_rate", "momentum", "best_value", "best_epoch", "epoch",
            "accuracy", "reason", "error"} <= set(frame.columns)
    row = frame.set_index("id").loc[top.id]
    assert row["accuracy"] == [v for _, v in top.metric_history] and row["best_value"] == top.best_value

    # registry: versions 1 (API) and 2 (CLI); load_model resolves models:/NAME/VERSION
    import jupyter_avml

    monkeypatch.setenv("AVML_WORKSPACE", str(sweep_ws))
    assert handle.register_model("shapes-best") == 1
    capsys.readouterr()
    assert avml(["register", "e2e", "shapes-best"]) == 0
    assert capsys.readouterr().out.strip() == "2"
    image = sorted((sweep_data.parent / "images").iterdir())[0]
    prediction = jupyter_avml.load_model("models:/shapes-best/1").predict(str(image))
    assert prediction["labels"] == ["circle", "square", "triangle"]
    assert sum(prediction["probs"]) == pytest.approx(1.0, abs=1e-5)

    # the CLI reads the same files
    assert avml(["status", "e2e", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "completed" and [c["status"] for c in shown["children"]] == \
        [c.status for c in state.children]
    assert avml(["best", "e2e", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == top.run_id
    assert avml(["--workspace", str(sweep_ws), "status"]) == 0
    assert "e2e" in capsys.readouterr().out
    assert avml(["--workspace", str(sweep_ws), "stop", "e2e"]) == 0
    assert capsys.readouterr().out.strip() == "experiment e2e has already ended (completed)"
    from jupyter_avml.cli.sweep import follow, summary

    assert follow(handle).status == "completed"
    board = capsys.readouterr().out
    assert board.startswith("experiment e2e: completed (") and "1 invalid; 5 iterations" in board.splitlines()[0]
    assert f" *{top.id:>4}  {top.status}" in board  # the best child is marked
    assert summary(handle)["best"]["run_id"] == top.run_id
    with pytest.raises(AvmlError, match="is completed: nothing to resume"):
        handle.resume()
    with pytest.raises(NotFoundError, match=r"\(experiments: e2e\)"):
        attach("e2e-typo", sweep_ws)
    assert_no_processes(sweep_ws)


@pytest.mark.slow(seconds=60)
def test_stop_one_child_then_the_budget_runs_out(sweep_data, sweep_ws):
    """stop_child stops one child cleanly; at the deadline the others stop cleanly and the best is reported."""
    config = {**SMALL, "training_data": str(sweep_data), "number_of_epochs": 200, "sampling": "random",
              "iterations": 3, "max_concurrent_iterations": 2, "cpu_slots": 2, "timeout_minutes": 1,
              "search_space": {"learning_rate": "uniform(0.01, 0.05)"}}
    handle = Experiment("budget", sweep_ws).submit(config)
    wait_for(lambda: (c := state_of(handle, 0)) is not None and c.epoch >= 1, what="child 0's first epoch",
             handle=handle)
    assert avml(["--workspace", str(sweep_ws), "stop", "budget", "--child", "0"]) == 0
    child0 = wait_for(lambda: (c := state_of(handle, 0)).finished and c, what="child 0 to stop", handle=handle)
    assert (child0.status, child0.reason) == ("stopped", "stopped by user") and child0.best_value is not None
    # its slot goes to the third child while child 1 keeps training
    wait_for(lambda: (c := state_of(handle, 2)) is not None and c.status == "running", what="child 2 to start",
             handle=handle)
    assert state_of(handle, 1).status == "running"

    state = handle.wait(timeout=WAIT)
    assert state.status == "timed_out" and state.reason.startswith("experiment timeout")
    assert [c.status for c in state.children] == ["stopped", "stopped", "stopped"]
    assert [c.reason for c in state.children] == ["stopped by user", "experiment timeout", "experiment timeout"]
    assert all(c.epoch < 200 and c.model_path for c in state.children)
    assert state.ended - state.started < 1 * 60 + 300
    best = handle.get_best_child()  # stopped children keep their best model
    assert best.primary_metric_value == max(c.best_value for c in state.children if c.best_value is not None)
    for child in state.children:
        run_json = json.loads((sweep_ws / "runs" / child.run_id / "run.json").read_text())
        assert (run_json["status"], run_json["reason"]) == ("stopped", child.reason)


@pytest.mark.parametrize("sampling", ["grid", "random", "bayesian"])
def test_resume_continues_the_sampler(tmp_path, sweep_data, sampling):
    """What a resumed driver re-runs and asks next (no processes: the scheduler's bookkeeping alone)."""
    from jupyter_avml.sweep.config import parse_experiment
    from jupyter_avml.sweep.sampling import make_sampler
    from jupyter_avml.sweep.scheduler import Scheduler
    from jupyter_avml.sweep.state import ExperimentState, read_state, write_state

    spec = parse_experiment({**SMALL, "training_data": str(sweep_data), "sampling": sampling, "iterations": 6,
                             "search_space": {"learning_rate": "choice(0.01, 0.02, 0.03, 0.04, 0.05, 0.06)",
                                              "momentum": "choice(0.5, 0.9)"}})
    folder = tmp_path / "ws" / "experiments" / "resumed"

    def scheduler(resume: bool, state: ExperimentState) -> Scheduler:
        made = Scheduler(spec, state, make_sampler(spec.sampling, spec.space, seed=spec.seed))
        made.begin(resume=resume, concurrency=2)
        return made

    first = scheduler(False, ExperimentState(name="resumed", task=spec.task, primary_metric=spec.primary_metric))
    children = [first.next_child() for _ in range(3)]
    first.dispatched(children[0], resume_run=None)
    first.on_epoch(children[0].id, 1, {"accuracy": 0.5}, 0.5)
    first.close_child(children[0], "completed")           # finished: kept
    first.dispatched(children[1], resume_run=None)
    first.on_run_id(children[1].id, "run-1")              # interrupted: runs again
    # children[2] was asked but never started (queued)
    write_state(folder, first.state)
    del first  # the driver is gone (SIGKILL)

    second = scheduler(True, read_state(folder))
    assert second.pending == [1, 2] and all(second.state.child(i).status == "queued" for i in (1, 2))
    assert second.state.child(0).status == "completed" and second.state.child(1).run_id == "run-1"
    assert [second.next_child().id for _ in range(2)] == [1, 2]  # the unfinished ones first, same params
    fresh = [second.next_child() for _ in range(3)]
    assert [c.id for c in fresh] == [3, 4, 5]  # numbering goes on
    seen = [tuple(sorted(c.params.items())) for c in second.state.children]
    if sampling == "grid":  # a grid never repeats a combination, across the resume too
        assert len(set(seen)) == len(seen)
    if sampling in ("grid", "random"):  # the same deterministic sequence as an uninterrupted sweep
        reference = scheduler(False, ExperimentState(name="x", task=spec.task, primary_metric=spec.primary_metric))
        assert [reference.next_child().params for _ in range(6)] == [c.params for c in second.state.children]
    else:
        study = second.sampler.study  # the study behind the last proposal, rebuilt from the recorded children
        assert len(study.trials) == 6 and study.trials[0].state.name == "COMPLETE"
