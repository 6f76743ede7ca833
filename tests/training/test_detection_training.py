"""The torchvision detection/segmentation recipe end to end on generated shapes (CPU, tiny, pretrained=False)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.data.shapes import make_shapes
from jupyter_avml.errors import ConfigError
from jupyter_avml.runs.events import EpochMetrics
from jupyter_avml.training.run import train
from tests.conftest import Recorder

DETECTION = "image-object-detection"
SEGMENTATION = "image-instance-segmentation"
TINY = dict(pretrained=0, min_size=64, max_size=64, training_batch_size=4, validation_batch_size=4, cpu_threads=1,
            device="cpu", number_of_epochs=1, log_every_n_batches=1000)


@pytest.fixture(scope="module")
def shapes_detection(tmp_path_factory):
    """The learnable detection set: class-coloured shapes, 64 px (20 % held out for validation)."""
    return make_shapes(tmp_path_factory.mktemp("shapes-det"), DETECTION, n=100, size=64, seed=3,
                       color_by_class=True)


@pytest.fixture(scope="module")
def tiny_detection(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("shapes-det-tiny"), DETECTION, n=10, size=48, seed=4,
                       color_by_class=True)


@pytest.fixture(scope="module")
def tiny_segmentation(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("shapes-seg-tiny"), SEGMENTATION, n=10, size=48, seed=5,
                       color_by_class=True)


def config_for(data, task=DETECTION, **overrides) -> AutoMLImageConfig:
    settings = {**TINY, "model_name": "fasterrcnn_resnet18_fpn" if task == DETECTION else "maskrcnn_resnet18_fpn",
                **overrides}
    return AutoMLImageConfig(task=task, training_data=str(data), **settings)


def _first_image(jsonl: Path) -> str:
    return str(jsonl.parent / json.loads(jsonl.read_text().splitlines()[0])["image_url"])


# -- end to end ------------------------------------------------------------------------------------------
@pytest.mark.slow(seconds=90)
def test_faster_rcnn_learns_the_shapes_and_predicts_in_the_spec_format(shapes_detection, workspace):
    # From scratch: AdamW at 1e-3 after one warm-up epoch, batches of 4 (20 updates an epoch), 3 epochs.
    # Measured on this set, validation mAP@0.5 per epoch with seeds 0, 1, 2: 0.04, 0.26, 0.89; 0.00, 0.37,
    # 0.96; 0.12, 0.49, 0.96 (a fourth epoch added 0.01-0.06 for a third more time). 60 images instead of 100
    # ended at 0.30-0.66: too close to the bar. Batches of 8 needed a 4th epoch and a learning rate of 2e-3
    # diverged. (Measured before steps became fused; with the fused step it passed in every run since: two full
    # suites and one of tests/training.)
    config = config_for(shapes_detection, min_size=96, max_size=96, number_of_epochs=3,
                        optimizer="adamw", learning_rate=0.001, warmup_cosine_lr_warmup_epochs=1, early_stopping=0)
    summary = train(config)
    assert summary.status == "completed"
    assert summary.primary_metric == "mean_average_precision" and summary.primary_metric_value >= 0.5, summary
    assert {"precision", "recall"} <= set(summary.metrics)
    outputs = Path(summary.output_dir)
    assert (outputs / "pr_curves.json").is_file() and (outputs / "metric_curve.png").is_file()

    from jupyter_avml.inference.predictor import load_model

    predictor = load_model(DETECTION, outputs, device="cpu")
    lines = [json.loads(line) for line in shapes_detection.read_text().splitlines()[:6]]
    predictions = predictor.predict([str(shapes_detection.parent / line["image_url"]) for line in lines])
    found = 0
    for prediction, line in zip(predictions, lines, strict=True):
        assert prediction["filename"] == Path(line["image_url"]).name
        for item in prediction["boxes"]:
            assert set(item) == {"box", "label", "score"} and item["label"] in ("circle", "square", "triangle")
            assert item["score"] >= config.box_score_thresh
            box = item["box"]
            assert 0 <= box["topX"] < box["bottomX"] <= 1 and 0 <= box["topY"] < box["bottomY"] <= 1
        truth = [(o["label"], (o["topX"], o["topY"], o["bottomX"], o["bottomY"])) for o in line["label"]]
        for name, (x0, y0, x1, y1) in truth:  # each object found by a box of its class (IoU >= 0.5)
            for item in prediction["boxes"]:
                b = item["box"]
                inter = max(0, min(x1, b["bottomX"]) - max(x0, b["topX"])) * \
                    max(0, min(y1, b["bottomY"]) - max(y0, b["topY"]))
                union = (x1 - x0) * (y1 - y0) + (b["bottomX"] - b["topX"]) * (b["bottomY"] - b["topY"]) - inter
                if item["label"] == name and inter / union >= 0.5:
                    found += 1
                    break
    total = sum(len(line["label"]) for line in lines)
    assert found >= total / 2, (found, total)


def test_mask_rcnn_end_to_end_with_box_and_mask_metrics(tiny_segmentation, workspace):
    summary = train(config_for(tiny_segmentation, SEGMENTATION, validation_metric_type="coco_voc"))
    assert summary.status == "completed" and Path(summary.model_path).is_file()
    metrics = summary.metrics
    for name in ("mean_average_precision", "box_mean_average_precision", "coco_map", "voc_map", "box_coco_map",
                 "box_voc_map", "precision", "box_precision", "recall", "box_recall"):
        assert name in metrics and math.isfinite(metrics[name]), name
    assert metrics["mean_average_precision"] == metrics["voc_map"]  # coco_voc: VOC is primary

    from jupyter_avml.inference.predictor import load_model

    result = load_model(summary.model_path, device="cpu", box_score_thresh=0.0).predict(
        _first_image(tiny_segmentation))
    assert result["boxes"]
    for item in result["boxes"]:
        assert item["polygon"] and all(0.0 <= v <= 1.0 for segment in item["polygon"] for v in segment)


def test_retinanet_end_to_end_with_coco_metrics(tiny_detection, workspace):
    summary = train(config_for(tiny_detection, model_name="retinanet_resnet50_fpn", validation_metric_type="coco"))
    assert summary.status == "completed"
    for name in ("coco_map", "coco_map_50", "coco_map_75", "coco_mar_100", "mean_average_precision"):
        assert name in summary.metrics, name
    assert summary.metrics["mean_average_precision"] == max(summary.metrics["coco_map"], 0.0)
    assert "voc_map" not in summary.metrics

    from jupyter_avml.inference.predictor import load_model

    result = load_model(summary.model_path, device="cpu", box_score_thresh=0.0).predict(_first_image(tiny_detection))
    assert result["boxes"] and all(item["label"] in ("circle", "square", "triangle") for item in result["boxes"])


def test_metric_type_none_reports_no_map_and_never_stops_early(tiny_detection, workspace):
    with pytest.raises(ConfigError, match="early_stopping needs a validation metric"):
        config_for(tiny_detection, validation_metric_type="none", early_stopping=1)
    config = config_for(tiny_detection, validation_metric_type="none", number_of_epochs=2, early_stopping_delay=1,
                        early_stopping_patience=1, learning_rate=0.0)
    assert config.early_stopping == 0
    recorder = Recorder()
    summary = train(config, callbacks=[recorder])
    epochs = [e for e in recorder.events if isinstance(e, EpochMetrics)]
    assert [e.epoch for e in epochs] == [1, 2]  # learning rate 0 never improves: only early stopping could stop it
    for event in epochs:
        assert set(event.metrics) == {"precision", "recall"}
    assert summary.primary_metric_value is None and "mean_average_precision" not in summary.metrics
    assert Path(summary.model_path).is_file()


def test_a_tiled_run_trains_and_validates(tiny_detection, workspace):
    from jupyter_avml.training import detection

    calls = []
    original = detection.DetectionRecipe.predict

    def spy(self, model, images, device):
        calls.append(len(images))
        return original(self, model, images, device)

    recorder = Recorder()
    config = config_for(tiny_detection, tile_grid_size="(2, 2)")
    detection.DetectionRecipe.predict = spy
    try:
        summary = train(config, callbacks=[recorder])
    finally:
        detection.DetectionRecipe.predict = original
    assert summary.status == "completed" and "mean_average_precision" in summary.metrics
    progress = [e for e in recorder.events if e.kind == "batch_progress"]
    assert progress[-1].num_batches == math.ceil(8 * 5 / 4)  # 8 training images, each with its 4 tiles
    assert sum(calls) == 2  # 2 validation images, each predicted (with its tiles) once per evaluation


# -- data, targets, augmentation ------------------------------------------------------------------------
def _close(tensor: torch.Tensor, expected) -> bool:
    expected = torch.tensor(expected, dtype=torch.float32)
    return tensor.shape == expected.shape and torch.allclose(tensor.float(), expected, atol=1e-4)


def _records(tmp_path, task, labels):
    """Records with one 60x40 grey image each, drawn as given: [(label fractions...), ...]."""
    from PIL import Image

    from jupyter_avml.data.records import ImageRecord

    path = tmp_path / "grey.png"
    Image.new("RGB", (60, 40), (120, 120, 120)).save(path)
    return [ImageRecord(image_url=str(path), label=tuple(objects), width=60, height=40, path=path)
            for objects in labels]


def test_targets_are_pixels_with_labels_from_one_and_empty_images_train(tmp_path):
    from jupyter_avml.data.records import ObjectLabel
    from jupyter_avml.models.detection import build_detector
    from jupyter_avml.models.zoo import get_model_spec
    from jupyter_avml.training.detection import DetectionTrainingSet, record_targets

    square = ((0.5, 0.25, 0.75, 0.25, 0.75, 0.75, 0.5, 0.75),)
    records = _records(tmp_path, SEGMENTATION, [
        (ObjectLabel.from_polygon("b", square), ObjectLabel("a", 0.1, 0.1, 0.2, 0.3, is_crowd=True)),
        (),
    ])
    found = record_targets(records[0], 60, 40, {"a": 0, "b": 1}, with_masks=True)
    assert _close(found["boxes"], [[30.0, 10.0, 45.0, 30.0], [6.0, 4.0, 12.0, 12.0]])
    assert found["classes"].tolist() == [1, 0] and found["iscrowd"].tolist() == [False, True]
    assert found["masks"].shape == (2, 40, 60)
    assert found["masks"][0].sum() == 15 * 20 and found["masks"][0, 10:30, 30:45].all()
    assert not found["masks"][1].any()  # no polygon: a box-only crowd object has an empty mask

    dataset = DetectionTrainingSet(records, ["a", "b"], with_masks=True, transform=lambda image, target: (
        image.float() / 255, target))
    image, target = dataset[0]
    assert image.shape == (3, 40, 60) and target["labels"].tolist() == [2, 1]  # crowd kept for training
    assert target["masks"].dtype == torch.uint8
    empty_image, empty = dataset[1]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,) and empty["masks"].shape == (0, 40, 60)

    torch.manual_seed(0)
    model = build_detector(get_model_spec("maskrcnn_resnet18_fpn"), 2, pretrained=False, min_size=64, max_size=64)
    losses = model([image, empty_image], [target, empty])
    assert all(torch.isfinite(v) for v in losses.values())


def test_tile_samples_follow_the_full_image_with_boxes_cut_to_each_tile(tmp_path):
    from jupyter_avml.data.records import ObjectLabel
    from jupyter_avml.training.detection import DetectionTrainingSet

    # 60x40 image, grid (2, 1), overlap 0: tiles x 0-30 and 30-60
    records = _records(tmp_path, DETECTION, [(ObjectLabel("a", 0.1, 0.25, 0.3, 0.75),
                                              ObjectLabel("b", 0.4, 0.25, 0.6, 0.75))])
    dataset = DetectionTrainingSet(records, ["a", "b"], with_masks=False, grid=(2, 1), overlap=0.0,
                                   transform=lambda image, target: (image, target))
    assert len(dataset) == 3
    full, left, right = (dataset[i] for i in range(3))
    assert full[0].shape == (3, 40, 60) and left[0].shape == (3, 40, 30) and right[0].shape == (3, 40, 30)
    assert _close(full[1]["boxes"], [[6, 10, 18, 30], [24, 10, 36, 30]])
    # "b" spans x 24-36: half of it in each tile (>= 25 %): kept in both, clipped
    assert left[1]["labels"].tolist() == [1, 2] and _close(left[1]["boxes"], [[6, 10, 18, 30], [24, 10, 30, 30]])
    assert right[1]["labels"].tolist() == [2] and _close(right[1]["boxes"], [[0, 10, 6, 30]])


def test_tile_samples_crop_the_masks_of_the_kept_instances(tmp_path):
    from jupyter_avml.data.records import ObjectLabel
    from jupyter_avml.training.detection import DetectionTrainingSet

    def square(x0, y0, x1, y1):
        return ObjectLabel.from_polygon("a", ((x0, y0, x1, y0, x1, y1, x0, y1),))

    # 60x40 image, tiles x 0-30 and 30-60: the first square is only in the left tile, the second in both
    records = _records(tmp_path, SEGMENTATION, [(square(0.1, 0.25, 0.3, 0.75), square(0.4, 0.25, 0.6, 0.75))])
    dataset = DetectionTrainingSet(records, ["a"], with_masks=True, grid=(2, 1), overlap=0.0,
                                   transform=lambda image, target: (image, target))
    full, left, right = (dataset[i][1] for i in range(3))
    assert full["masks"].shape == (2, 40, 60)
    assert left["masks"].shape == (2, 40, 30) and torch.equal(left["masks"], full["masks"][:, :, :30])
    assert right["masks"].shape == (1, 40, 30) and torch.equal(right["masks"], full["masks"][1:, :, 30:])
    assert int(right["masks"].sum()) == 6 * 20


def _coloured_sample(seed: int):
    """A grey 90x70 image with a red rectangle, its box and its mask."""
    rng = np.random.default_rng(seed)
    x0, y0 = int(rng.integers(0, 60)), int(rng.integers(0, 45))
    x1, y1 = x0 + int(rng.integers(8, 30)), y0 + int(rng.integers(8, 25))
    x1, y1 = min(x1, 90), min(y1, 70)
    pixels = torch.full((3, 70, 90), 128, dtype=torch.uint8)
    pixels[:, y0:y1, x0:x1] = torch.tensor([250, 10, 10], dtype=torch.uint8)[:, None, None]
    mask = torch.zeros(1, 70, 90, dtype=torch.uint8)
    mask[0, y0:y1, x0:x1] = 1
    target = {"boxes": tv_tensors.BoundingBoxes([[x0, y0, x1, y1]], format="XYXY", canvas_size=(70, 90)),
              "labels": torch.tensor([1]), "masks": tv_tensors.Mask(mask)}
    return tv_tensors.Image(pixels), target


def test_augmentation_keeps_boxes_on_the_object_and_masks_aligned():
    from jupyter_avml.training.detection_transforms import IMAGENET_MEAN, train_transform

    transform = train_transform()
    torch.manual_seed(0)
    sizes, dropped = set(), 0
    for seed in range(60):
        image, target = transform(*_coloured_sample(seed))
        assert image.dtype == torch.float32 and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        red = (image[0] > 0.9) & (image[1] < 0.1)
        sizes.add(tuple(image.shape[-2:]))
        if len(target["boxes"]) == 0:
            dropped += 1  # the crop left the object's centre out: box, label and mask go together
            assert target["labels"].numel() == 0 and target["masks"].shape[0] == 0
            continue
        x0, y0, x1, y1 = target["boxes"][0].tolist()
        assert target["boxes"].canvas_size == tuple(image.shape[-2:])
        ys, xs = torch.nonzero(red, as_tuple=True)
        assert red.any()
        # the box is exactly the extent of the object's visible pixels (crop, zoom-out and flip move whole pixels)
        assert (xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1) == (x0, y0, x1, y1)
        assert torch.equal(target["masks"][0].bool(), red)
        # the zoom-out canvas is the ImageNet mean colour
        background = ~red & ((image - 128 / 255).abs().amax(0) > 0.01)
        if background.any():
            mean = torch.tensor(IMAGENET_MEAN)[:, None]
            assert torch.allclose(image[:, background], mean, atol=1 / 255)
    assert len(sizes) > 10  # crops and zoom-outs happened
    assert dropped < 30


def test_an_image_without_boxes_is_never_cropped_but_may_be_zoomed_out():
    from jupyter_avml.training.detection_transforms import train_transform

    transform = train_transform()
    torch.manual_seed(1)
    image = tv_tensors.Image(torch.full((3, 30, 40), 7, dtype=torch.uint8))
    empty = {"boxes": tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=(30, 40)),
             "labels": torch.zeros(0, dtype=torch.int64)}
    shapes = {tuple(transform(image, empty)[0].shape) for _ in range(20)}
    assert all(h >= 30 and w >= 40 for _, h, w in shapes) and len(shapes) > 1


def test_training_batches_depend_only_on_seed_and_epoch(tiny_detection):
    from jupyter_avml.training.data import load_run_data
    from jupyter_avml.training.detection import DetectionRecipe
    from jupyter_avml.training.engine import seed_everything
    from jupyter_avml.workspace import Workspace

    config = config_for(tiny_detection)
    data = load_run_data(config, Workspace.resolve(tiny_detection.parent / "ws"))
    recipe = DetectionRecipe(config, data.class_names, data.train, data.valid)

    def epoch_tensors(epoch):
        seed_everything(config.seed, epoch + 1)  # as the engine does before every epoch
        batches = list(recipe.train_batches(epoch))
        assert len(batches) == recipe.num_train_batches() == 2  # 8 training images, batches of 4
        return [x for images, targets in batches for x in [*images, *(t[k] for t in targets for k in sorted(t))]]

    def same(a, b):
        return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b, strict=True))

    first = epoch_tensors(0)
    assert same(first, epoch_tensors(0))
    assert not same(first, epoch_tensors(1))


# -- evaluation ------------------------------------------------------------------------------------------
class _Oracle(torch.nn.Module):
    """Predicts given boxes (class 1 = "circle") for each image by its width, records its threshold."""

    def __init__(self, boxes_by_width):
        super().__init__()
        self.boxes_by_width = boxes_by_width
        self.score_thresh = 0.3
        self.thresholds_seen = []

    def forward(self, images):
        self.thresholds_seen.append(self.score_thresh)
        out = []
        for image in images:
            boxes = torch.tensor(self.boxes_by_width[image.shape[-1]], dtype=torch.float32).reshape(-1, 4)
            out.append({"boxes": boxes, "scores": torch.full((len(boxes),), 0.9),
                        "labels": torch.ones(len(boxes), dtype=torch.int64)})
        return out


def test_crowd_objects_count_neither_as_positives_nor_their_detections_as_false_positives(tmp_path):
    from PIL import Image

    from jupyter_avml.training.data import load_run_data
    from jupyter_avml.training.detection import EVAL_SCORE_THRESH, DetectionRecipe
    from jupyter_avml.workspace import Workspace

    for name, width in (("a.png", 50), ("b.png", 40)):
        Image.new("RGB", (width, 40), (90, 90, 90)).save(tmp_path / name)
    rows = [{"image_url": "a.png", "label": [{"label": "circle", "topX": 0.2, "topY": 0.25, "bottomX": 0.6,
                                              "bottomY": 0.75}]},
            {"image_url": "b.png", "label": [{"label": "circle", "topX": 0.25, "topY": 0.25, "bottomX": 0.75,
                                              "bottomY": 0.75, "isCrowd": 1}]}]
    for split in ("train", "valid"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = AutoMLImageConfig(task=DETECTION, training_data=str(tmp_path / "train.jsonl"),
                               validation_data=str(tmp_path / "valid.jsonl"), **{**TINY, "model_name":
                                                                                  "fasterrcnn_resnet18_fpn"})
    data = load_run_data(config, Workspace.resolve(tmp_path / "ws"))
    recipe = DetectionRecipe(config, data.class_names, data.train, data.valid)
    # the real object of a.png, and a detection on the crowd region of b.png
    model = _Oracle({50: [[10, 10, 30, 30]], 40: [[10, 10, 30, 30]]})
    result = recipe.evaluate(model, torch.device("cpu"))
    assert result.per_class["circle"]["support"] == 1.0  # the crowd object is not a positive
    assert result.scalars["precision"] == 1.0 and result.scalars["recall"] == 1.0  # nor its detection an FP
    assert result.primary_value == 1.0
    assert model.thresholds_seen == [EVAL_SCORE_THRESH] and model.score_thresh == 0.3  # lowered, then restored
