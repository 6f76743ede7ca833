"""DetectionPredictor on untrained tiny detectors saved as model.pt (no training: the format is under test)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.inference.predictor import load_model
from jupyter_avml.models.detection import build_detector
from jupyter_avml.training.checkpoint import atomic_save, cpu_state_dict, model_payload

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _saved_model(tmp_path, model_name: str, task: str, **settings):
    config = AutoMLImageConfig(task=task, training_data=str(tmp_path / "train.jsonl"), model_name=model_name,
                               pretrained=0, min_size=64, max_size=64, device="cpu", **settings)
    torch.manual_seed(0)
    model = build_detector(config.model_spec, len(CLASSES), pretrained=False, min_size=64, max_size=64)
    path = atomic_save(model_payload(task=task, model_name=model_name, class_names=CLASSES, config=config.to_dict(),
                                     state_dict=cpu_state_dict(model)), tmp_path / "outputs" / "model.pt")
    return path, model


def _images(count=2, size=(80, 60)):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB")
            for _ in range(count)]


def test_boxes_are_fractions_of_the_model_outputs_with_names_and_scores(tmp_path):
    path, model = _saved_model(tmp_path, "fasterrcnn_resnet18_fpn", "image-object-detection")
    # An untrained model scores low: threshold 0 so that there is something to format.
    predictor = load_model("image-object-detection", path, device="cpu", box_score_thresh=0.0,
                           box_detections_per_img=20)
    images = _images()
    results = predictor.predict(images)
    model.roi_heads.score_thresh, model.roi_heads.detections_per_img = 0.0, 20
    model.eval()
    from jupyter_avml.models.transforms import to_model_input

    with torch.inference_mode():
        expected = model([to_model_input(image) for image in images])
    assert len(results) == 2
    for result, reference, image in zip(results, expected, images, strict=True):
        assert set(result) == {"filename", "boxes"}
        assert len(result["boxes"]) == len(reference["boxes"]) > 0
        scores = [item["score"] for item in result["boxes"]]
        assert scores == sorted(scores, reverse=True)
        for item, box, score, label in zip(result["boxes"], reference["boxes"], reference["scores"],
                                           reference["labels"], strict=True):
            assert set(item) == {"box", "label", "score"}
            assert item["label"] == CLASSES[int(label) - 1]
            assert item["score"] == pytest.approx(float(score))
            scale = [image.width, image.height, image.width, image.height]
            got = [item["box"][k] for k in ("topX", "topY", "bottomX", "bottomY")]
            assert got == pytest.approx([float(v) / s for v, s in zip(box, scale, strict=True)], abs=1e-6)
            assert all(0.0 <= v <= 1.0 for v in got)


def test_the_default_threshold_filters_low_scores(tmp_path):
    path, _ = _saved_model(tmp_path, "fasterrcnn_resnet18_fpn", "image-object-detection", box_score_thresh=0.99)
    result = load_model(path, device="cpu").predict(_images(1)[0])
    assert all(item["score"] >= 0.99 for item in result["boxes"])


def test_segmentation_adds_polygons_in_fractions_that_outline_the_masks(tmp_path):
    path, _ = _saved_model(tmp_path, "maskrcnn_resnet18_fpn", "image-instance-segmentation")
    predictor = load_model(path, device="cpu", box_score_thresh=0.0, box_detections_per_img=10)
    image = _images(1)[0]
    result = predictor.predict(image)
    assert result["boxes"], "an untrained Mask R-CNN at threshold 0 still finds something"
    from jupyter_avml.data.masks import denormalize_polygons, polygons_to_mask

    for item in result["boxes"]:
        assert set(item) == {"box", "label", "score", "polygon"}
        assert item["polygon"] and all(len(segment) >= 6 and len(segment) % 2 == 0 for segment in item["polygon"])
        assert all(0.0 <= v <= 1.0 for segment in item["polygon"] for v in segment)
        drawn = polygons_to_mask(denormalize_polygons(item["polygon"], image.width, image.height),
                                 image.height, image.width)
        assert drawn.any()


def test_tiling_predicts_the_full_image_and_every_tile(tmp_path):
    path, _ = _saved_model(tmp_path, "fasterrcnn_resnet18_fpn", "image-object-detection",
                           tile_grid_size="(2, 2)", tile_overlap_ratio=0.25)
    predictor = load_model(path, device="cpu", box_score_thresh=0.0, box_detections_per_img=15)
    seen = []
    predictor.model.register_forward_pre_hook(lambda module, args: seen.append([tuple(x.shape) for x in args[0]]))
    result = predictor.predict(_images(1, size=(80, 60))[0])
    # full image + 4 tiles of ceil(80 / 1.75) x ceil(60 / 1.75) pixels
    assert [shape for call in seen for shape in call] == [(3, 60, 80)] + [(3, 35, 46)] * 4
    assert 0 < len(result["boxes"]) <= 15
    scores = [item["score"] for item in result["boxes"]]
    assert scores == sorted(scores, reverse=True)


def test_inference_settings_reach_the_rebuilt_model(tmp_path):
    path, _ = _saved_model(tmp_path, "retinanet_resnet50_fpn", "image-object-detection")
    predictor = load_model(path, device="cpu", min_size=48, max_size=72, box_score_thresh=0.2, box_nms_thresh=0.4,
                           box_detections_per_img=7)
    model = predictor.model
    assert model.transform.min_size == (48,) and model.transform.max_size == 72
    assert (model.score_thresh, model.nms_thresh, model.detections_per_img) == (0.2, 0.4, 7)
    assert not model.training


def test_the_batchnorm_epsilon_comes_from_the_model_file_and_old_files_keep_the_old_rule(tmp_path):
    """Training-time facts travel with the weights: the predictor reads the epsilon the backbone trained with."""
    from jupyter_avml.inference.detection import saved_batchnorm_eps

    path, _ = _saved_model(tmp_path, "fasterrcnn_resnet18_fpn", "image-object-detection")
    payload = torch.load(path, weights_only=True)
    atomic_save({**payload, "detector": {"batchnorm_eps": 0.0}}, path)
    predictor = load_model(path, device="cpu")
    norms = [m for m in predictor.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.eps == 0.0 for m in norms)

    # A file written before the epsilon was recorded: build_detector's rule (pretrained=0 -> torch's 1e-5; the
    # ResNet-50 detectors started from COCO v1 -> 0).
    config = AutoMLImageConfig(task="image-object-detection", training_data="x.jsonl",
                               model_name="fasterrcnn_resnet50_fpn")
    assert saved_batchnorm_eps({}, config) == 0.0
    assert saved_batchnorm_eps({}, config.replace(pretrained=0)) == 1e-5
    assert saved_batchnorm_eps({"detector": {"batchnorm_eps": 1e-3}}, config) == 1e-3


def test_a_detection_run_records_its_batchnorm_epsilon(tmp_path):
    from jupyter_avml.training.detection import DetectionRecipe

    config = AutoMLImageConfig(task="image-object-detection", training_data=str(tmp_path / "train.jsonl"),
                               model_name="fasterrcnn_resnet18_fpn", pretrained=0, min_size=64, max_size=64)
    recipe = DetectionRecipe(config, CLASSES, [], [])
    model = recipe.build_model()
    assert recipe.export_extra() == {"detector": {"batchnorm_eps": 1e-5}}
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps = 0.0
    from jupyter_avml.models.detection import batchnorm_eps

    assert batchnorm_eps(model) == 0.0
