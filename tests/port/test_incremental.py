"""Incremental training (``checkpoint_run_id``, ``checkpoint_filename``): every model family takes back the
weights it saved; a checkpoint that cannot be continued (other labels, model, task) is refused before a run
is created. The runs that continue a trained model end to end are in ``test_spec_blocks.py``."""

from __future__ import annotations

import pytest
import torch

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.data.shapes import make_shapes
from jupyter_avml.errors import ConfigError, NotFoundError
from jupyter_avml.training.incremental import check_start_model, load_start_weights
from jupyter_avml.workspace import Workspace

RUN_ID = "c" * 32
CLASSES = ["circle", "square", "triangle"]
FAMILIES = {
    "resnet18": ("image-classification", dict(train_crop_size=32, valid_resize_size=32, valid_crop_size=32)),
    "fasterrcnn_resnet18_fpn": ("image-object-detection", dict(min_size=64, max_size=64)),
    "maskrcnn_resnet18_fpn": ("image-instance-segmentation", dict(min_size=64, max_size=64)),
    "yolov5": ("image-object-detection", dict(model_size="small", img_size=64)),
}


def config_for(model_name: str, **changes) -> AutoMLImageConfig:
    task, settings = FAMILIES[model_name]
    return AutoMLImageConfig(task=task, training_data="train.jsonl", model_name=model_name, pretrained=0,
                             device="cpu", **{**settings, **changes})


def build(config: AutoMLImageConfig, seed: int, workspace) -> torch.nn.Module:
    """The network the run's trainer builds and saves (for yolov5: ultralytics' DetectionModel)."""
    from jupyter_avml.models.classification import build_classifier
    from jupyter_avml.models.detection import build_detector
    from jupyter_avml.models.yolo import build_yolo

    torch.manual_seed(seed)
    spec = config.model_spec
    if spec.family == "timm":
        return build_classifier(spec, len(CLASSES), pretrained=False)
    if spec.family == "torchvision":
        return build_detector(spec, len(CLASSES), pretrained=False, min_size=64, max_size=64)
    return build_yolo(spec, len(CLASSES), model_size=config.model_size, pretrained=False,
                      workspace_dir=workspace).model


def save_run_model(workspace: Workspace, config: AutoMLImageConfig, model, class_names=CLASSES,
                   run_id: str = RUN_ID):
    """An earlier run's ``outputs/model.pt``, written as the trainers write it."""
    from jupyter_avml.training.checkpoint import atomic_save, cpu_state_dict, model_payload

    outputs = workspace.runs_dir / run_id / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    payload = model_payload(task=config.task_type.value, model_name=config.model_name, class_names=class_names,
                            config=config.to_dict(), state_dict=cpu_state_dict(model))
    atomic_save(payload, outputs / "model.pt")
    return outputs / "model.pt"


@pytest.mark.parametrize("model_name", list(FAMILIES))
def test_every_family_starts_from_the_weights_it_saved(tmp_path, model_name):
    ws = Workspace.resolve(tmp_path / "ws")
    config = config_for(model_name)
    earlier = build(config, 1, ws)
    save_run_model(ws, config, earlier)
    start = check_start_model(config.replace(checkpoint_run_id=RUN_ID[:8]), ws, CLASSES)
    fresh = build(config, 2, ws)
    assert any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), earlier.state_dict().values(),
                                                     strict=True))
    load_start_weights(fresh, start)
    for key, value in earlier.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_labels_that_differ_are_refused_before_a_run_is_created(tmp_path):
    from jupyter_avml.training.run import train

    ws = Workspace.resolve(tmp_path / "ws")
    config = config_for("resnet18")
    save_run_model(ws, config, build(config, 1, ws))
    two = make_shapes(tmp_path / "two", "image-classification", n=12, size=16, seed=1, classes=("circle", "square"))
    with pytest.raises(ConfigError) as caught:
        train(config.replace(training_data=str(two), checkpoint_run_id=RUN_ID), workspace=ws)
    message = str(caught.value)
    assert f"checkpoint_run_id: run {RUN_ID} knows the labels circle, square, triangle, the training data has " \
           f"circle, square (not in the new data: triangle)" in message
    assert "incremental training continues the same model on the same labels" in message
    assert sorted(p.name for p in ws.runs_dir.iterdir()) == [RUN_ID]  # no run was created


