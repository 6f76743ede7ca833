"""Predictions through load_model on a FiftyOne dataset, and FiftyOne's evaluation of them, with the expected counts.

The models are untrained networks saved as training saves them (``conftest.save_model``): what is under test is
that every image gets what ``load_model(...).predict`` returns for it, in the field named after the run, with
logits and embeddings, and that the evaluation fields count what the predictions and the ground truth hold.
"""

from __future__ import annotations

import numpy as np
import pytest

from jupyter_avml import load_model
from jupyter_avml.data.shapes import make_shapes
from jupyter_avml.qa import add_predictions, evaluate, to_fiftyone
from jupyter_avml.qa.labels import GROUND_TRUTH
from tests.qa.conftest import save_model

DETECTOR = dict(min_size=64, max_size=64)


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("task, model_name, settings", [
    ("image-classification", "resnet18", dict(train_crop_size=32, valid_resize_size=32, valid_crop_size=32)),
    ("image-classification-multilabel", "resnet18", dict(train_crop_size=32, valid_resize_size=32,
                                                         valid_crop_size=32)),
    ("image-object-detection", "fasterrcnn_resnet18_fpn", dict(DETECTOR, box_score_thresh=0.0,
                                                               box_detections_per_img=20)),
    ("image-instance-segmentation", "maskrcnn_resnet18_fpn", dict(DETECTOR, box_score_thresh=0.0,
                                                                  box_detections_per_img=10)),
], ids=["multiclass", "multilabel", "detection", "segmentation"])
def test_predictions_and_evaluation_fields_have_the_expected_counts(task, model_name, settings, tmp_path, qa_workspace,
                                                                    fo_datasets):
    jsonl = make_shapes(tmp_path / "data", task, n=6, size=48, seed=4, color_by_class=True, max_objects=2)
    model = save_model(tmp_path / "run", task, model_name, **settings)
    dataset = to_fiftyone(jsonl, task=task, progress=False)
    field = add_predictions(dataset, model, progress=False, device="cpu")
    assert field.startswith("model_") and dataset.has_sample_field(field)  # a bare model file: named after its path
    assert len(dataset.exists(field)) == len(dataset) == 6

    # The same predictions as deployment's: load_model(...).predict on the same files.
    paths = dataset.values("filepath")
    direct = load_model(model, device="cpu").predict(paths)
    stored = dataset.values(field)
    embeddings = dataset.values(field + "_embedding")
    assert all(vector is not None and vector.ndim == 1 and len(vector) > 8 for vector in embeddings)
    if task == "image-classification":
        for label, expected in zip(stored, direct, strict=True):
            best = int(np.argmax(expected["probs"]))
            assert label.label == expected["labels"][best]
            assert label.confidence == pytest.approx(expected["probs"][best], abs=1e-6)
            softmax = np.exp(label.logits - label.logits.max())
            assert np.allclose(softmax / softmax.sum(), expected["probs"], atol=1e-5)
    elif task == "image-classification-multilabel":
        for label, expected in zip(stored, direct, strict=True):
            kept = [name for name, p in zip(expected["labels"], expected["probs"], strict=True) if p >= 0.5]
            assert [c.label for c in label.classifications] == kept
            assert np.allclose(1 / (1 + np.exp(-label.logits)), expected["probs"], atol=1e-5)
    else:
        for label, expected in zip(stored, direct, strict=True):
            assert len(label.detections) == len(expected["boxes"])
            assert [d.label for d in label.detections] == [b["label"] for b in expected["boxes"]]
            assert [d.confidence for d in label.detections] == pytest.approx([b["score"] for b in expected["boxes"]])
            if task == "image-instance-segmentation":
                assert all(d.mask is not None and d.mask.any() for d in label.detections)
        assert sum(len(label.detections) for label in stored) > 0

    result = evaluate(dataset, field)
    key = result.eval_key
    assert result.samples == 6 and key in dataset.list_evaluations() or task.endswith("multilabel")
    if task == "image-classification":
        correct = dataset.values(key)
        assert len(correct) == 6 and all(isinstance(v, bool) for v in correct)
        assert result.metrics["accuracy"] == pytest.approx(sum(correct) / 6)
        assert result.ours["accuracy"] == pytest.approx(result.metrics["accuracy"])
    elif task == "image-classification-multilabel":
        truth = dataset.values(f"{GROUND_TRUTH}.classifications.label")
        predicted = dataset.values(f"{field}.classifications.label")
        tp = [len(set(t) & set(p or [])) for t, p in zip(truth, predicted, strict=True)]
        fp = [len(set(p or []) - set(t)) for t, p in zip(truth, predicted, strict=True)]
        fn = [len(set(t) - set(p or [])) for t, p in zip(truth, predicted, strict=True)]
        assert dataset.values(f"{key}_tp") == tp and dataset.values(f"{key}_fp") == fp
        assert dataset.values(f"{key}_fn") == fn
    else:
        predictions = [len(label.detections) for label in stored]
        truths = [len(label.detections) for label in dataset.values(GROUND_TRUTH)]
        tp, fp, fn = (dataset.values(f"{key}_{name}") for name in ("tp", "fp", "fn"))
        assert [a + b for a, b in zip(tp, fp, strict=True)] == predictions
        assert [a + b for a, b in zip(tp, fn, strict=True)] == truths
        per_object = dataset.values(f"{field}.detections.{key}")
        assert sorted({v for values in per_object for v in values}) <= ["fp", "tp"]
        assert result.map_difference is not None and result.map_difference < 1e-3
    assert result.views and all(view in dataset.list_saved_views() for view in result.views)
    # fiftyone.brain on these predictions; the model's own embeddings give near-duplicates and a 2-D map.
    from jupyter_avml.qa import find_mistakes

    report = find_mistakes(dataset, field)
    assert len(report.ranked) == 6 and dataset.has_sample_field(report.mistakenness_field)
    assert report.map_key in dataset.list_brain_runs() and isinstance(report.near_duplicates, int)
    assert bool(report.hardness_field) == task.startswith("image-classification")  # FiftyOne's is for classifiers


def test_predicting_again_fills_only_what_is_missing_and_two_runs_sit_side_by_side(tmp_path, qa_workspace,
                                                                                     fo_datasets):
    settings = dict(train_crop_size=32, valid_resize_size=32, valid_crop_size=32)
    jsonl = make_shapes(tmp_path / "data", "image-classification", n=6, size=32, seed=5, color_by_class=True)
    first = save_model(tmp_path / "run-a", "image-classification", "resnet18", seed=1, **settings)
    second = save_model(tmp_path / "run-b", "image-classification", "resnet18", seed=2, **settings)
    dataset = to_fiftyone(jsonl, task="image-classification", progress=False)
    field = add_predictions(dataset, first, progress=False, device="cpu")
    # An interruption after some samples: their predictions are kept, the others are done on the next call.
    ids = dataset.values("id")
    dataset.select(ids[:4]).set_values(field, [None] * 4)
    kept = dataset.select(ids[4:]).values(f"{field}.id")
    calls = []
    add_predictions(dataset, first, progress=lambda done, total: calls.append((done, total)), device="cpu")
    assert calls[-1] == (4, 4)
    assert dataset.select(ids[4:]).values(f"{field}.id") == kept
    assert len(dataset.exists(field)) == 6
    other = add_predictions(dataset, second, progress=False, device="cpu")
    assert other != field and len(dataset.exists(other)) == 6
    assert dataset.info["avml"]["predictions"][other]["complete"]
    job = add_predictions(dataset, second, field="in_background", background=True, device="cpu")
    assert job.wait(120) == "in_background" and len(dataset.exists("in_background")) == 6
