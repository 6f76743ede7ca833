"""The configuration schema: defaults by task and model, validation messages, the YAML door."""

from __future__ import annotations

import pickle

import pytest

from jupyter_avml.config import AutoMLImageConfig, parse_tile_grid
from jupyter_avml.errors import ConfigError
from jupyter_avml.tasks import ImageTask

MC = "image-classification"
ML = "image-classification-multilabel"
OD = "image-object-detection"
IS = "image-instance-segmentation"


def make(task=MC, **kw):
    return AutoMLImageConfig(task=task, training_data="train.jsonl", **kw)


@pytest.mark.parametrize("task, model, key, expected", [
    (MC, None, "model_name", "vitb16r224"),
    (MC, "resnet18", "training_batch_size", 78),
    (MC, "vitb16r224", "training_batch_size", 48),
    (MC, "vits16r224", "validation_batch_size", 128),
    (MC, "vitl16r224", "training_batch_size", 10),
    (MC, "resnet50", "learning_rate", 0.01),
    (ML, "resnet50", "learning_rate", 0.035),
    (MC, "vits16r224", "learning_rate", 0.0125),
    (ML, "vitb16r224", "learning_rate", 0.025),
    (MC, "vitl16r224", "learning_rate", 0.001),
    (ML, "vitl16r224", "learning_rate", 0.002),
    (OD, None, "model_name", "yolov5"),
    (OD, "yolov5", "number_of_epochs", 30),
    (OD, "yolov5", "training_batch_size", 16),
    (OD, "yolov5", "learning_rate", 0.01),
    (OD, "yolov5", "box_score_thresh", 0.1),
    (OD, "yolov5", "model_size", "medium"),
    (OD, "yolov5", "img_size", 640),
    (OD, "fasterrcnn_resnet50_fpn", "number_of_epochs", 15),
    (OD, "fasterrcnn_resnet50_fpn", "training_batch_size", 2),
    (OD, "fasterrcnn_resnet50_fpn", "validation_batch_size", 1),
    (OD, "fasterrcnn_resnet50_fpn", "box_score_thresh", 0.3),
    (OD, "retinanet_resnet50_fpn", "min_size", 600),
    (OD, "retinanet_resnet50_fpn", "tile_overlap_ratio", 0.25),
    (IS, None, "model_name", "maskrcnn_resnet50_fpn"),
    (IS, None, "learning_rate", 0.005),
    (IS, None, "validation_metric_type", "voc"),
    (MC, "resnet18", "early_stopping_patience", 5),
    (MC, "resnet18", "lr_scheduler", "warmup_cosine"),
    (MC, "resnet18", "warmup_cosine_lr_cycles", 0.45),
    (MC, "resnet18", "valid_resize_size", 256),
    (MC, "resnet18", "weighted_loss", 0),
    (MC, "resnet18", "split_ratio", 0.2),
])
def test_defaults_follow_the_spec(task, model, key, expected):
    kw = {"model_name": model} if model else {}
    assert make(task, **kw)[key] == expected


def test_a_value_the_user_set_is_the_value_used():
    config = make(model_name="vitb16r224", training_batch_size=5, learning_rate=0.2)
    assert config.training_batch_size == 5 and config.learning_rate == 0.2
    assert {"training_batch_size", "learning_rate", "model_name"} <= config.user_keys


