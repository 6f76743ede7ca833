"""The one result type every metric function returns (classification, detection, segmentation)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Downsampled curves keep at most this many points (101 = the COCO recall grid size).
MAX_CURVE_POINTS = 101


def _json_float(value: Any) -> float | None:
    """A plain Python float, or None for NaN/inf (strict JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _from_json_float(value: Any) -> float:
    return math.nan if value is None else float(value)


@dataclass
class MetricsResult:
    """Metrics of one evaluation, for any task.

    Attributes
    ----------
    task : str
        The task value (``"image-classification"``, ``"image-classification-multilabel"``,
        ``"image-object-detection"``, ``"image-instance-segmentation"``).
    primary_metric : str
        Name of the metric that ranks runs: ``"accuracy"``, ``"iou"`` or ``"mean_average_precision"``.
    scalars : dict[str, float]
        Every scalar metric by name, the primary one included. A metric that is undefined for the data
        (e.g. ``AUC_macro`` when no class has both positives and negatives) is NaN; the primary metric
        is never NaN, except for detection with ``metric_type="none"`` where no mAP is computed.
    per_class : dict[str, dict[str, float]]
        Class name -> metrics of that class (``precision``, ``recall``, ``f1_score``,
        ``average_precision``, ``support``... as applicable). Undefined values are NaN.
    confusion_matrix : list[list[int]] | None
        Multi-class classification only: rows are the true class, columns the predicted class, both in
        ``class_names`` order. None for the other tasks.
    pr_curves : dict[str, dict[str, list[float]]]
        Class name -> ``{"precision": [...], "recall": [...], "thresholds": [...]}``, three lists of the
        same length (at most 101 points), ordered by decreasing threshold (increasing recall). Empty
        lists for a class whose curve is undefined (no positives).
    class_names : list[str]
        The classes, in class-index order.
    roc_curves : dict[str, dict[str, list[float]]]
        Classification only (one-vs-rest per class for multi-class, per label for multi-label): class name
        -> ``{"fpr": [...], "tpr": [...], "thresholds": [...]}``, at most 101 points ordered by decreasing
        threshold, from ``(0, 0)`` (threshold ``inf``, ``None`` in JSON) to ``(1, 1)``. Empty lists for a
        class whose curve is undefined (no positives or no negatives). Empty for detection.
    """

    task: str
    primary_metric: str
    scalars: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    confusion_matrix: list[list[int]] | None = None
    pr_curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    roc_curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @property
    def primary_value(self) -> float:
        """Value of ``primary_metric`` (NaN only when the metric was not computed)."""
        return float(self.scalars.get(self.primary_metric, math.nan))

    def to_dict(self) -> dict[str, Any]:
        """A strictly JSON-serialisable dict: NaN and infinities become ``None``.

        ``primary_value`` is included for readers; :meth:`from_dict` ignores it.
        """
        return {
            "task": self.task,
            "primary_metric": self.primary_metric,
            "primary_value": _json_float(self.primary_value),
            "scalars": {name: _json_float(v) for name, v in self.scalars.items()},
            "per_class": {
                cls: {name: _json_float(v) for name, v in values.items()} for cls, values in self.per_class.items()
            },
            "confusion_matrix": (
                None if self.confusion_matrix is None else [[int(v) for v in row] for row in self.confusion_matrix]
            ),
            "pr_curves": {
                cls: {name: [_json_float(v) for v in seq] for name, seq in curve.items()}
                for cls, curve in self.pr_curves.items()
            },
            "class_names": [str(name) for name in self.class_names],
            "roc_curves": {
                cls: {name: [_json_float(v) for v in seq] for name, seq in curve.items()}
                for cls, curve in self.roc_curves.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricsResult:
        """Inverse of :meth:`to_dict` (``None`` floats come back as NaN)."""
        matrix = data.get("confusion_matrix")
        return cls(
            task=str(data["task"]),
            primary_metric=str(data["primary_metric"]),
            scalars={name: _from_json_float(v) for name, v in (data.get("scalars") or {}).items()},
            per_class={
                c: {name: _from_json_float(v) for name, v in values.items()}
                for c, values in (data.get("per_class") or {}).items()
            },
            confusion_matrix=None if matrix is None else [[int(v) for v in row] for row in matrix],
            pr_curves={
                c: {name: [_from_json_float(v) for v in seq] for name, seq in curve.items()}
                for c, curve in (data.get("pr_curves") or {}).items()
            },
            class_names=[str(name) for name in data.get("class_names") or []],
            roc_curves={
                c: {name: [_from_json_float(v) for v in seq] for name, seq in curve.items()}
                for c, curve in (data.get("roc_curves") or {}).items()
            },
        )


def downsample_indices(n: int, max_points: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` points spread evenly over ``range(n)``, both ends kept."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))


def curve_dict(precision: np.ndarray, recall: np.ndarray, thresholds: np.ndarray) -> dict[str, list[float]]:
    """A PR curve as plain lists, downsampled to at most :data:`MAX_CURVE_POINTS` points."""
    keep = downsample_indices(len(thresholds))
    return {
        "precision": [float(v) for v in np.asarray(precision)[keep]],
        "recall": [float(v) for v in np.asarray(recall)[keep]],
        "thresholds": [float(v) for v in np.asarray(thresholds)[keep]],
    }


def roc_curve_dict(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray) -> dict[str, list[float]]:
    """A ROC curve as plain lists, downsampled to at most :data:`MAX_CURVE_POINTS` points (ends kept)."""
    keep = downsample_indices(len(thresholds))
    return {
        "fpr": [float(v) for v in np.asarray(fpr)[keep]],
        "tpr": [float(v) for v in np.asarray(tpr)[keep]],
        "thresholds": [float(v) for v in np.asarray(thresholds)[keep]],
    }
