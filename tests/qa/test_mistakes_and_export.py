"""Closing the loop: planted label errors found by mistakenness, fixed and excluded in FiftyOne, exported as a new
dataset version (the original unchanged), on which training is one line.

The ranking test predicts with a stand-in that knows the classes (the shape's colour, ``colour_rule_predictions``):
a network from scratch needs minutes of CPU to learn them. notebooks/visual_qa.ipynb (tests/qa/test_notebook.py)
does the same with a trained resnet18.
"""

from __future__ import annotations

from jupyter_avml.data.dataset_registry import get_dataset
from jupyter_avml.data.shapes import make_shapes
from jupyter_avml.qa import evaluate, export, find_mistakes, to_fiftyone
from jupyter_avml.qa.labels import GROUND_TRUTH
from tests.qa.conftest import CLASSES, colour_rule_predictions, plant_label_errors

PLANTED = [3, 17, 30, 44, 58]  # rows of a 60-image set: 5 label errors, under 10% of the data


def test_planted_label_errors_rank_in_the_top_tenth_by_mistakenness(tmp_path, qa_workspace, fo_datasets):
    jsonl = make_shapes(tmp_path / "data", "image-classification", n=60, size=32, seed=7, color_by_class=True)
    planted_lines = plant_label_errors(jsonl, PLANTED)
    dataset = to_fiftyone(jsonl, task="image-classification", progress=False)
    field = colour_rule_predictions(fo_datasets, dataset)
    evaluation = evaluate(dataset, field)
    assert evaluation.metrics["accuracy"] == 55 / 60  # right everywhere, but on the planted rows
    report = find_mistakes(dataset, field)
    top = report.top(0.10)  # 6 of 60
    found = {item["where"] for item in top}
    assert {f"{jsonl.resolve()}:{line}" for line in planted_lines} <= found, report
    assert report.views[0] == f"{field}-mistakenness"
    ranked_view = dataset.load_saved_view(report.views[0])
    assert ranked_view.values("jsonl_line")[:len(PLANTED)] == [int(item["where"].rsplit(":", 1)[1])
                                                             for item in report.ranked[:len(PLANTED)]]
    assert report.hardness_field and dataset.has_sample_field(report.hardness_field)
    errors = dataset.load_saved_view(f"{field}-errors")
    assert set(errors.values("jsonl_line")) >= set(planted_lines)
    confidences = errors.values(f"{field}.confidence")
    assert confidences == sorted(confidences, reverse=True)  # most confident mistakes first


def test_export_gives_a_new_version_without_the_excluded_rows_and_with_the_fixes(tmp_path, qa_workspace,
                                                                                  fo_datasets):
    jsonl = make_shapes(tmp_path / "data", "image-classification", n=12, size=32, seed=8, color_by_class=True)
    dataset = to_fiftyone(jsonl, task="image-classification", progress=False)
    original = get_dataset(jsonl.stem)
    by_line = {s.jsonl_line: s for s in dataset.iter_samples()}
    by_line[2].tags.append("exclude")
    by_line[2].save()
    fixed = by_line[5]
    before = fixed[GROUND_TRUTH].label
    fixed[GROUND_TRUTH].label = CLASSES[(CLASSES.index(before) + 1) % 3]  # a label edited (as in the App)
    fixed.tags.append("mislabeled")
    fixed.save()
    by_line[9].tags.append("mislabeled")  # tagged, not fixed: left out
    by_line[9].save()

    result = export(dataset)
    assert result.created and result.version.version == original.version + 1
    assert result.kept == 10 and len(result.excluded) == 2 and len(result.relabeled) == 1
    assert f"{jsonl.resolve()}:5: {before} -> {fixed[GROUND_TRUTH].label}" in result.relabeled
    text = repr(result)
    assert "excluded: 2 rows; relabeled: 1 rows" in text and f"training_data: {result.reference}" in text

    new = result.version.records()
    paths = [str(r.path) for r in new]
    assert by_line[2].filepath not in paths and by_line[9].filepath not in paths
    assert next(r.label for r in new if str(r.path) == fixed.filepath) == fixed[GROUND_TRUTH].label
    # The original version is unchanged, and training on the new one is one setting.
    assert get_dataset(jsonl.stem, original.version).content_hash == original.content_hash
    assert len(get_dataset(jsonl.stem, original.version).records()) == 12
    from jupyter_avml.config import AutoMLImageConfig

    config = AutoMLImageConfig(task="image-classification", training_data=result.reference, model_name="resnet18")
    assert config.training_data == f"dataset:{jsonl.stem}:{original.version + 1}"
