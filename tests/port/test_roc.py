"""ROC curves of classification (spec section 10): the data matches scikit-learn's ``roc_curve``, one-vs-rest per
class for multi-class and per label for multi-label; its area is the AUC the metrics report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from jupyter_avml.metrics.classification import multiclass_metrics, multilabel_metrics
from jupyter_avml.metrics.result import MetricsResult


def scores(seed: int, n: int, c: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    probs = rng.random((n, c))
    if seed % 2:
        probs = np.round(probs, 1)  # ties
    return probs


def assert_matches_sklearn(curve: dict, y_true: np.ndarray, y_score: np.ndarray) -> None:
    fpr, tpr, thresholds = skm.roc_curve(y_true, y_score, drop_intermediate=False)
    assert curve["fpr"] == pytest.approx(fpr.tolist())
    assert curve["tpr"] == pytest.approx(tpr.tolist())
    assert curve["thresholds"][0] == math.inf and curve["thresholds"][1:] == pytest.approx(thresholds[1:].tolist())


@pytest.mark.parametrize("seed", range(4))
def test_multiclass_roc_is_one_vs_rest(seed):
    n, c = 40, 3
    probs = scores(seed, n, c)
    probs /= probs.sum(axis=1, keepdims=True) + 1e-12
    targets = np.random.default_rng(seed + 10).integers(0, c, n)
    result = multiclass_metrics(probs, targets, ["a", "b", "c"])
    assert set(result.roc_curves) == {"a", "b", "c"}
    for k, name in enumerate("abc"):
        curve = result.roc_curves[name]
        assert_matches_sklearn(curve, targets == k, probs[:, k])
        area = float(np.trapezoid(curve["tpr"], curve["fpr"]))
        assert area == pytest.approx(skm.roc_auc_score(targets == k, probs[:, k]))


@pytest.mark.parametrize("seed", range(4))
def test_multilabel_roc_is_per_label(seed):
    n, c = 30, 4
    probs = scores(seed, n, c)
    targets = (np.random.default_rng(seed + 20).random((n, c)) < 0.4).astype(int)
    targets[0], targets[1] = 1, 0  # every label has positives and negatives
    result = multilabel_metrics(probs, targets, ["w", "x", "y", "z"])
    for k, name in enumerate("wxyz"):
        assert_matches_sklearn(result.roc_curves[name], targets[:, k], probs[:, k])


def test_undefined_curves_are_empty_and_large_ones_downsampled():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
    result = multiclass_metrics(probs, np.array([0, 0, 0]), ["a", "b"])
    assert result.roc_curves["a"] == result.roc_curves["b"] == {"fpr": [], "tpr": [], "thresholds": []}
    rng = np.random.default_rng(0)
    big = rng.random((5000, 2))
    big /= big.sum(axis=1, keepdims=True)
    curve = multiclass_metrics(big, rng.integers(0, 2, 5000), ["a", "b"]).roc_curves["a"]
    assert len(curve["fpr"]) == 101 and (curve["fpr"][0], curve["tpr"][0]) == (0.0, 0.0)
    assert (curve["fpr"][-1], curve["tpr"][-1]) == (1.0, 1.0)
    assert all(np.diff(curve["fpr"]) >= 0) and all(np.diff(curve["tpr"]) >= 0)


def test_roc_curves_survive_json():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    result = multiclass_metrics(probs, np.array([0, 1, 1, 0]), ["a", "b"])
    data = json.loads(json.dumps(result.to_dict()))
    assert data["roc_curves"]["a"]["thresholds"][0] is None  # inf is not JSON
    back = MetricsResult.from_dict(data)
    assert back.roc_curves["a"]["fpr"] == result.roc_curves["a"]["fpr"]
    assert back.roc_curves["a"]["thresholds"][1:] == result.roc_curves["a"]["thresholds"][1:]


def test_a_run_writes_the_roc_chart_and_data_and_the_dashboard_shows_it(tmp_path):
    from jupyter_avml.dashboard import ExperimentFiles
    from jupyter_avml.training.outputs import write_run_outputs

    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    best = multiclass_metrics(probs, np.array([0, 1, 1, 0]), ["a", "b"])
    run_id = "e" * 32
    outputs = tmp_path / "ws" / "runs" / run_id / "outputs"
    history = [{"epoch": 1, "train_loss": 0.5, "learning_rate": 0.01, "metrics": dict(best.scalars)}]
    files = write_run_outputs(outputs, class_names=["a", "b"], primary_metric="accuracy", best=best, best_epoch=1,
                              history=history, config_yaml="task: image-classification\n")
    assert json.loads((outputs / "roc_curves.json").read_text()) == json.loads(json.dumps(
        {k: {n: [None if math.isinf(v) else v for v in seq] for n, seq in c.items()}
         for k, c in best.roc_curves.items()}))
    assert files["roc_curves_plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = ExperimentFiles("any", tmp_path / "ws").run_report(run_id)
    assert report.images["roc_curves"] == (outputs / "roc_curves.png").read_bytes()


def test_detection_runs_have_no_roc_chart(tmp_path):
    from jupyter_avml.training.outputs import write_run_outputs

    result = MetricsResult(task="image-object-detection", primary_metric="mean_average_precision",
                           scalars={"mean_average_precision": 0.5}, class_names=["a"])
    files = write_run_outputs(tmp_path, class_names=["a"], primary_metric="mean_average_precision", best=result,
                              best_epoch=1, history=[], config_yaml="")
    assert "roc_curves" not in files and not (tmp_path / "roc_curves.png").exists()
