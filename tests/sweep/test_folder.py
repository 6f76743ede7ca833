"""The experiment folder's contract (``folder.py``) and what readers derive from it (``status.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from jupyter_avml.errors import AvmlError
from jupyter_avml.sweep.folder import DamagedStateError, ExperimentFolder, experiment_dir, process_identity
from jupyter_avml.sweep.state import ChildState, ExperimentState
from jupyter_avml.sweep.status import driver_alive, observe, observe_folder, resume_hint


def state(name: str = "exp", status: str = "running") -> ExperimentState:
    return ExperimentState(name=name, task="image-classification", primary_metric="accuracy", status=status,
                           created=100.0, started=100.0,
                           children=[ChildState(id=0, params={"learning_rate": 0.01}, status="completed",
                                                started=100.0, ended=150.0, best_value=0.5),
                                     ChildState(id=1, params={"learning_rate": 0.02}, status="running",
                                                started=150.0),
                                     ChildState(id=2, params={"learning_rate": 0.03})])


def test_every_path_lives_in_the_experiment_folder(tmp_path):
    folder = ExperimentFolder.of(tmp_path, "exp")
    assert folder.path == experiment_dir(tmp_path, "exp") == tmp_path / "experiments" / "exp"
    names = {p.relative_to(folder.path).as_posix() for p in (
        folder.config_file, folder.state_file, folder.driver_file, folder.launch_file, folder.lock_file,
        folder.log_file, folder.stop_file, folder.child_info_file(3), folder.child_log(3), folder.child_stop_file(3),
        folder.worker_log(2))}
    assert names == {"experiment.yaml", "state.json", "driver.json", "launch.json", "driver.lock", "driver.log",
                     "STOP", "children/3.json", "children/3.log", "children/3.stop", "workers/worker-2.log"}
    assert not folder.exists()
    folder.write_config("task: image-classification\n")
    assert folder.exists()


def test_the_state_round_trips_atomically_and_old_files_still_read(tmp_path):
    folder = ExperimentFolder.of(tmp_path, "exp")
    assert folder.read_state() is None
    folder.write_state(state())
    assert folder.read_state() == state()
    assert sorted(p.name for p in folder.path.iterdir()) == ["state.json"]  # no temporary file left
    # a state written before intermediate values and sub-spaces were recorded, with a field from the future
    data = json.loads(folder.state_file.read_text())
    for child in data["children"]:
        del child["intermediate_values"], child["subspace"]
    data["from_a_newer_version"] = 1
    folder.state_file.write_text(json.dumps(data))
    assert folder.read_state().children[1].intermediate_values == []


@pytest.mark.parametrize("text, needle", [("{not json", "not JSON"), ("[1, 2]", "a JSON list, not an object"),
                                          ('{"name": "exp"}', "not an experiment state"),
                                          ('{"name": "exp", "task": "", "primary_metric": "", "children": 3}',
                                           "not an experiment state"),
                                          (b"\xff\xfe", "not UTF-8")])
def test_a_damaged_state_names_the_file_and_what_can_still_be_done(tmp_path, text, needle):
    folder = ExperimentFolder.of(tmp_path / "ws", "exp")
    folder.path.mkdir(parents=True)
    if isinstance(text, bytes):
        folder.state_file.write_bytes(text)
    else:
        folder.state_file.write_text(text)
    with pytest.raises(DamagedStateError) as info:
        folder.read_state()
    message = str(info.value)
    assert isinstance(info.value, AvmlError) and info.value.path == folder.state_file
    assert message.startswith(f"{folder.state_file}") and needle in message
    assert str(tmp_path / "ws" / "runs") in message and "experiment 'exp' cannot be shown" in message
    assert "\n" not in message


def test_stop_requests_and_what_workers_report(tmp_path):
    folder = ExperimentFolder.of(tmp_path, "exp")
    assert folder.stop_request() is None and folder.take_child_stop_requests() == []
    folder.request_stop("enough")
    assert folder.stop_request() == "enough"
    folder.clear_stop()
    assert folder.stop_request() is None
    folder.request_child_stop(2, "not this one")
    folder.request_child_stop(5, "nor this one")
    (folder.path / "children" / "notes.stop").write_text("{}")  # not a child: ignored
    assert folder.take_child_stop_requests() == [(2, "not this one"), (5, "nor this one")]
    assert folder.take_child_stop_requests() == []  # each request is acted on once
    folder.write_child_info(2, {"run_id": "abc"})
    assert folder.read_child_info(2) == {"run_id": "abc"}
    folder.clear_child_info(2)
    assert folder.read_child_info(2) == {}
    folder.child_info_file(3).write_text("{half")  # advisory records read as empty when damaged
    assert folder.read_child_info(3) == {}


def test_one_driver_lock_per_experiment(tmp_path):
    folder = ExperimentFolder.of(tmp_path, "exp")
    assert not folder.driver_lock_held()
    handle = folder.try_driver_lock()
    assert handle is not None and folder.driver_lock_held() and folder.try_driver_lock() is None
    assert driver_alive(folder)
    handle.close()
    assert not folder.driver_lock_held() and not driver_alive(folder)


def test_driver_alive_reads_the_driver_and_launch_records(tmp_path):
    folder = ExperimentFolder.of(tmp_path, "exp")
    folder.write_driver_record({**process_identity(os.getpid()), "started": time.time()})
    assert driver_alive(folder)
    folder.write_driver_record({**process_identity(os.getpid()), "started": time.time(), "ended": time.time()})
    assert not driver_alive(folder)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = process_identity(dead.pid)
    dead.wait()
    folder.write_launch_record({**identity, "time": time.time()})
    assert not driver_alive(folder)  # the launched process is gone
    folder.write_launch_record({**process_identity(os.getpid()), "time": time.time()})
    assert driver_alive(folder)  # a driver just started, before it holds its lock
    folder.write_launch_record({**process_identity(os.getpid()), "create_time": 1.0})
    assert not driver_alive(folder)  # the pid was reused by another process


def test_an_unfinished_state_without_a_driver_is_shown_interrupted_with_stopped_clocks(tmp_path):
    running = state()
    assert observe(running, alive=True) is running
    view = observe(running, alive=False, last_seen=200.0)
    assert running.status == "running" and running.children[1].status == "running"  # the file's state is kept
    assert view.status == "interrupted" and view.ended == 200.0
    assert view.reason == f"the driver of experiment 'exp' is not running; {resume_hint('exp')}"
    assert "avml resume exp" in view.reason and "attach('exp').resume()" in view.reason
    assert [(c.status, c.ended) for c in view.children] == [("completed", 150.0), ("interrupted", 200.0),
                                                            ("queued", None)]
    finished = state(status="stopped")
    assert observe(finished, alive=False) is finished

    folder = ExperimentFolder.of(tmp_path, "exp")
    folder.write_state(running)
    folder.write_driver_record({**process_identity(os.getpid()), "started": 100.0, "heartbeat": 180.0,
                                "ended": None})
    os.utime(folder.state_file, (170.0, 170.0))
    assert observe_folder(folder).status == "running"  # its driver (this process) is alive
    folder.write_driver_record({"pid": 999_999_999, "started": 100.0, "heartbeat": 180.0})
    seen = observe_folder(folder)
    assert seen.status == "interrupted" and seen.ended == 180.0  # the last heartbeat
    assert seen.children[1].ended == 180.0
