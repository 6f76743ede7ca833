"""Object detection and instance segmentation metrics: our VOC mAP, and the entry point for every metric type.

Contract: pixel coordinates, boxes ``xyxy`` (``x0, y0, x1, y1``), class indices in ``[0, C)``; masks are
boolean ``[*, H, W]`` of the image size. IoU is continuous (``(x1 - x0) * (y1 - y0)``, no VOC "+1").

VOC mean average precision (``metric_type="voc"``), precisely
------------------------------------------------------------
1. Per image and class, predictions are taken by decreasing score (a stable sort: equal scores keep their
   input order). Each one is matched greedily to the **unmatched non-crowd** ground truth of its class in
   its image with the highest IoU (the first such box on equal IoU).
2. Crowd rule: crowd ground truths (``iscrowd``) can be matched by any number of predictions and are never
   used up. A prediction whose best match -- the highest IoU among the unmatched non-crowd boxes and all
   crowd boxes of its class, a non-crowd box winning a tie -- is a crowd box with IoU >= 0.5 is *ignored*:
   neither a true nor a false positive. Otherwise the prediction is a true positive if the best match is a
   non-crowd box with IoU >= 0.5, and a false positive if not. Crowd boxes do not count as positives.
3. Per class, the kept predictions of all images are ranked by score (stable: image order, then the
   order of step 1, on ties); precision and recall are taken after each one; AP is the all-point
   interpolated area (VOC2010+): the precision envelope made monotone (each precision replaced by the
   highest precision at any greater or equal recall), summed over the recall steps. A class with
   ground truth and no prediction has AP 0.
4. ``mean_average_precision`` is the mean over the classes with at least one non-crowd ground truth. Classes
   without any get AP NaN and are left out -- so false positives of a class absent from the ground truth do
   not lower the mAP (they do lower ``precision``). With no ground truth at all the mAP is 0.0.

``precision`` and ``recall`` (micro, over all classes) count the true and false positives of step 2 among the
predictions with ``score >= score_threshold``; recall divides by the number of non-crowd ground truths.
Matching in score order makes them independent of the lower-scoring predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jupyter_avml.metrics.result import MetricsResult, curve_dict
from jupyter_avml.tasks import ImageTask

__all__ = [
    "ImagePredictions",
    "ImageTargets",
    "METRIC_TYPES",
    "average_precision_all_points",
    "box_iou",
    "detection_metrics",
    "mask_iou",
    "merge_box_and_mask",
]

METRIC_TYPES = ("none", "coco", "voc", "coco_voc")
IOU_TYPES = ("bbox", "segm")
VOC_IOU_THRESHOLD = 0.5

# status of a prediction after matching
_FP, _TP, _IGNORED = 0, 1, -1


@dataclass
class ImageTargets:
    """Ground truth of one image, in pixels.

    Attributes
    ----------
    boxes : np.ndarray
        ``[M, 4]`` float, ``xyxy`` pixel coordinates.
    labels : np.ndarray
        ``[M]`` int class index in ``[0, C)``.
    iscrowd : np.ndarray | None
        ``[M]`` bool; None means no crowd annotation.
    masks : np.ndarray | None
        ``[M, H, W]`` bool instance masks (segmentation only).
    width, height : int
        Image size in pixels (0 when unknown; taken from the masks when needed).
    """

    boxes: np.ndarray
    labels: np.ndarray
    iscrowd: np.ndarray | None = None
    masks: np.ndarray | None = None
    width: int = 0
    height: int = 0


@dataclass
class ImagePredictions:
    """Predictions for one image, in pixels.

    Attributes
    ----------
    boxes : np.ndarray
        ``[K, 4]`` float, ``xyxy`` pixel coordinates.
    scores : np.ndarray
        ``[K]`` float confidence.
    labels : np.ndarray
        ``[K]`` int class index in ``[0, C)``.
    masks : np.ndarray | None
        ``[K, H, W]`` bool masks, already binarised (segmentation only).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None = None


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of ``xyxy`` boxes: ``[K, 4] x [M, 4] -> [K, M]`` (0 where the union is empty)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    wh = np.maximum(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros(inter.shape, dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


# Masks are converted to float in blocks of at most this many pixels (64 MiB of float32) to bound memory.
_MASK_BLOCK_PIXELS = 2**24


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of boolean masks: ``[K, H, W] x [M, H, W] -> [K, M]`` (0 where the union is empty)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"masks of different sizes cannot be compared: {a.shape[1:]} vs {b.shape[1:]}")
    pixels = int(np.prod(a.shape[1:]))
    a2 = a.reshape(a.shape[0], pixels)
    b2 = b.reshape(b.shape[0], pixels)
    inter = np.zeros((len(a2), len(b2)), dtype=np.float64)
    if len(a2) and len(b2) and pixels:
        # A matrix product counts the overlaps far faster than bool ops per pair; float32 sums of 0/1 are
        # exact below 2**24 pixels, float64 beyond.
        dtype = np.float32 if pixels < 2**24 else np.float64
        rows = max(1, _MASK_BLOCK_PIXELS // pixels)
        b_blocks = [(j, b2[j:j + rows].astype(dtype)) for j in range(0, len(b2), rows)]
        for i in range(0, len(a2), rows):
            a_block = a2[i:i + rows].astype(dtype)
            for j, b_block in b_blocks:
                inter[i:i + rows, j:j + rows] = a_block @ b_block.T
    union = np.count_nonzero(a2, axis=1)[:, None] + np.count_nonzero(b2, axis=1)[None, :] - inter
    out = np.zeros(inter.shape, dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def average_precision_all_points(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2010+ all-point interpolated average precision of a ranked list.

    ``recall`` and ``precision`` are the values after each ranked prediction (recall non-decreasing). The
    precision envelope is made monotone (each value replaced by the maximum at any greater or equal recall)
    and integrated as a step function over the recall change points, from recall 0.
    """
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@dataclass
class _Image:
    """One image's arrays, validated."""

    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    gt_crowd: np.ndarray
    gt_masks: np.ndarray | None
    width: int
    height: int
    dt_boxes: np.ndarray
    dt_scores: np.ndarray
    dt_labels: np.ndarray
    dt_masks: np.ndarray | None


def _prepare(targets: Sequence[ImageTargets], predictions: Sequence[ImagePredictions], num_classes: int,
             iou_type: str) -> list[_Image]:
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} images of targets but {len(predictions)} of predictions")
    images = []
    for i, (t, p) in enumerate(zip(targets, predictions, strict=True)):
        gt_boxes = np.asarray(t.boxes, dtype=np.float64).reshape(-1, 4)
        gt_labels = np.asarray(t.labels, dtype=np.int64).reshape(-1)
        m = len(gt_boxes)
        gt_crowd = np.zeros(m, bool) if t.iscrowd is None else np.asarray(t.iscrowd, dtype=bool).reshape(-1)
        dt_boxes = np.asarray(p.boxes, dtype=np.float64).reshape(-1, 4)
        dt_scores = np.asarray(p.scores, dtype=np.float64).reshape(-1)
        dt_labels = np.asarray(p.labels, dtype=np.int64).reshape(-1)
        k = len(dt_boxes)
        if len(gt_labels) != m or len(gt_crowd) != m:
            raise ValueError(f"image {i}: targets have {m} boxes, {len(gt_labels)} labels, {len(gt_crowd)} iscrowd")
        if len(dt_scores) != k or len(dt_labels) != k:
            raise ValueError(f"image {i}: predictions have {k} boxes, {len(dt_scores)} scores, {len(dt_labels)} labels")
        for what, labels in (("target", gt_labels), ("prediction", dt_labels)):
            if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
                raise ValueError(f"image {i}: {what} labels must lie in [0, {num_classes}), got {labels.tolist()}")
        gt_masks = dt_masks = None
        width, height = int(t.width), int(t.height)
        if iou_type == "segm":
            if t.masks is None or p.masks is None:
                raise ValueError(f"image {i}: iou_type 'segm' needs masks in both targets and predictions")
            gt_masks = np.asarray(t.masks, dtype=bool)
            dt_masks = np.asarray(p.masks, dtype=bool)
            if gt_masks.ndim != 3 or len(gt_masks) != m:
                raise ValueError(f"image {i}: target masks must be [{m}, H, W], got {gt_masks.shape}")
            if dt_masks.ndim != 3 or len(dt_masks) != k:
                raise ValueError(f"image {i}: prediction masks must be [{k}, H, W], got {dt_masks.shape}")
            if m and k and gt_masks.shape[1:] != dt_masks.shape[1:]:
                raise ValueError(f"image {i}: target masks are {gt_masks.shape[1:]}, "
                                 f"prediction masks {dt_masks.shape[1:]}")
            size = gt_masks.shape[1:] if m else dt_masks.shape[1:]
            height, width = height or int(size[0]), width or int(size[1])
        images.append(_Image(gt_boxes, gt_labels, gt_crowd, gt_masks, width, height,
                             dt_boxes, dt_scores, dt_labels, dt_masks))
    return images


def _greedy_match(iou: np.ndarray, crowd_iou: np.ndarray, threshold: float) -> np.ndarray:
    """Status of each prediction against the non-crowd and the crowd ground truth of one image.

    Rows are predictions, already in matching order (score descending, stable); IoU entries between a
    prediction and a box of another class must be negative, so that they never match.
    """
    k, m = iou.shape
    best_crowd = crowd_iou.max(axis=1) if crowd_iou.shape[1] else np.full(k, -np.inf)
    status = np.where(best_crowd >= threshold, _IGNORED, _FP).astype(np.int8)
    if m == 0:
        return status
    available = np.ones(m, dtype=bool)
    # Only a prediction overlapping some non-crowd box enough can become a TP; the rest are settled above.
    for row in np.flatnonzero((iou >= threshold).any(axis=1)).tolist():
        candidates = np.where(available, iou[row], -1.0)
        j = int(candidates.argmax())
        best = candidates[j]
        if best >= threshold and best >= best_crowd[row]:
            status[row] = _TP
            available[j] = False
    return status


@dataclass
class _Matched:
    """Per class: scores and statuses of its predictions in global rank order, and its positives."""

    scores: list[np.ndarray]
    status: list[np.ndarray]
    n_positives: np.ndarray


def _match(images: list[_Image], num_classes: int, iou_type: str) -> _Matched:
    n_pos = np.zeros(num_classes, dtype=np.int64)
    all_scores, all_labels, all_status = [], [], []
    for im in images:
        n_pos += np.bincount(im.gt_labels[~im.gt_crowd], minlength=num_classes)
        if not len(im.dt_scores):
            continue
        order = np.argsort(-im.dt_scores, kind="stable")
        labels = im.dt_labels[order]
        if iou_type == "segm":
            iou = mask_iou(im.dt_masks[order], im.gt_masks)
        else:
            iou = box_iou(im.dt_boxes[order], im.gt_boxes)
        # One matrix per image; pairs of different classes are set to -1 so they can never match.
        iou[labels[:, None] != im.gt_labels[None, :]] = -1.0
        status = _greedy_match(iou[:, ~im.gt_crowd], iou[:, im.gt_crowd], VOC_IOU_THRESHOLD)
        all_scores.append(im.dt_scores[order])
        all_labels.append(labels)
        all_status.append(status)
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    labels = np.concatenate(all_labels) if all_labels else np.zeros(0, dtype=np.int64)
    status = np.concatenate(all_status) if all_status else np.zeros(0, dtype=np.int8)
    # Rank per class by score; the stable sort breaks ties by image order, then by the order within the image.
    order = np.lexsort((-scores, labels))  # lexsort is stable: by label, then by score descending
    bounds = np.searchsorted(labels[order], np.arange(num_classes + 1))
    out_scores = [scores[order[bounds[c]:bounds[c + 1]]] for c in range(num_classes)]
    out_status = [status[order[bounds[c]:bounds[c + 1]]] for c in range(num_classes)]
    return _Matched(out_scores, out_status, n_pos)


def _threshold_counts(matched: _Matched, score_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per class: true and false positives among the predictions scoring >= score_threshold."""
    tp = np.array([np.count_nonzero((st == _TP) & (s >= score_threshold))
                   for s, st in zip(matched.scores, matched.status, strict=True)], dtype=np.int64)
    fp = np.array([np.count_nonzero((st == _FP) & (s >= score_threshold))
                   for s, st in zip(matched.scores, matched.status, strict=True)], dtype=np.int64)
    return tp, fp


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else 0.0


def _voc(matched: _Matched) -> tuple[np.ndarray, dict[int, dict[str, list[float]]]]:
    """Per-class AP (NaN without positives) and PR curves."""
    num_classes = len(matched.scores)
    ap = np.full(num_classes, math.nan)
    curves = {}
    for c in range(num_classes):
        keep = matched.status[c] != _IGNORED
        st = matched.status[c][keep]
        scores = matched.scores[c][keep]
        npos = matched.n_positives[c]
        if npos == 0:
            curves[c] = curve_dict(np.zeros(0), np.zeros(0), np.zeros(0))
            continue
        tp = np.cumsum(st == _TP)
        fp = np.cumsum(st == _FP)
        recall = tp / npos
        precision = tp / np.maximum(tp + fp, 1)
        ap[c] = average_precision_all_points(recall, precision) if len(st) else 0.0
        curves[c] = curve_dict(precision, recall, scores)
    return ap, curves


def detection_metrics(targets: Sequence[ImageTargets], predictions: Sequence[ImagePredictions],
                      class_names: Sequence[str], *, metric_type: str = "voc", iou_type: str = "bbox",
                      score_threshold: float = 0.3, task: str | ImageTask = "image-object-detection",
                      primary: str | None = None) -> MetricsResult:
    """Metrics of a detector (boxes) or an instance segmenter (masks); primary metric ``mean_average_precision``.

    Parameters
    ----------
    targets, predictions : list[ImageTargets], list[ImagePredictions]
        One entry per image, same order, pixel ``xyxy`` boxes (and boolean masks for ``iou_type="segm"``).
    class_names : list[str]
        ``C`` names, in class-index order.
    metric_type : str
        ``validation_metric_type``: ``"voc"`` (ours, see the module docstring), ``"coco"`` (pycocotools,
        see :mod:`jupyter_avml.metrics.coco`), ``"coco_voc"`` (both) or ``"none"`` (only ``precision`` and
        ``recall``: no mAP is computed, and ``primary_value`` is NaN -- the one case it may be).
    iou_type : str
        ``"bbox"`` (box IoU) or ``"segm"`` (mask IoU).
    score_threshold : float
        ``precision`` / ``recall`` count the predictions with ``score >= score_threshold`` (the mAPs use all).
    task : str
        Stored in the result (``"image-object-detection"`` or ``"image-instance-segmentation"``).
    primary : str | None
        Which mAP becomes ``mean_average_precision``: ``"voc"`` or ``"coco"``. Default: VOC for ``voc`` and
        ``coco_voc``, COCO for ``coco``.

    Returns
    -------
    MetricsResult
        ``scalars``: ``precision``, ``recall`` (always, IoU 0.5 and the crowd rule of the module docstring);
        ``mean_average_precision`` (unless ``none``); with COCO, ``coco_map``, ``coco_map_50``,
        ``coco_map_75``, ``coco_map_{small,medium,large}``, ``coco_mar_{1,10,100}``,
        ``coco_mar_{small,medium,large}`` (-1 where pycocotools finds them undefined); with ``coco_voc``
        also ``voc_map``. ``per_class``: ``precision``, ``recall``, ``support`` (non-crowd ground truths),
        ``average_precision`` (of the primary source; NaN for a class without ground truth), and with
        ``coco_voc`` both ``voc_average_precision`` and ``coco_average_precision``. ``pr_curves``: from the
        primary source (VOC: one point per ranked prediction, raw precision; COCO: its 101-point
        interpolated curve at IoU 0.5, all areas, 100 detections).
    """
    if metric_type not in METRIC_TYPES:
        raise ValueError(f"metric_type must be one of {', '.join(METRIC_TYPES)}, got {metric_type!r}")
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {', '.join(IOU_TYPES)}, got {iou_type!r}")
    task_value = ImageTask.parse(task)
    if not task_value.has_boxes:
        raise ValueError(f"detection_metrics is for detection or segmentation tasks, got {task_value.value!r}")
    computed = {"none": (), "voc": ("voc",), "coco": ("coco",), "coco_voc": ("voc", "coco")}[metric_type]
    if primary is None:
        primary = computed[0] if computed else None
    elif primary not in computed:
        raise ValueError(f"primary={primary!r} is not computed by metric_type={metric_type!r}")

    names = [str(name) for name in class_names]
    num_classes = len(names)
    images = _prepare(targets, predictions, num_classes, iou_type)
    matched = _match(images, num_classes, iou_type)

    tp, fp = _threshold_counts(matched, score_threshold)
    scalars: dict[str, float] = {
        "precision": _ratio(tp.sum(), tp.sum() + fp.sum()),
        "recall": _ratio(tp.sum(), matched.n_positives.sum()),
    }
    per_class = {
        name: {
            "precision": _ratio(tp[c], tp[c] + fp[c]),
            "recall": _ratio(tp[c], matched.n_positives[c]),
            "support": float(matched.n_positives[c]),
        }
        for c, name in enumerate(names)
    }
    pr_curves: dict[str, dict[str, list[float]]] = {}
    if primary is None:
        return MetricsResult(task=task_value.value, primary_metric="mean_average_precision", scalars=scalars,
                             per_class=per_class, pr_curves=pr_curves, class_names=names)

    maps: dict[str, float] = {}
    per_class_ap: dict[str, np.ndarray] = {}
    curves: dict[str, dict[int, dict[str, list[float]]]] = {}
    if "voc" in computed:
        ap, curves["voc"] = _voc(matched)
        defined = np.isfinite(ap)
        maps["voc"] = float(ap[defined].mean()) if defined.any() else 0.0
        per_class_ap["voc"] = ap
    if "coco" in computed:
        from jupyter_avml.metrics.coco import coco_evaluate

        coco = coco_evaluate(images, names, iou_type)
        scalars.update(coco.stats)
        # pycocotools reports -1 when nothing is defined (no ground truth); the primary value stays a number.
        maps["coco"] = max(coco.stats["coco_map"], 0.0)
        per_class_ap["coco"] = coco.per_class_ap
        curves["coco"] = coco.pr_curves
    if metric_type == "coco_voc":
        scalars["voc_map"] = maps["voc"]
    scalars["mean_average_precision"] = maps[primary]
    for c, name in enumerate(names):
        per_class[name]["average_precision"] = float(per_class_ap[primary][c])
        if metric_type == "coco_voc":
            per_class[name]["voc_average_precision"] = float(per_class_ap["voc"][c])
            per_class[name]["coco_average_precision"] = float(per_class_ap["coco"][c])
    pr_curves = {name: curves[primary][c] for c, name in enumerate(names)}
    return MetricsResult(task=task_value.value, primary_metric="mean_average_precision", scalars=scalars,
                         per_class=per_class, pr_curves=pr_curves, class_names=names)


def merge_box_and_mask(box: MetricsResult, mask: MetricsResult) -> MetricsResult:
    """One instance-segmentation result from a box evaluation and a mask evaluation of the same predictions.

    The mask numbers are primary: every scalar and per-class value of ``mask`` keeps its name (so
    ``mean_average_precision`` is the mask mAP); every one of ``box`` is added with a ``box_`` prefix
    (``box_mean_average_precision``, ``box_coco_map``, ``box_precision``...; per class
    ``box_average_precision``...). PR curves are the mask ones. ``task`` and ``primary_metric`` come from
    ``mask``.
    """
    if list(box.class_names) != list(mask.class_names):
        raise ValueError(f"box and mask results have different classes: {box.class_names} vs {mask.class_names}")
    scalars = dict(mask.scalars)
    scalars.update({f"box_{name}": value for name, value in box.scalars.items()})
    per_class = {}
    for name in mask.class_names:
        values = dict(mask.per_class.get(name, {}))
        values.update({f"box_{key}": value for key, value in box.per_class.get(name, {}).items()})
        per_class[name] = values
    return MetricsResult(task=mask.task, primary_metric=mask.primary_metric, scalars=scalars, per_class=per_class,
                         confusion_matrix=None, pr_curves={k: dict(v) for k, v in mask.pr_curves.items()},
                         class_names=list(mask.class_names))
