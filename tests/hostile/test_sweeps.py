"""Hostile input to sweeps: damaged state files, hopeless search ranges, data that cannot train, dead drivers,
experiments where nothing trained. Each must end in one clear ``AvmlError`` (or an honest status), never a
traceback or a silent success; nothing is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from jupyter_avml.errors import AvmlError, ConfigError, DataError
from jupyter_avml.sweep import DamagedStateError, Experiment, ExperimentHandle, attach, list_experiments, resume_hint
from jupyter_avml.sweep.folder import ExperimentFolder, process_identity
from jupyter_avml.sweep.state import ChildState, ExperimentState

CLASSIFICATION = dict(task="image-classification", model_name="resnet18", device="cpu", iterations=2)


@pytest.fixture(autouse=True)
def _no_driver_left(tmp_path):
    """A test that submits by mistake (a check that did not refuse) must not leave a sweep running."""
    yield
    from tests.sweep.test_experiment import kill_leftovers

    if (tmp_path / "ws").is_dir():
        kill_leftovers(tmp_path / "ws")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from jupyter_avml.data.shapes import make_shapes

    return make_shapes(tmp_path_factory.mktemp("hostile-sweep-data"), "image-classification", n=12, size=32, seed=2)


def running_state(name: str) -> ExperimentState:
    return ExperimentState(name=name, task="image-classification", primary_metric="accuracy", status="running",
                           iterations=2, created=time.time(), started=time.time() - 60,
                           children=[ChildState(id=0, params={"learning_rate": 0.01}, status="completed",
                                                run_id="r0", best_value=0.5, started=time.time() - 60,
                                                ended=time.time() - 30),
                                     ChildState(id=1, params={"learning_rate": 0.02}, status="running", run_id="r1",
                                                started=time.time() - 30)])


# -- a damaged state.json -------------------------------------------------------------------------------------
DAMAGES = {"truncated": '{"name": "x", "children": [{"id": 0, ', "binary": b"\x00\xff\xfe\x80",
           "a list": "[]", "empty": "", "wrong fields": '{"name": 3, "task": [], "primary_metric": null}'}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_state_is_named_with_what_can_still_be_done_everywhere(tmp_path, damage):
    ws = tmp_path / "ws"
    good, bad = ExperimentFolder.of(ws, "good"), ExperimentFolder.of(ws, "bad")
    good.write_state(running_state("good").__class__(name="good", task="image-classification",
                                                     primary_metric="accuracy", status="completed", created=1.0))
    bad.write_state(running_state("bad"))
    content = DAMAGES[damage]
    bad.state_file.write_bytes(content if isinstance(content, bytes) else content.encode())
    handle = ExperimentHandle("bad", ws)
    calls = {"attach": lambda: attach("bad", ws), "state": lambda: handle.state, "status": lambda: handle.status,
             "best": handle.get_best_child, "stop": handle.stop, "resume": handle.resume,
             "stop_child": lambda: handle.stop_child(1), "wait": lambda: handle.wait(timeout=1),
             "succeeded": lambda: handle.succeeded}
    for what, call in calls.items():
        with pytest.raises(DamagedStateError) as info:
            call()
        message = str(info.value)
        assert isinstance(info.value, AvmlError), what
        assert message.startswith(f"{bad.state_file}") and "damaged" in message, (what, message)
        assert "experiment 'bad' cannot be shown" in message and str(ws / "runs") in message, (what, message)
        assert "`avml runs list`" in message, (what, message)
    assert "damaged" in repr(handle) and not bad.stop_file.exists()  # nothing was started or stopped
    # the workspace's list still shows it, marked, next to the others
    listed = {s.name: s for s in list_experiments(ws)}
    assert listed["bad"].status == "damaged" and str(bad.state_file) in listed["bad"].error
    assert listed["good"].status == "completed"
    assert {s.name: s.status for s in list_experiments(ws, observed=True)} == {"bad": "damaged", "good": "completed"}


def test_a_running_driver_can_still_be_stopped_and_repairs_the_damage(tmp_path, monkeypatch):
    """While its driver runs, a damaged state.json is rewritten at the next heartbeat; stop() works meanwhile."""
    import jupyter_avml.sweep.driver as driver_module
    from jupyter_avml.sweep.driver import Driver
    from tests.sweep.test_executor import FakeRuns, children_of_this_process, fake_executor, submitted

    monkeypatch.setattr(driver_module, "HEARTBEAT_SECONDS", 0.3)
    ws, folder = submitted(tmp_path, "0.05", iterations=1)  # a child that runs until it is stopped
    driver = Driver(ws, "exp", resume=False, executor_factory=fake_executor, runs=FakeRuns())
    driver.setup()
    loop = threading.Thread(target=driver.loop, daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 30
        while folder.read_state().children == [] or folder.read_state().children[0].epoch < 1:
            assert time.monotonic() < deadline, "the child never reported an epoch"
            time.sleep(0.05)
        folder.state_file.write_text("{garbage")
        with pytest.raises(DamagedStateError, match="its driver is running and rewrites the file at its next "
                                                    "change: try again in a moment"):
            attach("exp", ws)
        deadline = time.monotonic() + 10
        while True:
            try:
                repaired = folder.read_state()
                break
            except DamagedStateError:
                assert time.monotonic() < deadline, "the driver did not rewrite the damaged state"
                time.sleep(0.05)
        assert repaired.children[0].status == "running" and repaired.children[0].epoch == 1
        folder.state_file.write_text("{garbage")
        assert ExperimentHandle("exp", ws).stop("enough") is True  # the STOP file needs no state
        loop.join(timeout=30)
        assert not loop.is_alive()
        driver.finish()
    finally:
        driver.executor.abort()
    state = folder.read_state()
    assert (state.status, state.reason, state.children[0].status) == ("stopped", "enough", "stopped")
    import psutil

    psutil.wait_procs(children_of_this_process(), timeout=10)


# -- an experiment where nothing trained ----------------------------------------------------------------------
def test_an_experiment_where_every_child_failed_or_was_invalid_did_not_succeed(tmp_path):
    from jupyter_avml.sweep.driver import Driver
    from tests.sweep.test_executor import FakeRuns, fake_executor, submitted

    # 0.03: the worker fails before its run; 0.04: it dies mid-run; layers_to_freeze 9: refused (invalid)
    ws, folder = submitted(tmp_path, "0.03, 0.04", iterations=3)
    config = folder.config_file.read_text().replace("learning_rate: choice(0.03, 0.04)",
                                                    "learning_rate: choice(0.03, 0.04)\n  layers_to_freeze: "
                                                    "choice(1, 9)")
    folder.config_file.write_text(config)
    driver = Driver(ws, "exp", resume=False, executor_factory=fake_executor, runs=FakeRuns())
    try:
        assert driver.run() == 0
    finally:
        driver.executor.abort()
    handle = ExperimentHandle("exp", ws)
    state = handle.state
    assert state.status == "completed" and {c.status for c in state.children} == {"failed", "invalid"}
    assert state.succeeded is False and handle.succeeded is False
    with pytest.raises(AvmlError, match="has no child that finished with a model"):
        handle.get_best_child()
    # the same experiment with one good child succeeded; a running one has not (yet)
    state.children[0].status, state.children[0].best_value = "completed", 0.5
    assert state.succeeded
    state.status = "running"
    assert not state.succeeded


# -- search ranges no child can use ---------------------------------------------------------------------------
@pytest.mark.parametrize("space, needle", [
    ({"learning_rate": "uniform(2, 5)"},
     "learning_rate: uniform(2, 5) gives values in [2, 5], entirely outside what learning_rate takes "
     "(a float in [0, 1])"),
    ({"learning_rate": "choice(2.0, 3.0)"}, "every value of choice(2.0, 3.0) is outside what learning_rate takes"),
    ({"number_of_epochs": "uniform(1, 5)"}, "number_of_epochs takes a positive integer, but uniform(1, 5) gives "
                                            "fractions; use quniform(1, 5, 1)"),
    ({"momentum": "loguniform(1, 3)"}, "(the bounds of loguniform are exponents: value = exp(uniform(low, high)))"),
    ({"optimizer": "choice('lion')"}, "outside what optimizer takes (one of 'sgd', 'adam', 'adamw')"),
    ({"weight_decay": "normal(0.1, 0.01)", "warmup_cosine_lr_cycles": "quniform(1.5, 3, 0.5)"},
     "warmup_cosine_lr_cycles: quniform(1.5, 3, 0.5) gives values in [1.5, 3]"),
    ([{"learning_rate": "uniform(0.01, 0.05)"}, {"learning_rate": 2.0, "momentum": "choice(0.5, 0.9)"}],
     "every value of choice(2.0) is outside what learning_rate takes"),
], ids=["uniform", "choice", "integer", "loguniform", "categorical", "second key", "subspace"])
def test_a_search_range_no_child_can_use_is_refused_at_submit(tmp_path, shapes, space, needle):
    ws = tmp_path / "ws"
    with pytest.raises(ConfigError) as info:
        Experiment("hopeless", ws).submit({**CLASSIFICATION, "training_data": str(shapes), "search_space": space})
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert not (ws / "experiments" / "hopeless").exists()


def test_a_refused_range_in_a_yaml_file_names_its_line(tmp_path, shapes):
    from jupyter_avml.sweep.config import read_experiment

    path = tmp_path / "sweep.yaml"
    path.write_text(f"task: image-classification\ntraining_data: {shapes}\nmodel_name: resnet18\niterations: 2\n"
                    "search_space:\n  momentum: choice(0.5, 0.9)\n  learning_rate: uniform(2, 5)\n")
    with pytest.raises(ConfigError) as info:
        read_experiment(path)
    assert str(info.value).startswith(f"{path}:7: search_space: learning_rate: uniform(2, 5) gives values in [2, 5]")
    assert info.value.field == "search_space.learning_rate"


def test_a_range_partly_outside_is_accepted_and_only_its_outside_values_are_invalid(shapes):
    from jupyter_avml.sweep.config import parse_experiment

    spec = parse_experiment({**CLASSIFICATION, "training_data": str(shapes),
                             "search_space": {"learning_rate": "uniform(0.5, 2)", "momentum": "choice(0.5, 7)"}})
    with pytest.raises(ConfigError, match="learning_rate must be a float in"):
        spec.child_config({"learning_rate": 1.5, "momentum": 0.5})
    assert spec.child_config({"learning_rate": 0.7, "momentum": 0.5}).learning_rate == 0.7


# -- data that cannot train any child -------------------------------------------------------------------------
def test_data_that_does_not_fit_the_task_is_refused_at_submit(tmp_path, shapes):
    ws = tmp_path / "ws"
    config = {**CLASSIFICATION, "task": "image-object-detection", "model_name": "yolov5",
              "training_data": str(shapes), "search_space": {"learning_rate": "uniform(0.001, 0.01)"}}
    with pytest.raises(DataError) as info:
        Experiment("wrong-task", ws).submit(config)
    first = str(info.value).splitlines()[0]
    assert first == f"training_data: no row of {shapes} fits the task image-object-detection (is the task right?)"
    assert f"{shapes}:1: label: image-object-detection expects a list of boxes" in str(info.value)
    assert not (ws / "experiments" / "wrong-task").exists()


@pytest.mark.parametrize("content, needle", [
    ("", "has no rows"),
    ('{"image_url": "images/shape_00000.png", "label": "circle"}\nnot json at all\n',
     r"has 1 row\(s\) that do not fit the task image-classification \(set skip_invalid: 1"),
    ('{"image_url": "images/nowhere.png", "label": "circle"}\n{"image_url": "images/gone.png", "label": "square"}\n',
     r"none of the images .* names can be found(.|\n)*jsonl:1: image_url: no such file .*images/nowhere.png"),
])
def test_broken_data_is_refused_at_submit(tmp_path, shapes, content, needle):
    path = shapes.parent / f"broken-{abs(hash(content))}.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=needle):
        Experiment("broken", tmp_path / "ws").submit({**CLASSIFICATION, "training_data": str(path),
                                                      "search_space": {"learning_rate": "uniform(0.01, 0.1)"}})
    assert not (tmp_path / "ws" / "experiments" / "broken").exists()


def test_validation_data_with_classes_training_never_saw_is_refused_at_submit(tmp_path, shapes):
    valid = shapes.parent / "valid-unknown.jsonl"
    first = shapes.read_text().splitlines()[0]
    valid.write_text(first.replace('"label":"', '"label":"hexagon-') + "\n")
    with pytest.raises(DataError, match="validation_data: no row of"):
        Experiment("classes", tmp_path / "ws").submit({**CLASSIFICATION, "training_data": str(shapes),
                                                       "validation_data": str(valid),
                                                       "search_space": {"learning_rate": "uniform(0.01, 0.1)"}})


def test_an_unknown_registered_dataset_is_refused_at_submit(tmp_path):
    from jupyter_avml.errors import NotFoundError

    with pytest.raises(NotFoundError):
        Experiment("registry", tmp_path / "ws").submit({**CLASSIFICATION, "training_data": "dataset:nothing",
                                                        "search_space": {"learning_rate": "uniform(0.01, 0.1)"}})


# -- a driver killed with SIGKILL -----------------------------------------------------------------------------
def test_a_killed_driver_leaves_an_interrupted_experiment_with_stopped_clocks_and_a_resume_hint(tmp_path):
    ws = tmp_path / "ws"
    folder = ExperimentFolder.of(ws, "killed")
    folder.write_state(running_state("killed"))
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    heartbeat = time.time() - 7
    folder.write_driver_record({**process_identity(driver.pid), "started": heartbeat - 30, "heartbeat": heartbeat,
                                "previous_seconds": 0.0})
    os.utime(folder.state_file, (heartbeat - 2, heartbeat - 2))
    handle = attach("killed", ws)
    assert handle.status == "running" and handle.driver_alive
    driver.kill()
    driver.wait()

    seen = handle.observed_state
    assert handle.status == "interrupted" and not handle.driver_alive
    assert seen.reason == f"the driver of experiment 'killed' is not running; {resume_hint('killed')}"
    assert "avml resume killed" in seen.reason
    assert seen.ended == heartbeat and seen.children[1].status == "interrupted"
    assert seen.children[1].ended == heartbeat  # its clock stopped when the driver was last seen
    time.sleep(0.05)
    assert handle.observed_state.ended == heartbeat  # and stays stopped
    assert seen.children[0].status == "completed"
    assert handle.state.status == "running"  # the file itself is left for the resumed driver
    assert [s.status for s in list_experiments(ws, observed=True)] == ["interrupted"]
    with pytest.raises(AvmlError, match="resume it with `avml resume killed`"):
        handle.wait(timeout=5)
    with pytest.raises(AvmlError, match="is not running"):
        handle.stop_child(1)
