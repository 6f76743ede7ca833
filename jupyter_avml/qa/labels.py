"""Labels between jupyter_avml and FiftyOne, both ways, and into the arrays of ``jupyter_avml.metrics``.

Ground truth (``record_to_label``), per task:

* multi-class: ``fo.Classification(label=...)``;
* multi-label: ``fo.Classifications`` with one ``Classification`` per class;
* detection: ``fo.Detections``, ``bounding_box = [top_x, top_y, bottom_x - top_x, bottom_y - top_y]`` (the
  record's fractions, FiftyOne's relative ``[x, y, w, h]``), attribute ``iscrowd`` (0/1: the attribute
  FiftyOne's COCO-style evaluation reads);
* segmentation: the same, with an instance ``mask``: the polygon is rasterised on the full image
  (``data.masks.polygons_to_mask``, pycocotools' rasteriser, as training does) and cut to the pixels it
  covers; ``bounding_box`` is then that pixel extent divided by the image size. A box on whole pixels is what
  FiftyOne places masks with (``round(x * width)``), so FiftyOne and our metrics see the same pixels.

Back (``label_to_record``): objects whose FiftyOne form is unchanged keep the original object as it was
(polygons exactly as written, boxes to the last bit), so a dataset exported without edits has the content hash
it was registered with; an edited or new object is converted (masks traced by ``data.masks.mask_to_polygons``).

Predictions (``prediction_to_label``) take the spec's response format that ``load_model(...).predict`` returns:
classification ``probs`` (model class order) become the top class with its ``confidence`` and the ``logits``
(when captured, see ``predict``), multi-label keeps the classes at or above ``MULTILABEL_THRESHOLD``;
boxes become ``Detection`` objects with their ``confidence`` and, for segmentation, the mask of the polygon.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jupyter_avml.data.masks import denormalize_polygons, mask_to_polygons, normalize_polygons, polygons_to_mask
from jupyter_avml.data.records import ObjectLabel
from jupyter_avml.tasks import ImageTask

GROUND_TRUTH = "ground_truth"
MULTILABEL_THRESHOLD = 0.5  # the threshold of the multi-label metrics (``metrics.classification``)


# -- ground truth ---------------------------------------------------------------------------------------------
def record_to_label(fo, label: Any, task: ImageTask, width: int, height: int):
    """The FiftyOne label of a record's ``label`` (see the module docstring); ``width``/``height`` in pixels."""
    if task is ImageTask.IMAGE_CLASSIFICATION:
        return fo.Classification(label=label)
    if task is ImageTask.IMAGE_CLASSIFICATION_MULTILABEL:
        return fo.Classifications(classifications=[fo.Classification(label=name) for name in label])
    return fo.Detections(detections=[object_to_detection(fo, obj, task, width, height) for obj in label])


def object_to_detection(fo, obj: ObjectLabel, task: ImageTask, width: int, height: int):
    """One ground-truth object as a ``fo.Detection`` (with its mask for segmentation)."""
    if task.has_masks:
        box, mask = polygon_mask(obj.polygon, width, height)
        return fo.Detection(label=obj.label, bounding_box=box, mask=mask, iscrowd=int(obj.is_crowd))
    return fo.Detection(label=obj.label, bounding_box=xywh(obj.box), iscrowd=int(obj.is_crowd))


