"""Hostile inputs to the weights, model and run paths: malicious pickles, damaged or foreign files, run ids that
escape the runs folder, a full disk, concurrent processes.

Every case must end in one clear ``AvmlError`` (never a traceback of another type, never advice to load a file
unsafely) and leave nothing behind that another command would trip over.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from jupyter_avml.errors import AvmlError, ModelFileError, UnsafeWeightsError
from jupyter_avml.models import get_model_spec


# -- malicious pickles: the payload writes a marker file; no entry point may run it -----------------------------
class _WritesMarker:
    """Unpickling this object calls ``exec`` with code that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def _malicious_files(folder: Path, marker: Path) -> dict[str, Path]:
    """The payload as a plain pickle, inside ``torch.save`` (zip format), and shaped like an ultralytics checkpoint
    and like one of our model files."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"pickle": folder / "plain.pt", "torch": folder / "torch.pt", "ultralytics": folder / "yolo.pt",
             "model_file": folder / "model.pt"}
    with open(files["pickle"], "wb") as handle:
        pickle.dump(_WritesMarker(marker), handle, protocol=2)
    torch.save({"state_dict": _WritesMarker(marker)}, files["torch"])
    torch.save({"model": _WritesMarker(marker), "ema": None, "train_args": {}}, files["ultralytics"])
    torch.save({"format": "jupyter_avml.model/1", "task": "image-classification", "model_name": "resnet18",
                "class_names": ["a", "b"], "config": {}, "state_dict": _WritesMarker(marker)}, files["model_file"])
    return files


@pytest.fixture
def malicious(tmp_path):
    marker = tmp_path / "marker.txt"
    files = _malicious_files(tmp_path / "files", marker)
    # The payload works when a file is unpickled without restrictions (so the tests below can fail):
    torch.load(files["torch"], weights_only=False)
    assert marker.exists()
    marker.unlink()
    return marker, files


def _assert_refused(error: BaseException, path: Path, marker: Path) -> None:
    message = str(error)
    assert isinstance(error, AvmlError)
    assert str(path) in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize("kind", ["pickle", "torch", "ultralytics"])
def test_timm_pretrained_weights_never_run_a_pickle(malicious, kind):
    from jupyter_avml.models.classification import build_classifier

    marker, files = malicious
    with pytest.raises(AvmlError) as error:
        build_classifier(get_model_spec("resnet18"), 2, pretrained_weights=files[kind])
    _assert_refused(error.value, files[kind], marker)
    assert isinstance(error.value, UnsafeWeightsError)
    assert "convert_trusted_checkpoint" in str(error.value) and "exec" in str(error.value)


@pytest.mark.parametrize("kind", ["pickle", "torch"])
def test_torchvision_pretrained_weights_never_run_a_pickle(malicious, kind):
    from jupyter_avml.models.detection import build_detector

    marker, files = malicious
    with pytest.raises(UnsafeWeightsError) as error:
        build_detector(get_model_spec("fasterrcnn_resnet18_fpn"), 2, pretrained_weights=files[kind])
    _assert_refused(error.value, files[kind], marker)


@pytest.mark.parametrize("kind", ["pickle", "torch", "ultralytics"])
def test_yolov5_pretrained_weights_never_run_a_pickle(malicious, kind, tmp_path):
    from jupyter_avml.models.yolo import build_yolo

    marker, files = malicious
    with pytest.raises(UnsafeWeightsError) as error:
        build_yolo(get_model_spec("yolov5"), 2, model_size="small", pretrained_weights=str(files[kind]),
                   workspace_dir=tmp_path / "ws")
    _assert_refused(error.value, files[kind], marker)
    assert "convert_trusted_checkpoint" in str(error.value)
    assert "No automatic unsafe pickle fallback" not in str(error.value)


def test_a_cached_yolov5_download_is_read_as_data_too(malicious, tmp_path, no_network):
    """A file in the workspace's weights cache (where pretrained downloads land) gets the same treatment."""
    from jupyter_avml.models.ultralytics_env import UltralyticsDirs
    from jupyter_avml.models.yolo import build_yolo

    marker, files = malicious
    weights = UltralyticsDirs.of(tmp_path / "ws").weights_dir
    weights.mkdir(parents=True)
    (weights / "yolov5su.pt").write_bytes(files["ultralytics"].read_bytes())
    with pytest.raises(UnsafeWeightsError):
        build_yolo(get_model_spec("yolov5"), 2, model_size="small", pretrained=True, workspace_dir=tmp_path / "ws")
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["pickle", "torch", "model_file"])
def test_load_model_never_runs_a_pickle(malicious, kind):
    from jupyter_avml.inference.predictor import load_model

    marker, files = malicious
    with pytest.raises(ModelFileError) as error:
        load_model(files[kind])
    _assert_refused(error.value, files[kind], marker)
    assert "outputs/model.pt" in str(error.value)


