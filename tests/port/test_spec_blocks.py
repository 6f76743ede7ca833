"""The spec's code blocks as a cloud notebook writes them, end to end: only the imports, the workspace/compute
cells and the data paths changed (tiny generated data, 1-epoch children on the CPU).

configure -> submit -> wait -> best child -> properties/metrics/files -> register -> load -> predict, for image
classification (the tuning block of spec section 9) and object detection (the baseline of section 8); then a
run continues the best child (``checkpoint_run_id``: incremental training through the engine and through
ultralytics' trainer).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from jupyter_avml.data.shapes import make_shapes
from tests.sweep.test_experiment import assert_no_processes, kill_leftovers

# Settings of tiny CPU children, given the spec's way (section 9, "Fixed settings"): a cloud notebook passes
# its own arguments here.
TINY_CLASSIFIER = ["--number_of_epochs", 1, "--pretrained", 0, "--train_crop_size", 32, "--valid_crop_size", 32,
                   "--valid_resize_size", 32, "--training_batch_size", 8, "--cpu_threads", 1, "--seed", 3]
TINY_YOLO = ["--number_of_epochs", 1, "--pretrained", 0, "--img_size", 64, "--model_size", "small",
             "--training_batch_size", 8, "--validation_batch_size", 8]


def as_settings(arguments: list) -> dict:
    """``["--name", value, ...]`` -> ``{name: value}``."""
    return {name[2:]: value for name, value in zip(arguments[::2], arguments[1::2], strict=True)}


def continue_from(best_child_run, ws, task: str, training_data: str, model_name: str, arguments: list,
                  **extra) -> None:
    """Incremental training from the best child (``checkpoint_run_id``), with the same labels: at learning
    rate 0 the continued model keeps the best child's weights (batch-norm statistics aside)."""
    from jupyter_avml import AutoMLImageConfig as RunConfig
    from jupyter_avml import train

    config = RunConfig(task=task, training_data=training_data, model_name=model_name,
                       checkpoint_run_id=best_child_run.id, learning_rate=0.0, weight_decay=0.0,
                       **{**as_settings(arguments), **extra})
    continued = train(config, workspace=ws)
    before = torch.load(best_child_run.run_dir / "outputs" / "model.pt", weights_only=True)
    after = torch.load(continued.model_path, weights_only=True)
    assert after["class_names"] == before["class_names"]
    weights = [k for k in before["state_dict"] if "running_" not in k and "num_batches" not in k]
    assert weights and all(torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in weights)


@pytest.fixture
def ws_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # download_file and register land in the notebook's folder, as in the cloud
    root = tmp_path / "ws"
    yield root
    kill_leftovers(root)


@pytest.mark.slow(seconds=25)
def test_classification_tuning_block_end_to_end(tmp_path, ws_path, capsys, monkeypatch):
    training_dataset = str(make_shapes(tmp_path / "data", "image-classification", n=36, size=32, seed=3,
                                       color_by_class=True))

    # -- the notebook, as written for the cloud (imports, workspace, compute and data cells changed) --------
    from jupyter_avml.automl import (
        AutoMLImageConfig,
        BanditPolicy,
        Experiment,
        ImageTask,
        RandomParameterSampling,
        Workspace,
        choice,
        load_model,
        uniform,
    )

    ws = Workspace.from_config(ws_path)
    compute_target = "local"
    experiment_name = "automl-image-classification"
    experiment = Experiment(ws, name=experiment_name)

    parameter_space = {
        "model_name": choice("resnet18"),
        "learning_rate": uniform(0.001, 0.01),
        "optimizer": choice("sgd", "adamw"),
    }
    tuning_settings = {
        "iterations": 2,
        "max_concurrent_iterations": 2,
        "hyperparameter_sampling": RandomParameterSampling(parameter_space),
        "early_termination_policy": BanditPolicy(evaluation_interval=2, slack_factor=0.2, delay_evaluation=6),
    }
    automl_image_config = AutoMLImageConfig(task=ImageTask.IMAGE_CLASSIFICATION,
                                            compute_target=compute_target,
                                            training_data=training_dataset,
                                            primary_metric="accuracy",
                                            arguments=TINY_CLASSIFIER,
                                            **tuning_settings)
    automl_image_run = experiment.submit(automl_image_config)
    automl_image_run.wait_for_completion(show_output=True)

    best_child_run = automl_image_run.get_best_child()
    model_name = best_child_run.properties["model_name"]
    model = best_child_run.register_model(model_name=model_name, model_path="outputs/model.pt")
    # --------------------------------------------------------------------------------------------------------

    state = automl_image_run.handle.state
    assert automl_image_run.get_status() == "completed" and state.counts() == {"completed": 2}
    printed = capsys.readouterr().out  # show_output in a terminal: the leaderboard as it changes
    assert f"experiment {experiment_name}: completed (2 completed" in printed and "accuracy" in printed
    shown = []  # show_output in a notebook: the live dashboard
    monkeypatch.setattr("jupyter_avml.automl._runs._in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display", shown.append)
    assert automl_image_run.wait_for_completion(show_output=True)["status"] == "completed"
    assert [type(widget).__name__ for widget in shown] == ["DashboardWidget"]
    shown[0].close()
    assert model_name == "resnet18"
    assert best_child_run.properties["score"] == max(c.best_value for c in state.children)
    metrics = best_child_run.get_metrics()
    assert metrics["accuracy"] == best_child_run.properties["score"]  # one evaluated epoch: the value itself
    assert {"train_loss", "learning_rate", "log_loss"} <= set(metrics)
    files = best_child_run.get_file_names()
    assert {"outputs/model.pt", "outputs/labels.json", "outputs/metrics.json", "train.log",
            "outputs/roc_curves.json", "outputs/roc_curves.png", "outputs/pr_curves.json"} <= set(files)
    labels = best_child_run.download_file("outputs/labels.json", output_file_path="labels.json")
    assert json.loads(Path(labels).read_text()) == ["circle", "square", "triangle"]
    assert (model.name, model.version, model.run_id) == ("resnet18", 1, best_child_run.id)

    predictor = load_model(ImageTask.IMAGE_CLASSIFICATION, model.download(target_dir="model"))
    image = sorted((tmp_path / "data" / "images").iterdir())[0]
    prediction = predictor.predict(str(image))
    assert prediction["labels"] == ["circle", "square", "triangle"] and len(prediction["probs"]) == 3
    assert load_model(model.uri, workspace=ws).predict(str(image)) == prediction  # the registered version
    assert_no_processes(ws_path)
    continue_from(best_child_run, ws, "image-classification", training_dataset, "resnet18", TINY_CLASSIFIER)