def xywh(box: Sequence[float]) -> list[float]:
    """``(top_x, top_y, bottom_x, bottom_y)`` fractions -> FiftyOne's ``[x, y, w, h]`` fractions."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def polygon_mask(polygon, width: int, height: int) -> tuple[list[float], np.ndarray]:
    """``(bounding_box, mask)`` of a fraction polygon: the pixels it covers, cut to their extent.

    A polygon that covers no pixel centre gets an empty ``1 x 1`` mask at its first point (FiftyOne needs a
    box to place a mask in).
    """
    full = polygons_to_mask(denormalize_polygons(polygon, width, height), height, width)
    return mask_in_box(full, width, height, fallback=polygon)


def mask_in_box(full: np.ndarray, width: int, height: int, fallback=None) -> tuple[list[float], np.ndarray]:
    """A full-image boolean mask -> ``(bounding_box on whole pixels, mask cut to it)``."""
    rows = np.flatnonzero(full.any(axis=1))
    cols = np.flatnonzero(full.any(axis=0))
    if not len(rows):
        x, y = (fallback[0][0], fallback[0][1]) if fallback else (0.0, 0.0)
        x0 = min(int(float(x) * width), width - 1)
        y0 = min(int(float(y) * height), height - 1)
        return [x0 / width, y0 / height, 1 / width, 1 / height], np.zeros((1, 1), dtype=bool)
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    box = [x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height]
    return box, np.ascontiguousarray(full[y0:y1, x0:x1])


def full_mask(detection, width: int, height: int) -> np.ndarray:
    """The ``(height, width)`` boolean mask of a ``fo.Detection`` placed as FiftyOne places it (rounded box)."""
    out = np.zeros((height, width), dtype=bool)
    mask = detection.mask
    if mask is None:
        return out
    x, y, w, h = detection.bounding_box
    x0, y0 = round(x * width), round(y * height)
    x1, y1 = round(x0 + w * width), round(y0 + h * height)
    if (y1 - y0, x1 - x0) != mask.shape:  # FiftyOne resizes a mask to its box; do the same (nearest)
        import cv2

        mask = cv2.resize(mask.astype(np.uint8), (max(1, x1 - x0), max(1, y1 - y0)),
                          interpolation=cv2.INTER_NEAREST).astype(bool)
    cut = out[max(y0, 0):y1, max(x0, 0):x1]
    cut[...] = mask[max(0, -y0):max(0, -y0) + cut.shape[0], max(0, -x0):max(0, -x0) + cut.shape[1]]
    return out


def label_to_record(fo, label, task: ImageTask, width: int, height: int, original: Any = None) -> Any:
    """A FiftyOne ground-truth label back to a record's ``label`` (objects unchanged keep ``original``'s form).

    Raises
    ------
    ValueError
        A label of the wrong type for the task, or a segmentation object whose mask covers no pixel.
    """
    if task is ImageTask.IMAGE_CLASSIFICATION:
        if label is None or not getattr(label, "label", None):
            raise ValueError("no class (a multi-class image needs exactly one)")
        return str(label.label)
    if task is ImageTask.IMAGE_CLASSIFICATION_MULTILABEL:
        items = [] if label is None else label.classifications
        names = list(dict.fromkeys(str(item.label) for item in items))
        if original is not None and set(original) == set(names):
            return tuple(original)
        return tuple(names)
    detections = [] if label is None else label.detections
    unchanged = {}
    for obj in original or ():
        unchanged.setdefault(_signature(object_to_detection(fo, obj, task, width, height)), obj)
    out = []
    for detection in detections:
        kept = unchanged.get(_signature(detection))
        out.append(kept if kept is not None else detection_to_object(detection, task, width, height))
    return tuple(out)


def detection_to_object(detection, task: ImageTask, width: int, height: int) -> ObjectLabel:
    """A (new or edited) ``fo.Detection`` as an ``ObjectLabel``."""
    crowd = bool(detection["iscrowd"]) if detection.has_field("iscrowd") and detection["iscrowd"] else False
    if task.has_masks:
        if detection.mask is None:
            x, y, w, h = detection.bounding_box  # an object drawn as a box: its outline is the box
            polygon = ((x, y, x + w, y, x + w, y + h, x, y + h),)
            return ObjectLabel.from_polygon(str(detection.label), polygon, crowd)
        polygons = mask_to_polygons(full_mask(detection, width, height))
        if not polygons:
            raise ValueError(f"object {detection.label!r}: its mask covers no region to outline")
        return ObjectLabel.from_polygon(str(detection.label), normalize_polygons(polygons, width, height), crowd)
    x, y, w, h = (float(v) for v in detection.bounding_box)
    return ObjectLabel(str(detection.label), x, y, x + w, y + h, crowd)


def _signature(detection) -> tuple:
    mask = detection.mask
    crowd = detection["iscrowd"] if detection.has_field("iscrowd") else 0
    return (str(detection.label), tuple(float(v) for v in detection.bounding_box), bool(crowd),
            None if mask is None else (mask.shape, np.asarray(mask, dtype=bool).tobytes()))


# -- predictions ----------------------------------------------------------------------------------------------
def prediction_to_label(fo, prediction: dict, task: ImageTask, class_names: Sequence[str], width: int, height: int,
                        logits: np.ndarray | None = None):
    """The FiftyOne label of one ``predict`` output (the spec's response format)."""
    if task.is_classification:
        probs = np.asarray(prediction["probs"], dtype=np.float64)
        names = list(prediction.get("labels") or class_names)
        extra = {} if logits is None else {"logits": np.asarray(logits, dtype=np.float64)}
        if task is ImageTask.IMAGE_CLASSIFICATION:
            best = int(np.argmax(probs))
            return fo.Classification(label=names[best], confidence=float(probs[best]), **extra)
        kept = [fo.Classification(label=names[k], confidence=float(p)) for k, p in enumerate(probs)
                if p >= MULTILABEL_THRESHOLD]
        return fo.Classifications(classifications=kept, **extra)
    detections = []
    for item in prediction.get("boxes", []):
        box = item["box"]
        corners = (box["topX"], box["topY"], box["bottomX"], box["bottomY"])
        if task.has_masks and item.get("polygon"):
            bounding_box, mask = polygon_mask([tuple(seg) for seg in item["polygon"]], width, height)
            detections.append(fo.Detection(label=item["label"], bounding_box=bounding_box, mask=mask,
                                           confidence=float(item["score"])))
        else:
            detections.append(fo.Detection(label=item["label"], bounding_box=xywh(corners),
                                           confidence=float(item["score"])))
    return fo.Detections(detections=detections)


# -- the metric arrays ----------------------------------------------------------------------------------------
def detections_to_arrays(label, class_index: dict[str, int], width: int, height: int, *, masks: bool,
                         predictions: bool):
    """A ``fo.Detections`` as ``metrics.ImageTargets`` (ground truth) or ``metrics.ImagePredictions``, in pixels.

    Objects of classes not in ``class_index`` are left out (they are reported before metrics are computed).
    """
    from jupyter_avml.metrics import ImagePredictions, ImageTargets

    items = [d for d in (label.detections if label is not None else []) if d.label in class_index]
    boxes = np.array([[x * width, y * height, (x + w) * width, (y + h) * height]
                      for x, y, w, h in (d.bounding_box for d in items)], dtype=np.float64).reshape(-1, 4)
    labels = np.array([class_index[d.label] for d in items], dtype=np.int64)
    stack = None
    if masks:
        stack = np.stack([full_mask(d, width, height) for d in items]) if items else \
            np.zeros((0, height, width), dtype=bool)
    if predictions:
        scores = np.array([d.confidence if d.confidence is not None else 1.0 for d in items], dtype=np.float64)
        return ImagePredictions(boxes=boxes, scores=scores, labels=labels, masks=stack)
    crowd = np.array([bool(d["iscrowd"]) if d.has_field("iscrowd") and d["iscrowd"] else False for d in items],
                     dtype=bool)
    return ImageTargets(boxes=boxes, labels=labels, iscrowd=crowd, masks=stack, width=width, height=height)