@pytest.mark.parametrize("settings, message", [
    (dict(learning_rate=3), "learning_rate must be a float in [0, 1], got 3"),
    (dict(learnig_rate=0.1), "unknown setting 'learnig_rate'; did you mean 'learning_rate'?"),
    (dict(model_name="yolov5"), "yolov5 is an object detection model; task is image-classification"),
    (dict(model_name="resnet19"), "unknown model_name 'resnet19'; did you mean 'resnet18'?"),
    (dict(model_name="vitb16r224", valid_crop_size=200), "vitb16r224 needs valid_crop_size equal to train_crop_size"),
    (dict(number_of_epochs=0), "number_of_epochs must be a positive integer, got 0"),
    (dict(number_of_epochs=2.5), "number_of_epochs must be a positive integer, got 2.5"),
    (dict(optimizer="rmsprop"), "optimizer must be one of 'sgd', 'adam', 'adamw', got 'rmsprop'"),
    (dict(early_stopping=2), "early_stopping must be 0 or 1, got 2"),
    (dict(min_size=300), "min_size applies to the torchvision detection and segmentation models"),
    (dict(device="gpu"), "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (dict(model_name="resnet18", layers_to_freeze=9), "resnet18 has 5 layer groups"),
])
def test_configuration_errors_are_the_documented_messages(settings, message):
    with pytest.raises(ConfigError) as info:
        make(**settings)
    assert message in str(info.value)


def test_detection_settings_are_checked_per_family():
    with pytest.raises(ConfigError, match="img_size applies to yolov5; model_name is fasterrcnn_resnet18_fpn"):
        make(OD, model_name="fasterrcnn_resnet18_fpn", img_size=320)
    with pytest.raises(ConfigError, match="tile_grid_size applies to the torchvision"):
        make(OD, model_name="yolov5", tile_grid_size="(3, 2)")
    with pytest.raises(ConfigError, match="weighted_loss applies to image classification models"):
        make(OD, model_name="yolov5", weighted_loss=1)
    with pytest.raises(ConfigError, match="early_stopping needs a validation metric"):
        make(OD, model_name="fasterrcnn_resnet18_fpn", validation_metric_type="none", early_stopping=1)
    assert make(OD, model_name="fasterrcnn_resnet18_fpn", validation_metric_type="none").early_stopping == 0


def test_every_error_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        make(model_name="resnet18", learning_rate=5, momentum=-1, optimzer="sgd")
    text = str(info.value)
    assert "learning_rate" in text and "momentum" in text and "optimzer" in text


def test_loose_values_are_coerced():
    config = make(model_name="resnet18", number_of_epochs="3", learning_rate="0.05", nesterov=True,
                  early_stopping="false", weighted_loss="2")
    assert (config.number_of_epochs, config.learning_rate, config.nesterov, config.early_stopping,
            config.weighted_loss) == (3, 0.05, 1, 0, 2)


@pytest.mark.parametrize("raw, grid", [("(3, 2)", (3, 2)), ("3x2", (3, 2)), ((2, 4), (2, 4)), ([1, 1], (1, 1))])
def test_tile_grid_forms(raw, grid):
    assert parse_tile_grid(raw) == grid


@pytest.mark.parametrize("raw", ["(3)", "(0, 2)", "a,b", (1.5, 2), 3])
def test_bad_tile_grids(raw):
    with pytest.raises(ConfigError, match="tile_grid_size"):
        parse_tile_grid(raw)


def test_task_and_training_data_are_required():
    with pytest.raises(ConfigError, match="task is required"):
        AutoMLImageConfig(training_data="x.jsonl")
    with pytest.raises(ConfigError, match="training_data is required"):
        AutoMLImageConfig(task=MC)
    assert make(ImageTask.IMAGE_CLASSIFICATION_MULTILABEL).task_type is ImageTask.IMAGE_CLASSIFICATION_MULTILABEL


def test_replace_rederives_model_defaults():
    config = make(model_name="resnet18")
    vit = config.replace(model_name="vitl16r224")
    assert vit.training_batch_size == 10 and config.training_batch_size == 78


def test_yaml_door_points_at_the_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("task: image-classification\ntraining_data: data/train.jsonl\nmodel_name: resnet18\n"
                    "learning_rate: 7\n")
    with pytest.raises(ConfigError) as info:
        AutoMLImageConfig.from_yaml(path)
    assert str(info.value).startswith(f"{path}:4: learning_rate must be a float in [0, 1], got 7")
    assert info.value.line == 4 and info.value.field == "learning_rate"
    path.write_text("task: image-classification\ntraining_data: data/train.jsonl\nmodel_name: [resnet18\n")
    with pytest.raises(ConfigError, match="YAML syntax error"):
        AutoMLImageConfig.from_yaml(path)


def test_yaml_paths_are_relative_to_the_file_and_round_trip(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("task: image-classification\ntraining_data: data/train.jsonl\nmodel_name: resnet18\n")
    config = AutoMLImageConfig.from_yaml(path)
    assert config.training_data == str(tmp_path / "data" / "train.jsonl")
    saved = tmp_path / "resolved.yaml"
    saved.write_text(config.to_yaml())
    again = AutoMLImageConfig.from_yaml(saved)
    assert again.to_dict() == config.to_dict()
    assert pickle.loads(pickle.dumps(config)).to_dict() == config.to_dict()


def test_every_size_and_batch_setting_is_bounded():
    from jupyter_avml.config.params import MAX_BATCH_SIZE, MAX_IMAGE_SIDE, PARAMS

    sizes = ("train_crop_size", "valid_crop_size", "valid_resize_size", "min_size", "max_size", "img_size")
    assert {k: (PARAMS[k].low, PARAMS[k].high) for k in sizes} == {k: (1, MAX_IMAGE_SIDE) for k in sizes}
    batches = ("training_batch_size", "validation_batch_size")
    assert {k: (PARAMS[k].low, PARAMS[k].high) for k in batches} == {k: (1, MAX_BATCH_SIZE) for k in batches}
    assert PARAMS["num_workers"].high == 64
    assert parse_tile_grid("16x16") == (16, 16)
    with pytest.raises(ConfigError, match=r"two integers in \[1, 16\]"):
        parse_tile_grid((17, 1))


def test_the_largest_bounded_values_that_fit_in_memory_are_accepted():
    config = AutoMLImageConfig(task=MC, training_data="a.jsonl", model_name="resnet18", training_batch_size=64,
                               train_crop_size=4096, valid_crop_size=4096, validation_batch_size=64)
    assert config.train_crop_size == 4096


def test_yolo_multi_scale_counts_in_the_memory_estimate():
    settings = dict(task="image-object-detection", training_data="a.jsonl", model_name="yolov5", img_size=4096,
                    training_batch_size=64)
    AutoMLImageConfig(**settings)  # 64 x 3 x 4096^2 x 4 B = 12 GiB
    with pytest.raises(ConfigError, match="27.0 GiB of input per batch"):
        AutoMLImageConfig(**settings, multi_scale=1)  # at +50%: 27 GiB
