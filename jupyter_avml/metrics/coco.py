"""COCO mean average precision through pycocotools, with the ground truth and detections built in memory.

What is built (no file is written):

* images: ``id = index + 1`` in list order, ``width``/``height`` from the targets (or the mask size);
* categories: ``id = class index + 1``, ``name`` = class name (ids start at 1 because pycocotools treats
  annotation id 0 as "unmatched");
* ground truth: ``bbox`` in ``[x, y, w, h]`` pixels, ``iscrowd`` (0/1), ``area`` = mask area for ``segm``,
  box area ``w * h`` for ``bbox`` (pycocotools uses it for the small/medium/large ranges), and for ``segm``
  a ``segmentation`` RLE from ``pycocotools.mask.encode(np.asfortranarray(mask.astype(np.uint8)))``;
* detections: through ``COCO.loadRes`` (as from a results file): ``bbox`` + ``score`` for ``bbox``,
  ``segmentation`` RLE + ``score`` for ``segm``.

``COCOeval`` then runs with its default parameters (IoU 0.50:0.05:0.95, areas all/small/medium/large,
maxDets 1/10/100) and its printing suppressed. Crowd ground truths follow pycocotools' own rule (a
detection matching a crowd region -- IoU measured as intersection over the detection's area -- is ignored),
which differs from our VOC rule (see :mod:`jupyter_avml.metrics.detection`).

Undefined values: pycocotools reports -1 for a summary number with nothing to average (e.g.
``coco_map_small`` when there is no small ground truth); the scalars keep that convention.
:func:`~jupyter_avml.metrics.detection.detection_metrics` never lets the primary ``mean_average_precision``
be -1 (it uses 0.0). Per-class AP (AP@[.5:.95], all areas, 100 detections, the mean of the eval's
``precision`` entries that are not -1) is NaN for a class without non-crowd ground truth.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from jupyter_avml.metrics.result import curve_dict

if TYPE_CHECKING:
    from jupyter_avml.metrics.detection import _Image

__all__ = ["COCO_STAT_NAMES", "CocoEvaluation", "coco_evaluate"]

# Order of COCOeval.stats for bbox/segm.
COCO_STAT_NAMES = (
    "coco_map", "coco_map_50", "coco_map_75", "coco_map_small", "coco_map_medium", "coco_map_large",
    "coco_mar_1", "coco_mar_10", "coco_mar_100", "coco_mar_small", "coco_mar_medium", "coco_mar_large",
)


@dataclass
class CocoEvaluation:
    """Output of :func:`coco_evaluate`.

    Attributes
    ----------
    stats : dict[str, float]
        The 12 ``COCOeval.stats`` numbers under :data:`COCO_STAT_NAMES` (-1 where undefined).
    per_class_ap : np.ndarray
        ``[C]`` AP@[.5:.95] per class, NaN without ground truth.
    pr_curves : dict[int, dict[str, list[float]]]
        Class index -> the 101-point interpolated PR curve at IoU 0.5 (all areas, 100 detections), with the
        score reached at each recall level as the threshold (precision and score 0 past the highest recall
        reached, as pycocotools stores it); empty lists without ground truth.
    """

    stats: dict[str, float]
    per_class_ap: np.ndarray
    pr_curves: dict[int, dict[str, list[float]]]


def _encode(masks: np.ndarray) -> list[dict[str, Any]]:
    from pycocotools import mask as mask_utils

    if not len(masks):
        return []
    # encode takes [H, W, N] Fortran-ordered uint8 and returns one RLE per mask.
    return mask_utils.encode(np.asfortranarray(np.moveaxis(masks.astype(np.uint8), 0, -1)))


def _xywh(boxes: np.ndarray) -> np.ndarray:
    out = boxes.astype(np.float64).copy()
    out[:, 2:] -= out[:, :2]
    return out


def _datasets(images: Sequence[_Image], class_names: Sequence[str],
              iou_type: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ground-truth dataset dict and the list of detection dicts."""
    from pycocotools import mask as mask_utils

    gt_images, annotations, detections = [], [], []
    for index, im in enumerate(images):
        image_id = index + 1
        gt_images.append({"id": image_id, "width": int(im.width), "height": int(im.height)})
        gt_xywh = _xywh(im.gt_boxes)
        rles = _encode(im.gt_masks) if iou_type == "segm" else []
        if iou_type == "segm":
            areas = mask_utils.area(rles) if rles else np.zeros(0)
        else:
            areas = gt_xywh[:, 2] * gt_xywh[:, 3]
        for j in range(len(gt_xywh)):
            ann = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(im.gt_labels[j]) + 1,
                "bbox": [float(v) for v in gt_xywh[j]],
                "area": float(areas[j]),
                "iscrowd": int(im.gt_crowd[j]),
            }
            if iou_type == "segm":
                ann["segmentation"] = rles[j]
            annotations.append(ann)
        if iou_type == "segm":
            for rle, label, score in zip(_encode(im.dt_masks), im.dt_labels, im.dt_scores, strict=True):
                detections.append({"image_id": image_id, "category_id": int(label) + 1,
                                   "segmentation": rle, "score": float(score)})
        else:
            for box, label, score in zip(_xywh(im.dt_boxes), im.dt_labels, im.dt_scores, strict=True):
                detections.append({"image_id": image_id, "category_id": int(label) + 1,
                                   "bbox": [float(v) for v in box], "score": float(score)})
    dataset = {
        "images": gt_images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": str(name)} for k, name in enumerate(class_names)],
    }
    return dataset, detections


def coco_evaluate(images: Sequence[_Image], class_names: Sequence[str], iou_type: str) -> CocoEvaluation:
    """Run ``COCOeval`` on validated images (see :func:`~jupyter_avml.metrics.detection.detection_metrics`)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset, detections = _datasets(images, class_names, iou_type)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and the summary table
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        if detections:
            coco_dt = coco_gt.loadRes(detections)
        else:  # loadRes cannot take an empty list; an empty result set is an index with no annotation
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(dataset["images"]), "categories": list(dataset["categories"]),
                               "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {name: float(value) for name, value in zip(COCO_STAT_NAMES, evaluator.stats, strict=True)}

    # precision: [T iou thresholds, R recall levels, K classes, A areas, M maxDets]; area "all", 100 dets.
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    scores = evaluator.eval["scores"][:, :, :, 0, -1]
    iou50 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))
    recall_levels = evaluator.params.recThrs
    per_class_ap = np.full(len(class_names), math.nan)
    curves: dict[int, dict[str, list[float]]] = {}
    for k in range(len(class_names)):
        p = precision[:, :, k]
        defined = p > -1
        if defined.any():
            per_class_ap[k] = float(p[defined].mean())
        if (precision[iou50, :, k] > -1).any():
            curves[k] = curve_dict(precision[iou50, :, k], recall_levels, scores[iou50, :, k])
        else:
            curves[k] = curve_dict(np.zeros(0), np.zeros(0), np.zeros(0))
    return CocoEvaluation(stats=stats, per_class_ap=per_class_ap, pr_curves=curves)
