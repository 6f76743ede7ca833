"""Evaluation of a prediction field with FiftyOne's own methods, beside ``jupyter_avml.metrics`` on the same data.

Per task, under the eval key ``eval_FIELD`` (``eval_FIELD_SPLIT`` for one split):

* multi-class: ``evaluate_classifications`` (``simple``): per sample ``EVAL_KEY`` (True when right); its results
  give the report and the confusion matrix (``results.plot_confusion_matrix()``);
* detection and segmentation: ``evaluate_detections`` with ``method="coco"``, ``compute_mAP=True``,
  ``iscrowd="iscrowd"`` and, for segmentation, ``use_masks=True``: per sample ``EVAL_KEY_tp/_fp/_fn``, per object
  ``EVAL_KEY`` (``tp``/``fp``/``fn``) and ``EVAL_KEY_iou``; its results give the mAP, the PR curves
  (``results.plot_pr_curves()``) and the confusion matrix;
* multi-label: FiftyOne 1.22's ``evaluate_classifications`` takes ``Classification`` fields only (one label per
  sample), so multi-label samples are scored by ``metrics.multilabel_metrics`` (threshold 0.5) and the per-sample
  counts are written under the same names FiftyOne uses for objects: ``EVAL_KEY_tp``, ``EVAL_KEY_fp``,
  ``EVAL_KEY_fn``, plus ``EVAL_KEY_iou`` (the sample's label IoU).

Agreement: ``Evaluation.ours`` holds our metrics of the very same labels (``labels.detections_to_arrays``: the
boxes and the masks FiftyOne places). For detection and segmentation FiftyOne's COCO-style mAP and ours
(``coco_map``, pycocotools) agree within ``MAP_TOLERANCE`` (``tests/qa/test_map_agreement.py``). Two known
differences, each shown by a test to be the whole difference:

* masks with crowd regions: FiftyOne 1.22 computes dense mask IoUs without the crowd rule (``_compute_mask_ious``
  does not pass ``iscrowd`` on, and ``_dense_iou`` ignores it), so a prediction over a crowd region is scored
  with the plain IoU where pycocotools divides by the prediction's area alone; ``Evaluation.note`` says so when
  crowd regions are present;
* an IoU exactly on a threshold (0.5, 0.55, ...): FiftyOne computes box IoUs in fractions of the image,
  pycocotools in pixels; for boxes on the pixel grid the pixel IoU is exact and the fraction one may fall a
  rounding error short. A model's boxes are not on the grid, so this practically needs made-up boxes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jupyter_avml.errors import ConfigError, NotFoundError
from jupyter_avml.qa.labels import GROUND_TRUTH, detections_to_arrays
from jupyter_avml.qa.predict import dataset_task, predictions_of
from jupyter_avml.qa.views import save_views
from jupyter_avml.tasks import ImageTask
from jupyter_avml.workspace import Workspace

MAP_TOLERANCE = 1e-3


@dataclass
class Evaluation:
    """One evaluation: ``metrics`` as FiftyOne computed them, ``ours`` from ``jupyter_avml.metrics``.

    ``results`` is FiftyOne's results object (``None`` for multi-label): ``results.print_report()``,
    ``results.plot_confusion_matrix()``, ``results.plot_pr_curves()`` (detection).
    """

    eval_key: str
    field: str
    task: str
    samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    ours: dict[str, float] = field(default_factory=dict)
    results: Any = None
    note: str = ""
    views: list[str] = field(default_factory=list)

    @property
    def map_difference(self) -> float | None:
        """|FiftyOne's COCO mAP - ours| (detection and segmentation), None otherwise."""
        if "mAP" in self.metrics and "coco_map" in self.ours:
            return abs(self.metrics["mAP"] - self.ours["coco_map"])
        return None

    def __repr__(self) -> str:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items())
        lines = [f"{self.eval_key}: {self.field} on {self.samples} samples ({self.task}): {shown}"]
        if self.ours:
            lines.append("  jupyter_avml.metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in self.ours.items()))
        if self.map_difference is not None:
            lines.append(f"  COCO mAP, FiftyOne vs ours: difference {self.map_difference:.2e}")
        if self.note:
            lines.append(f"  note: {self.note}")
        if self.views:
            lines.append(f"  saved views: {', '.join(self.views)}")
        return "\n".join(lines)


def evaluate(dataset, field: str | None = None, *, split: str | None = None, eval_key: str | None = None,
             workspace: str | os.PathLike | Workspace | None = None) -> Evaluation:
    """Evaluate prediction ``field`` (default: the one most recently added) against ``ground_truth``.

    Parameters
    ----------
    split : ``"train"`` or ``"validation"`` to evaluate only the samples with that tag (default: every sample
        that has a prediction).
    eval_key : default ``eval_FIELD`` (``eval_FIELD_SPLIT`` with a split); evaluating again replaces it.

    The saved views of the mistakes (``views.save_views``) are saved (again) at the end.

    Raises
    ------
    NotFoundError : the dataset has no prediction field (or not ``field``).
    """
    from jupyter_avml.qa._fo import fiftyone, quiet_fiftyone

    fiftyone(workspace)
    field = field or latest_prediction_field(dataset)
    if not dataset.has_sample_field(field):
        known = ", ".join(predictions_of(dataset)) or "none"
        raise NotFoundError(f"FiftyOne dataset {dataset.name!r} has no prediction field {field!r} (prediction "
                            f"fields: {known}); add predictions first (add_predictions / `avml qa predict`)")
    if split not in (None, "train", "validation"):
        raise ConfigError(f"split must be 'train' or 'validation', got {split!r}", field="split", value=split)
    task = dataset_task(dataset)
    key = eval_key or (f"eval_{field}" + (f"_{split}" if split else ""))
    view = dataset.match_tags(split) if split else dataset
    view = view.exists(field)
    if not len(view):
        raise NotFoundError(f"no sample of {dataset.name!r}{' tagged ' + split if split else ''} has predictions "
                            f"in {field!r}")
    if key in dataset.list_evaluations():
        dataset.delete_evaluation(key)
    classes = _classes(dataset, field)
    with quiet_fiftyone():
        if task is ImageTask.IMAGE_CLASSIFICATION:
            result = _classification(view, field, key, classes)
        elif task is ImageTask.IMAGE_CLASSIFICATION_MULTILABEL:
            result = _multilabel(dataset, view, field, key, classes)
        else:
            result = _detection(view, field, key, classes, task)
    result.views = save_views(dataset, field, key, task, classes)
    _remember(dataset, result)
    return result


def latest_prediction_field(dataset) -> str:
    """The prediction field added last (``NotFoundError`` when there is none)."""
    predictions = predictions_of(dataset)
    if not predictions:
        raise NotFoundError(f"FiftyOne dataset {dataset.name!r} has no predictions yet; add some first "
                            f"(add_predictions / `avml qa predict`)")
    return max(predictions, key=lambda name: predictions[name].get("time", 0))


def _classes(dataset, field: str) -> list[str]:
    """The model's classes (they include the dataset's: ``predict.check_model_fits``)."""
    recorded = predictions_of(dataset).get(field, {}).get("classes")
    return list(recorded or (dataset.info.get("avml") or {}).get("classes") or [])


def _classification(view, field: str, key: str, classes: list[str]) -> Evaluation:
    from jupyter_avml.metrics import multiclass_metrics

    results = view.evaluate_classifications(field, gt_field=GROUND_TRUTH, eval_key=key, classes=classes,
                                            method="simple", progress=False)
    report = results.metrics()
    metrics = {"accuracy": float(report["accuracy"]), "precision": float(report["precision"]),
               "recall": float(report["recall"]), "fscore": float(report["fscore"])}
    index = {name: k for k, name in enumerate(classes)}
    targets = np.array([index[label] for label in view.values(f"{GROUND_TRUTH}.label")], dtype=np.int64)
    probs = _probabilities(view, field, classes, multilabel=False)
    ours = multiclass_metrics(probs, targets, classes).scalars
    return Evaluation(key, field, ImageTask.IMAGE_CLASSIFICATION.value, len(view), metrics,
                      {"accuracy": float(ours["accuracy"]), "f1_score_weighted": float(ours["f1_score_weighted"])},
                      results)


def _multilabel(dataset, view, field: str, key: str, classes: list[str]) -> Evaluation:
    from jupyter_avml.metrics import multilabel_metrics

    index = {name: k for k, name in enumerate(classes)}
    truth = np.zeros((len(view), len(classes)), dtype=np.int64)
    for row, names in enumerate(view.values(f"{GROUND_TRUTH}.classifications.label")):
        for name in names or ():
            truth[row, index[name]] = 1
    probs = _probabilities(view, field, classes, multilabel=True)
    predicted = probs >= 0.5
    tp = (predicted & (truth == 1)).sum(axis=1)
    fp = (predicted & (truth == 0)).sum(axis=1)
    fn = (~predicted & (truth == 1)).sum(axis=1)
    union = tp + fp + fn
    iou = np.where(union > 0, tp / np.maximum(union, 1), 1.0)  # no label and none predicted: right (metrics' rule)
    ids = view.values("id")
    for suffix, values in (("_tp", tp), ("_fp", fp), ("_fn", fn)):
        dataset.set_values(key + suffix, dict(zip(ids, (int(v) for v in values), strict=True)), key_field="id")
    dataset.set_values(key + "_iou", dict(zip(ids, (float(v) for v in iou), strict=True)), key_field="id")
    ours = multilabel_metrics(probs, truth, classes).scalars
    metrics = {"iou": float(ours["iou"]), "accuracy": float(ours["accuracy"]),
               "f1_score_micro": float(ours["f1_score_micro"])}
    return Evaluation(key, field, ImageTask.IMAGE_CLASSIFICATION_MULTILABEL.value, len(view), metrics, dict(metrics),
                      None, "FiftyOne evaluates one Classification per sample only: multi-label scored by "
                            "jupyter_avml.metrics (per-sample counts in the FiftyOne fields)")


def _detection(view, field: str, key: str, classes: list[str], task: ImageTask) -> Evaluation:
    from jupyter_avml.metrics import detection_metrics

    results = view.evaluate_detections(field, gt_field=GROUND_TRUTH, eval_key=key, classes=classes, method="coco",
                                       compute_mAP=True, use_masks=task.has_masks, iscrowd="iscrowd",
                                       progress=False)
    counts = {name: int(sum(view.values(f"{key}_{name}"))) for name in ("tp", "fp", "fn")}
    metrics = {"mAP": float(results.mAP()), **{name: float(value) for name, value in counts.items()}}
    index = {name: k for k, name in enumerate(classes)}
    targets, predictions = [], []
    for width, height, truth, predicted in zip(view.values("metadata.width"), view.values("metadata.height"),
                                               view.values(GROUND_TRUTH), view.values(field), strict=True):
        targets.append(detections_to_arrays(truth, index, width, height, masks=task.has_masks, predictions=False))
        predictions.append(detections_to_arrays(predicted, index, width, height, masks=task.has_masks,
                                                predictions=True))
    scored = detection_metrics(targets, predictions, classes, metric_type="coco_voc",
                               iou_type="segm" if task.has_masks else "bbox", task=task.value, primary="voc")
    ours = {"coco_map": max(float(scored.scalars["coco_map"]), 0.0),
            "voc_map": float(scored.scalars["mean_average_precision"])}
    note = ""
    if task.has_masks and any(t.iscrowd.any() for t in targets):
        note = ("crowd regions present: FiftyOne 1.22 compares masks without the crowd rule, pycocotools with it; "
                "the two mAPs may differ (see jupyter_avml.qa.evaluation)")
    return Evaluation(key, field, task.value, len(view), metrics, ours, results, note)


def _probabilities(view, field: str, classes: list[str], *, multilabel: bool) -> np.ndarray:
    """``[N, C]`` probabilities of the predictions: from the logits (as the predictor computed them)."""
    logits = view.values(f"{field}.logits")
    out = np.zeros((len(logits), len(classes)), dtype=np.float64)
    confidences = view.values(f"{field}.confidence" if not multilabel else f"{field}.classifications.confidence")
    labels = view.values(f"{field}.label" if not multilabel else f"{field}.classifications.label")
    index = {name: k for k, name in enumerate(classes)}
    for row, values in enumerate(logits):
        if values is not None and len(values) == len(classes):
            values = np.asarray(values, dtype=np.float64)
            if multilabel:
                out[row] = 1.0 / (1.0 + np.exp(-values))
            else:
                shifted = np.exp(values - values.max())
                out[row] = shifted / shifted.sum()
        elif multilabel:  # no logits recorded: the kept labels with their confidence
            for name, score in zip(labels[row] or (), confidences[row] or (), strict=True):
                out[row, index[name]] = score
        else:
            out[row, index[labels[row]]] = confidences[row] or 1.0
    return out


def _remember(dataset, result: Evaluation) -> None:
    info = dict(dataset.info.get("avml") or {})
    evaluations = dict(info.get("evaluations") or {})
    evaluations[result.eval_key] = {"field": result.field, "samples": result.samples, "metrics": result.metrics,
                                    "ours": result.ours, "note": result.note}
    info["evaluations"] = evaluations
    dataset.info = {**dataset.info, "avml": info}
    dataset.save()
