"""Finding likely label errors and hard samples with ``fiftyone.brain``, from the trained model alone.

``find_mistakes(dataset, field)``:

* mistakenness (``compute_mistakenness``, with the logits of a classifier, the confidences of a detector) in
  ``mistakenness_FIELD``: how likely the ground truth is wrong given the predictions; for objects also
  ``possible_missing_FIELD`` / ``possible_spurious_FIELD`` counts. Saved view ``FIELD-mistakenness`` (most likely
  label errors first);
* hardness (``compute_hardness``, classification only: FiftyOne computes it from logits) in ``hardness_FIELD``;
  saved view ``FIELD-hardness``;
* with the model's embeddings (``predict`` stores them in ``FIELD_embedding``; nothing is downloaded):
  near-duplicates (``compute_near_duplicates``, cosine distance under ``near_duplicate_threshold``), tagged
  ``near_duplicate`` and saved as ``FIELD-near-duplicates``, and a 2-D map of the dataset
  (``compute_visualization``, brain key ``map_FIELD``) for the App's embeddings panel.

``MistakeReport.ranked`` lists the samples by mistakenness (most suspicious first) with the row each comes from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from jupyter_avml.qa.evaluation import latest_prediction_field
from jupyter_avml.qa.labels import GROUND_TRUTH
from jupyter_avml.qa.predict import EMBEDDING_SUFFIX, dataset_task
from jupyter_avml.workspace import Workspace

NEAR_DUPLICATE_TAG = "near_duplicate"
SHOWN = 10


@dataclass
class MistakeReport:
    """What ``find_mistakes`` computed: field names, saved views, and the samples ranked by mistakenness."""

    field: str
    mistakenness_field: str
    hardness_field: str | None
    ranked: list[dict] = field(default_factory=list)  # {"id", "filepath", "where", "label", "predicted", "score"}
    views: list[str] = field(default_factory=list)
    near_duplicates: int | None = None
    map_key: str | None = None

    def top(self, fraction: float) -> list[dict]:
        """The most suspicious ``fraction`` of the samples (at least one)."""
        return self.ranked[:max(1, round(fraction * len(self.ranked)))]

    def __repr__(self) -> str:
        lines = [f"{self.field}: {len(self.ranked)} samples ranked by {self.mistakenness_field} (views: "
                 f"{', '.join(self.views)})"]
        for item in self.ranked[:SHOWN]:
            lines.append(f"  {item['score']:.3f}  {item['where']}  label {item['label']}, predicted "
                         f"{item['predicted']}")
        if self.near_duplicates is not None:
            lines.append(f"  near-duplicate images (model embeddings): {self.near_duplicates} "
                         f"(tag {NEAR_DUPLICATE_TAG})")
        if self.map_key:
            lines.append(f"  2-D map of the dataset: brain key {self.map_key} (the App's Embeddings panel)")
        return "\n".join(lines)


def find_mistakes(dataset, field: str | None = None, *, embeddings: bool = True, map_method: str = "pca",
                  near_duplicate_threshold: float = 0.02,
                  workspace: str | os.PathLike | Workspace | None = None) -> MistakeReport:
    """Mistakenness, hardness, near-duplicates and a 2-D map for prediction ``field`` (module docstring)."""
    from jupyter_avml.qa._fo import fiftyone, quiet_fiftyone

    fiftyone(workspace)  # configured before anything imports fiftyone
    import fiftyone.brain as fob

    with quiet_fiftyone():
        return _find_mistakes(fob, dataset, field or latest_prediction_field(dataset), embeddings, map_method,
                              near_duplicate_threshold)


def _find_mistakes(fob, dataset, field: str, embeddings: bool, map_method: str, threshold: float) -> MistakeReport:
    task = dataset_task(dataset)
    view = dataset.exists(field)
    mistakes = f"mistakenness_{field}"
    use_logits = task.is_classification and len(view.exists(f"{field}.logits")) == len(view)
    fob.compute_mistakenness(view, field, GROUND_TRUTH, mistakenness_field=mistakes,
                             missing_field=f"possible_missing_{field}", spurious_field=f"possible_spurious_{field}",
                             use_logits=use_logits, progress=False)
    views = [f"{field}-mistakenness"]
    dataset.save_view(views[0], dataset.exists(mistakes).sort_by(mistakes, reverse=True), overwrite=True)
    hardness = None
    if task.is_classification and use_logits:
        hardness = f"hardness_{field}"
        fob.compute_hardness(view, field, hardness_field=hardness, progress=False)
        dataset.save_view(f"{field}-hardness", dataset.exists(hardness).sort_by(hardness, reverse=True),
                          overwrite=True)
        views.append(f"{field}-hardness")
    report = MistakeReport(field, mistakes, hardness, _ranked(dataset, field, mistakes, task), views)
    vectors = field + EMBEDDING_SUFFIX
    if embeddings and dataset.has_sample_field(vectors):
        with_vectors = dataset.exists(vectors)
        if len(with_vectors) >= 2:
            index = fob.compute_near_duplicates(with_vectors, threshold=threshold,
                                                embeddings=vectors, progress=False)
            duplicate_ids = set(index.duplicate_ids) | set(index.neighbors_map)
            dataset.untag_samples(NEAR_DUPLICATE_TAG)
            dataset.select(list(duplicate_ids)).tag_samples(NEAR_DUPLICATE_TAG)
            name = f"{field}-near-duplicates"
            dataset.save_view(name, dataset.match_tags(NEAR_DUPLICATE_TAG), overwrite=True)
            views.append(name)
            report.near_duplicates = len(duplicate_ids)
            key = f"map_{field}"
            if key in dataset.list_brain_runs():
                dataset.delete_brain_run(key)
            fob.compute_visualization(with_vectors, embeddings=vectors, method=map_method, brain_key=key,
                                      num_dims=2, progress=False)
            report.map_key = key
    return report


def _ranked(dataset, field: str, mistakes: str, task) -> list[dict]:
    view = dataset.exists(mistakes).sort_by(mistakes, reverse=True)
    if task.has_boxes:
        labels = [sorted({d for d in (names or ())}) for names in view.values(f"{GROUND_TRUTH}.detections.label")]
        predicted = [sorted({d for d in (names or ())}) for names in view.values(f"{field}.detections.label")]
    elif task.is_multilabel:
        labels = view.values(f"{GROUND_TRUTH}.classifications.label")
        predicted = view.values(f"{field}.classifications.label")
    else:
        labels = view.values(f"{GROUND_TRUTH}.label")
        predicted = view.values(f"{field}.label")
    return [{"id": sample_id, "filepath": path, "where": f"{file}:{line}", "label": label, "predicted": guess,
             "score": float(score)}
            for sample_id, path, file, line, label, guess, score in zip(
                view.values("id"), view.values("filepath"), view.values("jsonl_file"), view.values("jsonl_line"),
                labels, predicted, view.values(mistakes), strict=True)]
