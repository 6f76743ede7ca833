"""FiftyOne's COCO-style mAP and ours (pycocotools through jupyter_avml.metrics) on the same predictions.

Predictions are the ground truth moved, relabelled, dropped and padded with false positives at random scores,
so that every part of the matching is exercised (crowd regions included). They agree within 1e-3. The two known
differences are shown to be what they are (``qa.evaluation`` writes them down):

* instance masks with crowd regions: FiftyOne 1.22 leaves out the crowd rule; with that omission patched, the two
  agree again;
* an IoU exactly on a threshold (boxes on the pixel grid): FiftyOne computes box IoU in fractions of the image,
  pycocotools in pixels, and the fraction result can land a rounding error under the threshold.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from jupyter_avml.data.shapes import make_shapes
from jupyter_avml.qa import evaluate, to_fiftyone
from jupyter_avml.qa.evaluation import MAP_TOLERANCE
from jupyter_avml.qa.labels import GROUND_TRUTH, full_mask, mask_in_box

SIZE = 48


def _crowd_first_objects(jsonl, rows=(0, 3, 6)) -> None:
    lines = jsonl.read_text().splitlines()
    for row in rows:
        record = json.loads(lines[row])
        record["label"][0]["isCrowd"] = 1
        lines[row] = json.dumps(record)
    jsonl.write_text("\n".join(lines) + "\n")


def _synthetic_predictions(fo, dataset, seed: int, masks: bool) -> str:
    """A prediction field of jittered ground truth, wrong classes, misses and extra objects; recorded as predictions."""
    rng = np.random.default_rng(seed)
    classes = dataset.info["avml"]["classes"]
    values = {}
    for sample in dataset.iter_samples():
        found = []
        for truth in sample[GROUND_TRUTH].detections:
            if rng.random() < 0.15:
                continue  # a miss
            label = truth.label if rng.random() > 0.1 else classes[rng.integers(len(classes))]
            found.append(_moved(fo, rng, truth, label, masks))
        for _ in range(rng.integers(0, 3)):  # false positives
            x, y = rng.random(2) * 0.7
            found.append(_extra(fo, rng, classes[rng.integers(len(classes))], x, y, masks))
        values[sample.id] = fo.Detections(detections=found)
    dataset.set_values("synthetic", values, key_field="id")
    info = dict(dataset.info["avml"])
    info["predictions"] = {"synthetic": {"classes": classes, "complete": True, "time": 1.0}}
    dataset.info = {**dataset.info, "avml": info}
    dataset.save()
    return "synthetic"


def _moved(fo, rng, truth, label: str, masks: bool):
    """``truth`` moved a little: a box anywhere (as a model's boxes are), or the mask shifted by whole pixels with a
    few pixels dropped."""
    if not masks:
        x, y, w, h = (v + d for v, d in zip(truth.bounding_box, rng.normal(0, 0.03, 4), strict=True))
        x, y = max(x, 0.0), max(y, 0.0)
        return fo.Detection(label=label, bounding_box=[x, y, min(max(w, 0.02), 1 - x), min(max(h, 0.02), 1 - y)],
                            confidence=float(rng.random()))
    full = full_mask(truth, SIZE, SIZE)
    shifted = np.roll(full, tuple(rng.integers(-2, 3, 2)), axis=(0, 1)) & (rng.random(full.shape) < 0.95)
    if not shifted.any():
        shifted = full
    box, mask = mask_in_box(shifted, SIZE, SIZE)
    return fo.Detection(label=label, bounding_box=box, mask=mask, confidence=float(rng.random()))


def _extra(fo, rng, label: str, x: float, y: float, masks: bool):
    if not masks:
        return fo.Detection(label=label, bounding_box=[x, y, 0.2, 0.2], confidence=float(rng.random()))
    x0, y0 = int(x * SIZE), int(y * SIZE)
    box = [x0 / SIZE, y0 / SIZE, 10 / SIZE, 10 / SIZE]
    return fo.Detection(label=label, bounding_box=box, mask=rng.random((10, 10)) < 0.8, confidence=float(rng.random()))


@pytest.mark.parametrize("task, crowd", [("image-object-detection", True), ("image-instance-segmentation", False)],
                         ids=["boxes-with-crowds", "masks"])
def test_fiftyone_and_our_coco_map_agree(task, crowd, tmp_path, qa_workspace, fo_datasets):
    jsonl = make_shapes(tmp_path / "data", task, n=24, size=SIZE, seed=5, color_by_class=True, max_objects=4)
    if crowd:
        _crowd_first_objects(jsonl)
    dataset = to_fiftyone(jsonl, task=task, progress=False)
    field = _synthetic_predictions(fo_datasets, dataset, seed=0, masks=task.endswith("segmentation"))
    result = evaluate(dataset, field)
    assert 0.05 < result.metrics["mAP"] < 0.95  # a mAP that says something about the matching
    assert result.map_difference < MAP_TOLERANCE, result
    assert not result.note


def test_masks_with_crowd_regions_differ_only_by_fiftyones_missing_crowd_rule(tmp_path, qa_workspace, fo_datasets,
                                                                               monkeypatch):
    import fiftyone.utils.iou as foui

    jsonl = make_shapes(tmp_path / "data", "image-instance-segmentation", n=24, size=SIZE, seed=6,
                        color_by_class=True, max_objects=4)
    _crowd_first_objects(jsonl, rows=range(0, 24, 2))
    dataset = to_fiftyone(jsonl, task="image-instance-segmentation", progress=False)
    field = _synthetic_predictions(fo_datasets, dataset, seed=1, masks=True)
    as_shipped = evaluate(dataset, field)
    assert "crowd" in as_shipped.note

    # FiftyOne's dense mask IoU with the crowd rule (what its box IoU does: a crowd region's "union" is the
    # prediction alone), and the crowd flags passed on to it: then the same mAP as ours.
    def dense_iou(gt, pred, gt_crowd=False):
        truth, predicted = full_mask(gt, SIZE, SIZE), full_mask(pred, SIZE, SIZE)
        union = predicted.sum() if gt_crowd else np.logical_or(truth, predicted).sum()
        return float(np.logical_and(truth, predicted).sum() / union) if union else 0.0

    def dense_with_crowds(preds, gts, tolerance, error_level, iscrowd=None, classwise=False, sparse=False):
        return foui._compute_dense_mask_ious(preds, gts, error_level, iscrowd=iscrowd, classwise=classwise,
                                             sparse=sparse)

    monkeypatch.setattr(foui, "_dense_iou", dense_iou)
    monkeypatch.setattr(foui, "_compute_mask_ious", dense_with_crowds)
    patched = evaluate(dataset, field)
    assert patched.map_difference < MAP_TOLERANCE, patched
    assert as_shipped.ours == patched.ours
    assert as_shipped.map_difference > patched.map_difference


def test_an_iou_exactly_on_a_threshold_can_fall_on_either_side(tmp_path, qa_workspace, fo_datasets):
    from fiftyone.utils.iou import compute_bbox_iou
    from PIL import Image

    # A ground-truth box 8 px wide and a prediction over its left half: IoU 0.5 exactly, in pixels.
    (tmp_path / "images").mkdir()
    rows = []
    for k in range(2):
        Image.new("RGB", (SIZE, SIZE), (90 + k, 90, 90)).save(tmp_path / "images" / f"{k}.png")
        rows.append({"image_url": f"images/{k}.png", "label": [
            {"label": "box", "topX": 0.0, "topY": 0.0, "bottomX": 8 / SIZE, "bottomY": 12 / SIZE}]})
    jsonl = tmp_path / "grid.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = to_fiftyone(jsonl, task="image-object-detection", progress=False)
    fo = fo_datasets
    prediction = [0.0, 0.0, 4 / SIZE, 12 / SIZE]
    dataset.set_values("grid", [fo.Detections(detections=[fo.Detection(label="box", bounding_box=prediction,
                                                                        confidence=0.9)])] * 2)
    info = dict(dataset.info["avml"])
    info["predictions"] = {"grid": {"classes": ["box"], "complete": True, "time": 1.0}}
    dataset.info = {**dataset.info, "avml": info}
    dataset.save()
    truth = dataset.first()[GROUND_TRUTH].detections[0]
    assert compute_bbox_iou(truth, dataset.first()["grid"].detections[0]) < 0.5  # 0.49999999999999994
    result = evaluate(dataset, "grid")
    # pycocotools: a match at IoU 0.5 only, AP 1 there and 0 at the nine stricter thresholds; FiftyOne: no match.
    assert result.ours["coco_map"] == pytest.approx(0.1)
    assert result.metrics["mAP"] == 0.0