def test_a_registered_model_download_never_runs_a_pickle(malicious, workspace):
    """A registered model whose artifact was replaced by a malicious file: load_model("models:/...") refuses it."""
    import yaml

    from jupyter_avml.inference.predictor import load_model
    from jupyter_avml.tracking.registry import register_run_model
    from jupyter_avml.tracking.store import Tracker

    marker, files = malicious
    tracker = Tracker(workspace)
    run_id = tracker.start_run(tags={"task": "image-classification"})
    run_dir = workspace / "runs" / run_id
    (run_dir / "outputs").mkdir(parents=True)
    (run_dir / "outputs" / "model.pt").write_bytes(files["model_file"].read_bytes())
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"task": "image-classification",
                                                         "model_name": "resnet18"}))
    assert register_run_model(run_id, "evil", workspace=workspace) == 1
    with pytest.raises(ModelFileError):
        load_model("models:/evil/1", workspace=workspace)
    assert not marker.exists()


def test_a_trusted_legacy_checkpoint_converts_into_a_plain_state_dict(tmp_path):
    """The documented way out for a file one trusts: convert it knowingly, then use the plain state dict."""
    from jupyter_avml.models.classification import build_classifier
    from jupyter_avml.models.weights_files import convert_trusted_checkpoint

    torch.manual_seed(0)
    spec = get_model_spec("resnet18")
    model = build_classifier(spec, 2, pretrained=False)
    legacy = tmp_path / "legacy.pt"
    torch.save({"model": model, "epoch": 3}, legacy)  # a whole pickled module: refused as is
    with pytest.raises(UnsafeWeightsError, match="convert_trusted_checkpoint"):
        build_classifier(spec, 2, pretrained_weights=legacy)

    converted = convert_trusted_checkpoint(legacy, tmp_path / "plain.pt")
    rebuilt = build_classifier(spec, 2, pretrained_weights=converted)
    for name, tensor in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], tensor), name


# -- load_model on files that are not model files ------------------------------------------------------------
def _not_model_files(folder: Path) -> dict[str, Path]:
    import os

    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "good.pt"
    torch.save({"format": "jupyter_avml.model/1", "task": "image-classification", "model_name": "resnet18",
                "class_names": ["a"], "config": {}, "state_dict": {"w": torch.zeros(100)}}, good)
    files = {"empty": folder / "empty.pt", "truncated": folder / "truncated.pt", "random": folder / "random.pt",
             "text": folder / "notes.pt", "state_dict": folder / "weights.pt",
             "checkpoint": folder / "checkpoints" / "last.pt"}
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["random"].write_bytes(os.urandom(4096))
    files["text"].write_text("epoch,loss\n1,0.5\n")
    torch.save({"conv.weight": torch.zeros(2, 2)}, files["state_dict"])
    files["checkpoint"].parent.mkdir()
    torch.save({"model": {"w": torch.zeros(1)}, "optimizer": {}, "trainer_state": {"epochs_done": 1}},
               files["checkpoint"])
    return files


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "text", "state_dict", "checkpoint"])
def test_load_model_on_a_file_that_is_not_a_model_says_so(kind, tmp_path):
    from jupyter_avml.inference.predictor import load_model

    path = _not_model_files(tmp_path)[kind]
    with pytest.raises(ModelFileError) as error:
        load_model(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message.strip()
    assert "weights_only" not in message and "trust" not in message  # never advice to load it unsafely
    if kind == "checkpoint":
        assert "training checkpoint" in message and "--resume" in message
    else:
        assert "not a model file" in message and "outputs/model.pt" in message


# -- run ids ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("run_id", ["../../..", "..", ".", "/etc", "", "abc", "zzzzzzzz", "abcdef/../..",
                                    "abcdef*", "~root", "abcdef0123456789abcdef0123456789ff"])
