"""Metrics for the four tasks: pure functions over numpy arrays returning one :class:`MetricsResult`.

* :func:`multiclass_metrics` (``image-classification``, primary ``accuracy``)
* :func:`multilabel_metrics` (``image-classification-multilabel``, primary ``iou``)
* :func:`detection_metrics` (``image-object-detection`` / ``image-instance-segmentation``, primary
  ``mean_average_precision``; VOC ours, COCO via pycocotools) and :func:`merge_box_and_mask`.
"""

from jupyter_avml.metrics.classification import multiclass_metrics, multilabel_metrics
from jupyter_avml.metrics.detection import (
    METRIC_TYPES,
    ImagePredictions,
    ImageTargets,
    average_precision_all_points,
    box_iou,
    detection_metrics,
    mask_iou,
    merge_box_and_mask,
)
from jupyter_avml.metrics.result import MetricsResult

__all__ = [
    "METRIC_TYPES",
    "ImagePredictions",
    "ImageTargets",
    "MetricsResult",
    "average_precision_all_points",
    "box_iou",
    "detection_metrics",
    "mask_iou",
    "merge_box_and_mask",
    "multiclass_metrics",
    "multilabel_metrics",
]
