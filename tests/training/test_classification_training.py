"""The classification engine end to end on generated data (CPU, tiny images, pretrained=False)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.runs.events import EpochMetrics, RunFinished, request_stop
from jupyter_avml.training.run import resume, train
from tests.conftest import Recorder

SMALL = dict(model_name="resnet18", pretrained=0, train_crop_size=32, valid_resize_size=36, valid_crop_size=32,
             training_batch_size=32, validation_batch_size=100, device="cpu")


TINY = dict(SMALL, training_batch_size=8, validation_batch_size=50, valid_resize_size=32)


def config_for(data, task="image-classification", **overrides):
    return AutoMLImageConfig(task=task, training_data=str(data), **{**SMALL, **overrides})


def tiny_config(data, **overrides):
    return AutoMLImageConfig(task="image-classification", training_data=str(data), **{**TINY, **overrides})


@pytest.mark.slow
def test_multiclass_learns_the_shapes(shapes_multiclass, workspace):
    config = config_for(shapes_multiclass, number_of_epochs=6, learning_rate=0.001, optimizer="adam",
                        warmup_cosine_lr_warmup_epochs=1, early_stopping=0)
    summary = train(config)
    assert summary.status == "completed"
    assert summary.primary_metric == "accuracy" and summary.primary_metric_value >= 0.9, summary
    outputs = Path(summary.output_dir)
    payload = torch.load(outputs / "model.pt", weights_only=True)
    assert payload["class_names"] == ["circle", "square", "triangle"]
    assert payload["config"]["model_name"] == "resnet18"
    for name in ("labels.json", "metrics.json", "confusion_matrix.json", "pr_curves.json", "config.yaml",
                 "loss_curve.png", "metric_curve.png", "confusion_matrix.png", "pr_curves.png"):
        assert (outputs / name).is_file(), name
    metrics = json.loads((outputs / "metrics.json").read_text())
    assert metrics["final"]["accuracy"] == pytest.approx(summary.primary_metric_value)
    assert len(metrics["per_epoch"]) == 6

    from jupyter_avml.inference.predictor import load_model

    predictor = load_model("image-classification", outputs)
    records = [json.loads(line) for line in Path(shapes_multiclass).read_text().splitlines()[:8]]
    images = [str(Path(shapes_multiclass).parent / r["image_url"]) for r in records]
    predictions = predictor.predict(images)
    assert [p["labels"] for p in predictions] == [["circle", "square", "triangle"]] * 8
    assert all(abs(sum(p["probs"]) - 1) < 1e-5 for p in predictions)
    hits = sum(p["labels"][max(range(3), key=p["probs"].__getitem__)] == r["label"]
               for p, r in zip(predictions, records, strict=True))
    assert hits >= 6

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    run = client.get_run(summary.run_id)
    assert run.data.params["model_name"] == "resnet18" and run.data.params["learning_rate"] == "0.001"
    assert run.data.tags["avml.status"] == "completed" and run.info.status == "FINISHED"
    history = client.get_metric_history(summary.run_id, "accuracy")
    assert [m.step for m in history] == list(range(1, 7))


@pytest.mark.slow(seconds=35)
def test_multilabel_learns_the_shapes(shapes_multilabel, workspace):
    config = config_for(shapes_multilabel, task="image-classification-multilabel", number_of_epochs=8,
                        learning_rate=0.002, optimizer="adam", warmup_cosine_lr_warmup_epochs=1, early_stopping=0,
                        train_crop_size=40, valid_resize_size=48, valid_crop_size=40)
    summary = train(config)
    assert summary.primary_metric == "iou" and summary.primary_metric_value >= 0.8, summary

    from jupyter_avml.inference.predictor import load_model

    prediction = load_model(summary.model_path).predict(
        str(Path(shapes_multilabel).parent
            / json.loads(Path(shapes_multilabel).read_text().splitlines()[0])["image_url"]))
    assert prediction["labels"] == ["circle", "square", "triangle"] and len(prediction["probs"]) == 3


def test_early_stopping_stops_after_delay_plus_patience(shapes_tiny, workspace):
    # learning_rate 0: the metric never improves after the first evaluation.
    config = tiny_config(shapes_tiny, number_of_epochs=10, learning_rate=0.0, early_stopping=1,
                         early_stopping_delay=1, early_stopping_patience=2)
    recorder = Recorder()
    summary = train(config, callbacks=[recorder])
    epochs = [e.epoch for e in recorder.events if isinstance(e, EpochMetrics)]
    # evaluation 1 sets the best; 2 is past the delay and counts 1; 3 counts 2 = patience -> stop.
    assert epochs == [1, 2, 3]
    assert summary.status == "completed" and "early stopping" in summary.reason


def test_evaluation_frequency_and_checkpoint_frequency(shapes_tiny, workspace):
    config = tiny_config(shapes_tiny, number_of_epochs=4, evaluation_frequency=2, checkpoint_frequency=1,
                         early_stopping=0)
    recorder = Recorder()
    summary = train(config, callbacks=[recorder])
    evaluated = [e.epoch for e in recorder.events if isinstance(e, EpochMetrics) and e.metrics]
    assert evaluated == [2, 4]
    checkpoints = sorted(p.name for p in (Path(summary.output_dir).parent / "checkpoints").glob("epoch_*.pt"))
    assert checkpoints == ["epoch_001.pt", "epoch_002.pt", "epoch_003.pt", "epoch_004.pt"]


def test_layers_to_freeze_keeps_the_stem_fixed(shapes_tiny, workspace):
    config = tiny_config(shapes_tiny, number_of_epochs=1, layers_to_freeze=2, learning_rate=0.1)
    from jupyter_avml.models.classification import build_classifier
    from jupyter_avml.training.engine import seed_everything

    seed_everything(config.seed)
    initial = build_classifier(config.model_spec, 3, pretrained=False, img_size=32).state_dict()
    summary = train(config)
    trained = torch.load(summary.model_path, weights_only=True)["state_dict"]
    for name, value in trained.items():
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        frozen = name.startswith(("conv1.", "bn1.", "layer1."))
        assert torch.equal(value, initial[name]) == frozen, name


def test_a_stop_request_ends_the_run_after_the_current_batch(shapes_tiny, workspace):
    config = tiny_config(shapes_tiny, number_of_epochs=50, log_every_n_batches=1)

    class StopAtBatch3(Recorder):
        def on_event(self, event):
            super().on_event(event)
            if event.kind == "batch_progress" and event.epoch == 2 and event.batch == 3:
                request_stop(Path(workspace) / "runs" / event.run_id, "enough")

    recorder = StopAtBatch3()
    summary = train(config, callbacks=[recorder])
    assert summary.status == "stopped" and summary.reason == "enough"
    batches = [(e.epoch, e.batch) for e in recorder.events if e.kind == "batch_progress"]
    assert batches[-1] == (2, 3)
    finished = [e for e in recorder.events if isinstance(e, RunFinished)]
    assert finished[-1].status == "stopped"
    # epoch 1 was evaluated: its model is the one kept
    assert torch.load(summary.model_path, weights_only=True)["epoch"] == 1


def _train_cli(config_path: Path, workspace: Path) -> subprocess.Popen:
    env = {**os.environ, "AVML_WORKSPACE": str(workspace), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "jupyter_avml", "train", str(config_path), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


@pytest.mark.slow(seconds=15)
def test_a_killed_run_resumes_to_the_same_result(shapes_tiny, workspace, tmp_path):
    settings = {**TINY, "task": "image-classification", "training_data": str(shapes_tiny),
                "number_of_epochs": 6, "early_stopping": 0, "learning_rate": 0.05}
    import yaml

    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(settings))
    reference = train(AutoMLImageConfig.from_yaml(config_path))

    process = _train_cli(config_path, workspace)
    run_dir = None
    deadline = time.time() + 300
    while time.time() < deadline:
        found = [p for p in (workspace / "runs").glob("*/events.jsonl") if p.parent.name != reference.run_id]
        if found:
            run_dir = found[0].parent
            if f'"epoch_metrics", "run_id": "{run_dir.name}", "time"' in found[0].read_text() and \
                    found[0].read_text().count('"epoch_metrics"') >= 2:
                break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert run_dir is not None
    from jupyter_avml.training.run import read_run_json, run_status

    assert run_status(read_run_json(run_dir)) == "interrupted"

    resumed = resume(run_dir.name)
    assert resumed.status == "completed"
    assert resumed.primary_metric_value == pytest.approx(reference.primary_metric_value, abs=0)
    ref_state = torch.load(reference.model_path, weights_only=True)
    new_state = torch.load(resumed.model_path, weights_only=True)
    assert ref_state["epoch"] == new_state["epoch"]
    for name, value in ref_state["state_dict"].items():
        assert torch.equal(value, new_state["state_dict"][name]), name
    ref_hist = json.loads((Path(reference.output_dir) / "metrics.json").read_text())["per_epoch"]
    new_hist = json.loads((Path(resumed.output_dir) / "metrics.json").read_text())["per_epoch"]
    assert [h["metrics"] for h in ref_hist] == [h["metrics"] for h in new_hist]


def test_cli_json_summary(shapes_tiny, workspace, tmp_path):
    import yaml

    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump({**TINY, "task": "image-classification",
                                           "training_data": str(shapes_tiny), "number_of_epochs": 1}))
    process = _train_cli(config_path, workspace)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    summary = json.loads(out)
    for key in ("run_id", "task", "model_name", "status", "primary_metric", "primary_metric_value", "metrics",
                "model_path", "output_dir"):
        assert key in summary, key
    assert summary["metrics"]["accuracy"] == summary["primary_metric_value"]
    assert summary["status"] == "completed" and Path(summary["model_path"]).is_file()

    from jupyter_avml.cli.main import main

    assert main(["runs", "show", summary["run_id"][:8], "--json"]) == 0
    assert main(["runs", "list"]) == 0


def test_invalid_data_is_refused_unless_skip_invalid(tmp_path, workspace, shapes_tiny):
    from jupyter_avml.errors import DataError

    lines = Path(shapes_tiny).read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    # the generated images live next to the original file: point the bad file at them
    folder = Path(shapes_tiny).parent
    fixed = [json.dumps({**json.loads(line), "image_url": str(folder / json.loads(line)["image_url"])})
             for line in lines[:40]]
    bad.write_text("\n".join(fixed + ['{"image_url": "missing.png", "label": "circle"}', "not json"]) + "\n")
    config = tiny_config(bad, number_of_epochs=1)
    with pytest.raises(DataError) as info:
        train(config)
    assert f"{bad}:41: image_url" in str(info.value) and f"{bad}:42:" in str(info.value)
    assert not (workspace / "runs").exists()  # refused before a run was recorded
    summary = train(config.replace(skip_invalid=1))
    rejected = Path(summary.output_dir) / "rejected_training_rows.jsonl"
    rows = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert [r["line"] for r in rows] == [41, 42]