def test_names_that_are_not_run_ids_are_refused(run_id, workspace):
    from jupyter_avml.errors import NotFoundError
    from jupyter_avml.training.run import find_run_dir
    from jupyter_avml.workspace import Workspace

    (workspace / "runs").mkdir()
    with pytest.raises(NotFoundError, match="is not a run id"):
        find_run_dir(Workspace(workspace), run_id)


def test_a_run_folder_linking_outside_the_runs_folder_is_refused(workspace, tmp_path):
    from jupyter_avml.errors import NotFoundError
    from jupyter_avml.training.run import find_run_dir
    from jupyter_avml.workspace import Workspace

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (workspace / "runs").mkdir()
    (workspace / "runs" / "abcdef0123").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(NotFoundError, match="outside the runs folder"):
        find_run_dir(Workspace(workspace), "abcdef")
    (workspace / "runs" / "0123456789").mkdir()
    assert find_run_dir(Workspace(workspace), "012345") == workspace / "runs" / "0123456789"  # a prefix is enough
    assert find_run_dir(Workspace(workspace), "0123456789".upper()) == workspace / "runs" / "0123456789"


# -- a real (tiny) run: busy, damaged, full disk ---------------------------------------------------------------
TINY_RUN = dict(task="image-classification", model_name="resnet18", pretrained=0, train_crop_size=32,
                valid_resize_size=32, valid_crop_size=32, training_batch_size=16, validation_batch_size=32,
                cpu_threads=1, device="cpu", number_of_epochs=2, learning_rate=0.05, early_stopping=0)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from jupyter_avml.data.shapes import make_shapes

    return make_shapes(tmp_path_factory.mktemp("tiny"), "image-classification", n=24, size=32, seed=4,
                       color_by_class=True)


def _config(data, **overrides):
    from jupyter_avml.config import AutoMLImageConfig

    return AutoMLImageConfig(training_data=str(data), **{**TINY_RUN, **overrides})


class _ResumeWhileTraining:
    """At each epoch start, tries to resume the run that is training (as a second `avml train --resume` would)."""

    def __init__(self, workspace: Path):
        self.workspace, self.refusals = workspace, []

    def on_event(self, event):
        from jupyter_avml.training.run import resume

        if event.kind == "epoch_started":
            try:
                resume(event.run_id, workspace=self.workspace)
            except AvmlError as exc:
                self.refusals.append(exc)


def test_resume_of_a_run_that_is_still_training_is_refused(tiny_data, workspace):
    from jupyter_avml.errors import RunBusyError
    from jupyter_avml.runs.events import read_events
    from jupyter_avml.training.run import train

    intruder = _ResumeWhileTraining(workspace)
    summary = train(_config(tiny_data), callbacks=[intruder])
    assert summary.status == "completed"
    assert len(intruder.refusals) == 2 and all(isinstance(e, RunBusyError) for e in intruder.refusals)
    message = str(intruder.refusals[0])
    import os

    assert summary.run_id in message and f"process {os.getpid()}" in message
    events, _ = read_events(workspace / "runs" / summary.run_id / "events.jsonl")
    assert [e.epoch for e in events if e.kind == "epoch_metrics"] == [1, 2]  # each epoch recorded once
    assert [e.kind for e in events].count("run_started") == 1


def test_a_lock_held_by_another_process_refuses_resume_and_dies_with_it(workspace, tmp_path):
    import subprocess
    import sys

    from jupyter_avml.errors import RunBusyError
    from jupyter_avml.runs.folder import lock_run, read_run_json, run_status
    from jupyter_avml.training.run import resume

    run_dir = workspace / "runs" / "0a1b2c3d4e5f"
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import os, sys; from jupyter_avml.runs.folder import lock_run, write_run_json; "
                               f"h = lock_run({str(run_dir)!r}); "
                               f"write_run_json({str(run_dir)!r}, status='running', pid=os.getpid()); "
                               "print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(RunBusyError, match=f"run 0a1b2c3d4e5f is being trained by process {holder.pid}"):
            resume("0a1b2c3d4e5f")
        assert run_status(read_run_json(run_dir), run_dir) == "running"
    finally:
        holder.kill()
        holder.wait()
    assert run_status(read_run_json(run_dir), run_dir) == "interrupted"
    lock_run(run_dir).close()  # free again once its holder is gone


