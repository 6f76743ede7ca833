"""Saved views that open at once in the App (its "saved views" menu) and in Python (``dataset.load_saved_view``).

After an evaluation of prediction field ``FIELD`` (``save_views``), by task:

* detection / segmentation: ``FIELD-false-positives`` (only the false-positive predictions, samples by their most
  confident one first), ``FIELD-false-negatives`` (only the missed ground truth, most misses first),
  ``FIELD-low-confidence`` (predictions under ``LOW_CONFIDENCE``, least confident first);
* multi-class: ``FIELD-errors`` (wrong predictions, most confident first: likely label errors or confident
  mistakes at the top), ``FIELD-low-confidence`` (predictions under ``LOW_CONFIDENCE``, least confident first);
* multi-label: ``FIELD-errors`` (a label missed or added, lowest label IoU first), ``FIELD-false-positives``,
  ``FIELD-false-negatives``, ``FIELD-low-confidence``;
* per class (every task, at most ``MAX_CLASS_VIEWS`` classes): ``FIELD-class-NAME``, the samples where the class is
  in the ground truth or the predictions, mistakes first.

``save_data_views`` saves the views of the data alone: ``train``, ``validation``, ``duplicates``.
``view_name(dataset, name, field)`` turns what a user types (``errors``) into the saved name (``FIELD-errors``).
"""

from __future__ import annotations

from jupyter_avml.qa.labels import GROUND_TRUTH
from jupyter_avml.tasks import ImageTask

LOW_CONFIDENCE = 0.5
MAX_CLASS_VIEWS = 50


def save_views(dataset, field: str, eval_key: str, task: ImageTask, classes: list[str]) -> list[str]:
    """Save the views of one evaluated prediction field (module docstring); returns their names."""
    from fiftyone import ViewField as F

    views: dict[str, object] = {}
    if task.has_boxes:
        fp = dataset.filter_labels(field, F(eval_key) == "fp")
        views["false-positives"] = fp.sort_by(F(f"{field}.detections").map(F("confidence")).max(), reverse=True)
        views["false-negatives"] = dataset.filter_labels(GROUND_TRUTH, F(eval_key) == "fn").sort_by(
            f"{eval_key}_fn", reverse=True)
        views["low-confidence"] = dataset.filter_labels(field, F("confidence") < LOW_CONFIDENCE).sort_by(
            F(f"{field}.detections").map(F("confidence")).min())
        for name in classes[:MAX_CLASS_VIEWS]:
            views[f"class-{name}"] = dataset.filter_labels(GROUND_TRUTH, F("label") == name, only_matches=False) \
                .filter_labels(field, F("label") == name, only_matches=False) \
                .match((F(f"{GROUND_TRUTH}.detections").length() > 0) | (F(f"{field}.detections").length() > 0)) \
                .sort_by(F(f"{eval_key}_fp") + F(f"{eval_key}_fn"), reverse=True)
    elif task is ImageTask.IMAGE_CLASSIFICATION:
        views["errors"] = dataset.match(F(eval_key) == False).sort_by(f"{field}.confidence",  # noqa: E712
                                                                      reverse=True)
        views["low-confidence"] = dataset.match(F(f"{field}.confidence") < LOW_CONFIDENCE).sort_by(
            f"{field}.confidence")
        for name in classes[:MAX_CLASS_VIEWS]:
            views[f"class-{name}"] = dataset.match((F(f"{GROUND_TRUTH}.label") == name)
                                                   | (F(f"{field}.label") == name)).sort_by(eval_key)
    else:
        views["errors"] = dataset.match((F(f"{eval_key}_fp") > 0) | (F(f"{eval_key}_fn") > 0)).sort_by(
            f"{eval_key}_iou")
        views["false-positives"] = dataset.match(F(f"{eval_key}_fp") > 0).sort_by(f"{eval_key}_fp", reverse=True)
        views["false-negatives"] = dataset.match(F(f"{eval_key}_fn") > 0).sort_by(f"{eval_key}_fn", reverse=True)
        views["low-confidence"] = dataset.filter_labels(field, F("confidence") < LOW_CONFIDENCE + 0.1)
        for name in classes[:MAX_CLASS_VIEWS]:
            labels = F(f"{GROUND_TRUTH}.classifications").map(F("label"))
            predicted = F(f"{field}.classifications").map(F("label"))
            views[f"class-{name}"] = dataset.match(labels.contains(name) | predicted.contains(name)).sort_by(
                f"{eval_key}_iou")
    names = []
    for kind, view in views.items():
        name = f"{field}-{kind}"
        dataset.save_view(name, view, overwrite=True)
        names.append(name)
    return names


def save_data_views(dataset) -> list[str]:
    """``train``, ``validation``, ``duplicates``: the views of the data alone."""
    names = []
    for name, tag in (("train", "train"), ("validation", "validation"), ("duplicates", "duplicate")):
        dataset.save_view(name, dataset.match_tags(tag), overwrite=True)
        names.append(name)
    return names


def view_name(dataset, name: str | None, field: str | None) -> str | None:
    """The saved view ``name`` means: itself when saved, else ``FIELD-name``; None when ``name`` is None.

    Raises
    ------
    NotFoundError : no saved view of that name (the message lists them).
    """
    if name is None:
        return None
    saved = dataset.list_saved_views()
    for candidate in (name, f"{field}-{name}" if field else None):
        if candidate and candidate in saved:
            return candidate
    from jupyter_avml.errors import NotFoundError

    mine = sorted(v[len(field) + 1:] for v in saved if field and v.startswith(field + "-"))
    raise NotFoundError(f"FiftyOne dataset {dataset.name!r} has no saved view {name!r} (views: "
                        f"{', '.join(mine or saved) or 'none yet'})")
