"""ONNX export per family, and parity with PyTorch through ``load_model`` (same pre/post-processing, same format).

Parity: classification probabilities within 1e-4; detections matched one to one with IoU >= 0.99 and scores
within 1e-3 (same label), masks as polygons for Mask R-CNN.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

# The `onnx` extra (installed by `make test`): export needs onnx, running an export onnxruntime.
pytest.importorskip("onnx", reason="ONNX export needs the onnx package: pip install 'jupyter_avml[onnx]'")
pytest.importorskip("onnxruntime", reason="ONNX inference needs onnxruntime: pip install 'jupyter_avml[onnx]'")

from jupyter_avml.errors import ConfigError  # noqa: E402
from jupyter_avml.export import export_onnx  # noqa: E402
from jupyter_avml.inference.predictor import load_model  # noqa: E402
from tests.serving.models import CLASSES, image_bytes, save_untrained  # noqa: E402

IMAGES = [image_bytes(width=64 + 16 * i, height=48 + 8 * i, seed=20 + i) for i in range(3)]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """``exports(name) -> (outputs folder, export folder)`` made once per module."""
    made = {}

    def get(name: str):
        if name not in made:
            folder = tmp_path_factory.mktemp(name)
            if name == "yolov5":
                outputs = save_untrained(folder, "image-object-detection", "yolov5")
            else:
                outputs = save_untrained(folder, name)
            made[name] = (outputs, export_onnx(outputs))
        return made[name]

    return get


def _iou(a: dict, b: dict) -> float:
    ax0, ay0, ax1, ay1 = (a[k] for k in ("topX", "topY", "bottomX", "bottomY"))
    bx0, by0, bx1, by1 = (b[k] for k in ("topX", "topY", "bottomX", "bottomY"))
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 1.0


def assert_same_detections(torch_result: dict, onnx_result: dict) -> None:
    """Every detection of one side has a partner on the other: same label, IoU >= 0.99, score within 1e-3."""
    assert len(torch_result["boxes"]) == len(onnx_result["boxes"])
    unmatched = list(onnx_result["boxes"])
    for item in torch_result["boxes"]:
        partner = next((o for o in unmatched if o["label"] == item["label"] and _iou(o["box"], item["box"]) >= 0.99
                        and abs(o["score"] - item["score"]) <= 1e-3), None)
        assert partner is not None, f"no ONNX detection matches {item}"
        assert ("polygon" in partner) == ("polygon" in item)
        unmatched.remove(partner)


@pytest.mark.parametrize("task", ["image-classification", "image-classification-multilabel"])
def test_classifiers_export_with_a_dynamic_batch_and_match_pytorch(task, exports):
    outputs, result = exports(task)
    description = json.loads(open(f"{result.folder}/onnx_model.json").read())
    assert description["inputs"][0]["shape"] == ["batch", 3, 32, 32] and description["dynamic_batch"] is True
    assert description["class_names"] == CLASSES and description["check"]["max_abs_diff"] < 1e-4
    assert json.loads(open(f"{result.folder}/labels.json").read()) == CLASSES
    onnx_model = load_model(result.folder, device="cpu")
    assert onnx_model.runtime == "onnxruntime"
    expected = load_model(outputs, device="cpu").predict(IMAGES)
    got = onnx_model.predict(IMAGES)  # one batch of three, through the dynamic batch axis
    for want, have in zip(expected, got, strict=True):
        assert have["labels"] == want["labels"] == CLASSES
        assert np.max(np.abs(np.array(have["probs"]) - np.array(want["probs"]))) < 1e-4
    if task.endswith("multilabel"):
        assert abs(sum(got[0]["probs"]) - 1) > 1e-3, "independent sigmoids, not a softmax"


@pytest.mark.slow  # tracing a torchvision detector takes about 10 s on a CPU core
@pytest.mark.parametrize("task", ["image-object-detection", "image-instance-segmentation"])
def test_torchvision_detectors_match_pytorch_image_by_image(task, exports):
    outputs, result = exports(task)
    description = json.loads(open(f"{result.folder}/onnx_model.json").read())
    assert description["inputs"][0]["shape"] == [3, "height", "width"] and description["dynamic_batch"] is False
    expected = load_model(outputs, device="cpu").predict(IMAGES)
    got = load_model(result.folder, device="cpu").predict(IMAGES)
    assert sum(len(r["boxes"]) for r in expected) > 0
    for want, have in zip(expected, got, strict=True):
        assert_same_detections(want, have)
    if task == "image-instance-segmentation":
        return
    # A higher threshold and a lower cap are applied to the graph's outputs: the same as PyTorch with them.
    strict = dict(box_score_thresh=0.3, box_detections_per_img=2)
    for want, have in zip(load_model(outputs, device="cpu", **strict).predict(IMAGES),
                          load_model(result.folder, device="cpu", **strict).predict(IMAGES), strict=True):
        assert len(have["boxes"]) <= 2
        assert_same_detections(want, have)
    # The settings the graph fixed are refused, saying what it was exported with and how to change it.
    for settings, words in (({"min_size": 32}, ["exported with min_size=64", "--set min_size=32"]),
                            ({"box_nms_thresh": 0.3}, ["box_nms_thresh", "fixed by the graph"]),
                            ({"box_detections_per_img": 50}, ["at most 10"]),
                            ({"valid_crop_size": 32}, ["not an inference setting"])):
        with pytest.raises(ConfigError) as caught:
            load_model(result.folder, device="cpu", **settings)
        assert all(word in str(caught.value) for word in words), str(caught.value)


@pytest.mark.slow
def test_yolov5_exports_through_ultralytics_and_matches_pytorch(exports):
    outputs, result = exports("yolov5")
    description = json.loads(open(f"{result.folder}/onnx_model.json").read())
    assert description["inputs"][0]["shape"] == ["batch", 3, "height", "width"]
    assert description["preprocessing"]["stride"] == 32
    for settings in ({}, {"img_size": 96, "box_iou_thresh": 0.3}):  # img_size too: the graph's size is dynamic
        expected = load_model(outputs, device="cpu", **settings).predict(IMAGES)
        got = load_model(result.folder, device="cpu", **settings).predict(IMAGES)
        assert sum(len(r["boxes"]) for r in expected) > 0
        for want, have in zip(expected, got, strict=True):
            assert_same_detections(want, have)


def test_settings_the_graph_fixed_are_refused_with_how_to_change_them(exports):
    _, classifier = exports("image-classification")
    with pytest.raises(ConfigError, match=r"exported with valid_crop_size=32.*--set valid_crop_size=28"):
        load_model(classifier.folder, device="cpu", valid_crop_size=28)
    with pytest.raises(ConfigError, match="box_score_thresh is not an inference setting"):
        load_model(classifier.folder, device="cpu", box_score_thresh=0.5)
    assert load_model(classifier.folder, device="cpu", valid_resize_size=40).config.valid_resize_size == 40


def test_an_onnx_export_is_served_like_the_model(exports):
    from jupyter_avml.serving.model_source import ServedModel
    from jupyter_avml.serving.server import ServiceThread
    from tests.serving.http import call, post_image

    outputs, result = exports("image-classification")
    expected = load_model(outputs, device="cpu").predict(IMAGES[0])
    with ServiceThread(ServedModel(result.folder, device="cpu")) as running:
        status, answer, _ = post_image(running.url, IMAGES[0])
        _, info, _ = call(running.url, "GET", "/metadata")
    assert status == 200 and answer["labels"] == CLASSES
    assert np.max(np.abs(np.array(answer["probs"]) - np.array(expected["probs"]))) < 1e-4
    assert info["runtime"] == "onnxruntime" and info["task"] == "image-classification"


def test_export_from_the_command_line(exports, tmp_path, capsys, workspace):
    from jupyter_avml.cli.main import main

    outputs, _ = exports("image-classification")
    target = tmp_path / "exported"
    assert main(["export", str(outputs), "--format", "onnx", "-o", str(target), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["folder"] == str(target) and result["max_abs_diff"] < 1e-4
    assert sorted(p.name for p in target.iterdir()) == ["labels.json", "model.onnx", "onnx_model.json"]
    assert main(["export", str(target)]) == 2
    assert "already an ONNX export" in capsys.readouterr().err