def test_a_damaged_run_record_is_named_listed_and_recoverable(tiny_data, workspace):
    from jupyter_avml.errors import DamagedRunError
    from jupyter_avml.runs.folder import list_runs, read_run_json
    from jupyter_avml.training.run import resume, train

    summary = train(_config(tiny_data, number_of_epochs=1))
    run_dir = workspace / "runs" / summary.run_id
    record = run_dir / "run.json"
    record.write_text('{"status": "compl')  # a crash mid-write by some other tool, a disk error...
    with pytest.raises(DamagedRunError) as error:
        read_run_json(run_dir)
    assert str(record) in str(error.value) and "avml train --resume" in str(error.value)

    listed = {info["run_id"]: info for info in list_runs(workspace)}
    assert listed[summary.run_id]["status"] == "damaged" and str(record) in listed[summary.run_id]["error"]

    with pytest.raises(DamagedRunError, match="move the file aside"):
        resume(summary.run_id)
    assert record.read_text() == '{"status": "compl'  # refused before anything was touched

    record.unlink()  # what the message says to do
    assert read_run_json(run_dir) == {}
    resumed = resume(summary.run_id)
    assert resumed.status == "completed" and resumed.run_id == summary.run_id
    info = read_run_json(run_dir)
    assert info["status"] == "completed" and info["task"] == "image-classification"
    assert listed != {info_["run_id"]: info_ for info_ in list_runs(workspace)}


def test_a_full_disk_fails_the_run_in_one_line_and_leaves_no_temporary_file(tiny_data, workspace, monkeypatch):
    import errno

    from mlflow import MlflowClient

    from jupyter_avml.fileio import DiskFullError
    from jupyter_avml.runs.events import read_events
    from jupyter_avml.runs.folder import read_run_json
    from jupyter_avml.training.run import train

    real_save = torch.save

    def save(obj, handle, *args, **kwargs):
        if isinstance(obj, dict) and "trainer_state" in obj:  # checkpoints/last.pt, 17 MB in the field
            handle.write(b"x" * 4096)  # part of the file made it before the disk filled up
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(DiskFullError) as error:
        train(_config(tiny_data))
    run_dir = next((workspace / "runs").iterdir())
    last = run_dir / "checkpoints" / "last.pt"
    assert str(error.value) == f"no space left on device: {last}"
    assert error.value.__cause__ is None and error.value.__suppress_context__  # one line, no chained tracebacks
    info = read_run_json(run_dir)
    assert info["status"] == "failed" and info["error"] == f"no space left on device: {last}"
    assert [p.name for p in run_dir.rglob("*") if p.name.endswith(".tmp")] == []
    assert not last.exists()
    events, _ = read_events(run_dir / "events.jsonl")
    assert events[-1].kind == "run_finished" and events[-1].status == "failed"
    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    assert client.get_run(run_dir.name).info.status == "FAILED"

    from jupyter_avml.cli.main import main

    (workspace / "run.yaml").write_text(_config(tiny_data).to_yaml())
    import contextlib
    import io

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main(["--workspace", str(workspace), "train", str(workspace / "run.yaml"), "--json"]) == 2
    assert stderr.getvalue().strip().count("\n") == 0 and "no space left on device" in stderr.getvalue()


# -- three processes open a fresh workspace at once --------------------------------------------------------------
@pytest.mark.slow
def test_three_trainings_started_at_once_on_a_fresh_workspace_all_get_a_run(tmp_path):
    """Each process creates the tracking store as `avml train` does; without the store lock two of three died in
    MLflow's schema creation ("table experiments already exists")."""
    import subprocess
    import sys
    import time

    workspace, go = tmp_path / "fresh-ws", tmp_path / "go"
    script = ("import sys, time, pathlib\n"
              "from jupyter_avml.tracking.store import Tracker\n"
              "import mlflow\n"  # imports done before the start signal, so that the opens overlap
              "go = pathlib.Path(sys.argv[2])\n"
              "while not go.exists(): time.sleep(0.005)\n"
              "tracker = Tracker(sys.argv[1])\n"
              "print(tracker.start_run(tags={'task': 'image-classification'}))\n")
    processes = [subprocess.Popen([sys.executable, "-c", script, str(workspace), str(go)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
    time.sleep(2.0)
    go.touch()
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    run_ids = {out.strip() for out, _ in outputs}
    assert len(run_ids) == 3 and all(len(run_id) == 32 for run_id in run_ids)