@pytest.mark.slow(seconds=15)
def test_object_detection_baseline_block_end_to_end(tmp_path, ws_path):
    training_dataset = str(make_shapes(tmp_path / "data", "image-object-detection", n=20, size=64, seed=5,
                                       color_by_class=True))

    # -- the notebook, as written for the cloud (imports, workspace, compute and data cells changed) --------
    from jupyter_avml.automl import (
        AutoMLImageConfig,
        Experiment,
        GridParameterSampling,
        ImageTask,
        Workspace,
        choice,
        load_model,
    )

    ws = Workspace.from_config(ws_path)
    compute_target = "local"
    experiment = Experiment(ws, name="automl-image-object-detection")

    image_config_yolov5 = AutoMLImageConfig(task=ImageTask.IMAGE_OBJECT_DETECTION,
                                            compute_target=compute_target,
                                            training_data=training_dataset,
                                            validation_data=None,
                                            hyperparameter_sampling=GridParameterSampling({'model_name':
                                                                                           choice('yolov5')}),
                                            iterations=1,
                                            arguments=TINY_YOLO)
    automl_image_run = experiment.submit(image_config_yolov5)
    automl_image_run.wait_for_completion(wait_post_processing=True)

    best_child_run = automl_image_run.get_best_child()
    model_name = best_child_run.properties['model_name']
    model = best_child_run.register_model(model_name=model_name, model_path='outputs/model.pt')
    # --------------------------------------------------------------------------------------------------------

    assert automl_image_run.get_status() == "completed" and model_name == "yolov5"
    assert len(automl_image_run.get_children()) == 1
    assert "mean_average_precision" in best_child_run.get_metrics()
    predictor = load_model(ImageTask.IMAGE_OBJECT_DETECTION, model.download())
    prediction = predictor.predict(str(sorted((tmp_path / "data" / "images").iterdir())[0]))
    assert isinstance(prediction["boxes"], list)
    for box in prediction["boxes"]:
        assert set(box) == {"box", "label", "score"} and box["label"] in ("circle", "square", "triangle")
    assert_no_processes(ws_path)
    continue_from(best_child_run, ws, "image-object-detection", training_dataset, "yolov5", TINY_YOLO,
                  warmup_cosine_lr_warmup_epochs=0, device="cpu")


@pytest.mark.slow
def test_a_child_past_its_trial_timeout_is_stopped_by_the_driver(tmp_path, ws_path):
    from jupyter_avml.automl import AutoMLImageConfig, Experiment, GridParameterSampling, choice

    data = make_shapes(tmp_path / "data", "image-classification", n=30, size=32, seed=3, color_by_class=True)
    endless = [value if value != 1 or TINY_CLASSIFIER[i - 1] != "--number_of_epochs" else 500
               for i, value in enumerate(TINY_CLASSIFIER)]
    config = AutoMLImageConfig(task="image-classification", compute_target="cpu", training_data=str(data),
                               hyperparameter_sampling=GridParameterSampling({"model_name": choice("resnet18")}),
                               iterations=1, arguments=endless, trial_timeout_minutes=0.1)
    run = Experiment(ws_path, "timeout").submit(config)
    details = run.wait_for_completion(raise_on_error=False, timeout=300)
    [child] = run.get_children()
    assert details["status"] == "completed"  # the experiment goes on past a child's limit
    assert (child.status, run.handle.state.children[0].reason) == ("stopped", "trial timeout (0.1 min)")
    assert run.handle.state.children[0].epoch < 500
    assert_no_processes(ws_path)