@pytest.mark.parametrize("changes, expected", [
    (dict(model_name="resnet34"), f"run {RUN_ID} trained resnet18, model_name is resnet34 (set model_name: "
                                  f"resnet18)"),
    (dict(task="image-classification-multilabel"), f"run {RUN_ID} is a image-classification model, the task is "
                                                   f"image-classification-multilabel"),
])
def test_another_model_or_task_is_refused(tmp_path, changes, expected):
    ws = Workspace.resolve(tmp_path / "ws")
    config = config_for("resnet18")
    save_run_model(ws, config, torch.nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="checkpoint_run_id") as caught:
        check_start_model(config.replace(checkpoint_run_id=RUN_ID, **changes), ws, CLASSES)
    assert expected in str(caught.value)


def test_another_yolo_size_is_refused_and_weights_that_do_not_fit_are_named(tmp_path):
    ws = Workspace.resolve(tmp_path / "ws")
    small = config_for("yolov5")
    save_run_model(ws, small, torch.nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="is a small yolov5, model_size is medium"):
        check_start_model(small.replace(model_size="medium", checkpoint_run_id=RUN_ID), ws, CLASSES)
    start = check_start_model(small.replace(checkpoint_run_id=RUN_ID), ws, CLASSES)
    with pytest.raises(ConfigError, match=r"the weights of run c+ do not fit this model \(missing 0.weight, "
                                          r"0.bias; unexpected weight, bias\)"):
        load_start_weights(torch.nn.Sequential(torch.nn.Linear(2, 2)), start)
    with pytest.raises(ConfigError, match=r"\(of another shape weight, bias\)"):
        load_start_weights(torch.nn.Linear(3, 3), start)


def test_what_a_start_model_cannot_be(tmp_path):
    ws = Workspace.resolve(tmp_path / "ws")
    config = config_for("resnet18")
    with pytest.raises(NotFoundError, match="no run 'dddddddd'"):
        check_start_model(config.replace(checkpoint_run_id="dddddddd"), ws, CLASSES)
    (ws.runs_dir / RUN_ID).mkdir(parents=True)
    with pytest.raises(NotFoundError, match=f"run {RUN_ID} has no model file"):
        check_start_model(config.replace(checkpoint_run_id=RUN_ID), ws, CLASSES)
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    with pytest.raises(ConfigError, match="is not a model file"):
        check_start_model(config.replace(checkpoint_filename=str(text)), ws, CLASSES)
    last = tmp_path / "last.pt"
    torch.save({"model": {}, "trainer_state": {}, "state_dict": {}}, last)
    with pytest.raises(ConfigError, match="is not a model file"):
        check_start_model(config.replace(checkpoint_filename=str(last)), ws, CLASSES)


def test_the_configuration_of_a_run_that_continues_another():
    config = config_for("resnet18", checkpoint_run_id=RUN_ID)
    assert config.pretrained == 0  # no pretrained download under the checkpoint's weights
    with pytest.raises(ConfigError, match="give checkpoint_run_id or checkpoint_filename, not both"):
        config_for("resnet18", checkpoint_run_id=RUN_ID, checkpoint_filename="model.pt")
    with pytest.raises(ConfigError, match="pretrained and a checkpoint to start from"):
        AutoMLImageConfig(task="image-classification", training_data="t.jsonl", model_name="resnet18",
                          pretrained=1, checkpoint_run_id=RUN_ID)
    relative = AutoMLImageConfig.from_dict({"task": "image-classification", "training_data": "t.jsonl",
                                            "checkpoint_filename": "model.pt"}, base_dir="/data/exp")
    assert relative.checkpoint_filename == "/data/exp/model.pt"


def test_an_experiment_that_continues_other_labels_is_refused_at_submit(tmp_path):
    from jupyter_avml.automl import AutoMLImageConfig as ExperimentConfig
    from jupyter_avml.automl import Experiment

    ws = Workspace.resolve(tmp_path / "ws")
    save_run_model(ws, config_for("resnet18"), torch.nn.Linear(2, 2), class_names=["circle", "square"])
    data = make_shapes(tmp_path / "data", "image-classification", n=12, size=16, seed=1)
    config = ExperimentConfig(task="image-classification", compute_target="local", training_data=str(data),
                              model_name="resnet18", checkpoint_run_id=RUN_ID)
    with pytest.raises(ConfigError, match=r"knows the labels circle, square, the training data has circle, square, "
                                          r"triangle \(new: triangle\)"):
        Experiment(ws, "continued").submit(config)
    assert not ws.experiments_dir.exists()  # nothing started, nothing written
