"""Our in-memory COCO path against pycocotools run the documented way: json files, COCO(), loadRes, COCOeval."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from jupyter_avml.metrics import ImagePredictions, ImageTargets, detection_metrics
from jupyter_avml.metrics.coco import COCO_STAT_NAMES

CLASSES = ["cat", "dog", "bird"]


def _random_boxes(rng, n, w, h):
    # Sides from 8 to 130 px: small (< 32^2), medium and large (> 96^2) areas all occur.
    size = rng.uniform(8, 130, (n, 2))
    xy = rng.uniform(0, 1, (n, 2)) * (np.array([w, h]) - size)
    return np.c_[xy, xy + size]


def _box_masks(boxes, w, h, rng):
    """An ellipse inscribed in each box, so mask IoU differs from box IoU."""
    yy, xx = np.mgrid[0:h, 0:w]
    masks = np.zeros((len(boxes), h, w), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, max((x1 - x0) / 2, 1), max((y1 - y0) / 2, 1)
        masks[i] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= rng.uniform(0.8, 1.0)
    return masks


def _scene(seed, n_images=12, segm=False, w=200, h=160):
    rng = np.random.default_rng(seed)
    targets, predictions = [], []
    for i in range(n_images):
        n = int(rng.integers(0, 7)) if i else 0  # the first image has no ground truth at all
        boxes = _random_boxes(rng, n, w, h)
        labels = rng.integers(0, len(CLASSES), n)
        crowd = rng.random(n) < 0.15
        found = rng.random(n) < 0.75
        jitter = rng.normal(0, 4, (found.sum(), 4))
        n_fp = int(rng.integers(0, 4))
        dup = found & (rng.random(n) < 0.3)  # some objects detected twice
        p_boxes = np.r_[boxes[found] + jitter, _random_boxes(rng, n_fp, w, h), boxes[dup] + 2.0]
        p_boxes = np.clip(p_boxes, 0, [w, h, w, h])
        p_labels = np.r_[labels[found], rng.integers(0, len(CLASSES), n_fp), labels[dup]]
        p_scores = np.round(rng.random(len(p_boxes)), 2)  # rounded: equal scores occur
        t = ImageTargets(boxes, labels, iscrowd=crowd, width=w, height=h)
        p = ImagePredictions(p_boxes, p_scores, p_labels)
        if segm:
            t.masks = _box_masks(boxes, w, h, rng)
            p.masks = _box_masks(p_boxes, w, h, rng)
        targets.append(t)
        predictions.append(p)
    return targets, predictions


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _reference(tmp_path, targets, predictions, iou_type):
    """pycocotools on json files written from the same arrays; returns (stats, per-class AP)."""
    images, anns, dets = [], [], []
    for i, (t, p) in enumerate(zip(targets, predictions, strict=True)):
        images.append({"id": i + 1, "width": t.width, "height": t.height, "file_name": f"{i}.jpg"})
        for j, (x0, y0, x1, y1) in enumerate(t.boxes):
            ann = {"id": len(anns) + 1, "image_id": i + 1, "category_id": int(t.labels[j]) + 1,
                   "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": int(t.iscrowd[j])}
            if iou_type == "segm":
                ann["segmentation"] = _rle(t.masks[j])
                ann["area"] = int(t.masks[j].sum())
            else:
                ann["area"] = (x1 - x0) * (y1 - y0)
            anns.append(ann)
        for j, (x0, y0, x1, y1) in enumerate(p.boxes):
            det = {"image_id": i + 1, "category_id": int(p.labels[j]) + 1, "score": float(p.scores[j])}
            if iou_type == "segm":
                det["segmentation"] = _rle(p.masks[j])
            else:
                det["bbox"] = [x0, y0, x1 - x0, y1 - y0]
            dets.append(det)
    gt_path, dt_path = tmp_path / f"gt_{iou_type}.json", tmp_path / f"dt_{iou_type}.json"
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(CLASSES)]
    gt_path.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    dt_path.write_text(json.dumps(dets))
    coco_gt = COCO(str(gt_path))
    coco_dt = coco_gt.loadRes(str(dt_path))
    ev = COCOeval(coco_gt, coco_dt, iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    precision = ev.eval["precision"][:, :, :, 0, -1]
    per_class = [float(np.mean(precision[:, :, k][precision[:, :, k] > -1])) if (precision[:, :, k] > -1).any()
                 else math.nan for k in range(len(CLASSES))]
    return ev.stats, per_class


@pytest.mark.parametrize("iou_type,seed", [("bbox", 0), ("bbox", 1), ("segm", 2)])
def test_coco_matches_pycocotools_from_files(tmp_path, iou_type, seed):
    targets, predictions = _scene(seed, segm=iou_type == "segm")
    assert any(t.iscrowd.any() for t in targets)  # crowd annotations are part of the comparison
    stats, per_class = _reference(tmp_path, targets, predictions, iou_type)
    res = detection_metrics(targets, predictions, CLASSES, metric_type="coco", iou_type=iou_type)
    ours = [res.scalars[name] for name in COCO_STAT_NAMES]
    np.testing.assert_allclose(ours, stats, atol=1e-4)
    assert 0.05 < stats[0] < 0.95  # a non-trivial case: neither nothing nor everything found
    assert res.primary_value == pytest.approx(stats[0], abs=1e-4)
    for k, name in enumerate(CLASSES):
        if math.isnan(per_class[k]):
            assert math.isnan(res.per_class[name]["average_precision"])
        else:
            assert res.per_class[name]["average_precision"] == pytest.approx(per_class[k], abs=1e-4)
        curve = res.pr_curves[name]
        assert len(curve["recall"]) == 101 and curve["recall"][0] == 0.0 and curve["recall"][-1] == 1.0


def test_segm_and_bbox_differ_on_the_same_predictions(tmp_path):
    targets, predictions = _scene(2, segm=True)
    box = detection_metrics(targets, predictions, CLASSES, metric_type="coco", iou_type="bbox")
    mask = detection_metrics(targets, predictions, CLASSES, metric_type="coco", iou_type="segm")
    assert box.scalars["coco_map"] != pytest.approx(mask.scalars["coco_map"], abs=1e-3)


def test_no_predictions_and_no_ground_truth():
    targets, predictions = _scene(3, n_images=4)
    empty = [ImagePredictions(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)) for _ in predictions]
    res = detection_metrics(targets, empty, CLASSES, metric_type="coco")
    assert res.scalars["coco_map"] == 0.0 and res.primary_value == 0.0
    # No ground truth anywhere: pycocotools reports -1 (kept in coco_map); the primary becomes 0.0.
    no_gt = [ImageTargets(np.zeros((0, 4)), np.zeros(0, int), width=200, height=160) for _ in targets]
    res = detection_metrics(no_gt, predictions, CLASSES, metric_type="coco")
    assert res.scalars["coco_map"] == -1.0
    assert res.primary_value == 0.0
    assert all(math.isnan(res.per_class[name]["average_precision"]) for name in CLASSES)
