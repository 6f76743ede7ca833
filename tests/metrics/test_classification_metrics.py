"""Classification metrics against scikit-learn (the reference implementation), on random inputs."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from jupyter_avml.metrics import MetricsResult, multiclass_metrics, multilabel_metrics

TOL = 1e-9


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _multiclass_case(seed: int, c: int, absent: bool, n: int = 60):
    """Random probabilities, with ties (rounded), and optionally the last class absent from the targets."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, c - 1 if absent else c, n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), targets] += 1.0  # better than chance so the metrics are not all near 0
    if absent and seed % 2 == 0:
        logits[:, -1] -= 5.0  # the absent class is then (almost surely) never predicted either
    probs = _softmax(logits)
    if seed % 2:  # rounded scores create ties, which the ranking metrics must handle like sklearn
        probs = np.round(probs, 1)
        probs[:, -1] = 1.0 - probs[:, :-1].sum(axis=1)
        probs = np.clip(probs, 0.0, 1.0)
        probs /= probs.sum(axis=1, keepdims=True)
    return probs, targets


def _ovr_mean(score_fn, y_bin: np.ndarray, probs: np.ndarray, weights: np.ndarray | None, need_negatives: bool):
    """Per-class sklearn scores over the classes where they are defined, then (weighted) mean."""
    values, w = [], []
    for k in range(y_bin.shape[1]):
        pos = y_bin[:, k].sum()
        if pos == 0 or (need_negatives and pos == len(y_bin)):
            continue
        values.append(score_fn(y_bin[:, k], probs[:, k]))
        w.append(1.0 if weights is None else weights[k])
    return float(np.average(values, weights=w))


CASES = [(seed, c, absent) for seed, c in enumerate(range(2, 8)) for absent in (False, True) if not (c == 2 and absent)]


@pytest.mark.parametrize("seed,c,absent", CASES)
def test_multiclass_matches_sklearn(seed, c, absent):
    probs, targets = _multiclass_case(seed, c, absent)
    names = [f"class_{k}" for k in range(c)]
    res = multiclass_metrics(probs, targets, names)
    s = res.scalars
    preds = probs.argmax(axis=1)
    labels = list(range(c))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's UndefinedMetricWarning for the absent class
        assert s["accuracy"] == pytest.approx(skm.accuracy_score(targets, preds), abs=TOL)
        for avg in ("micro", "macro", "weighted"):
            assert s[f"precision_score_{avg}"] == pytest.approx(
                skm.precision_score(targets, preds, average=avg, zero_division=0), abs=TOL)
            assert s[f"recall_score_{avg}"] == pytest.approx(
                skm.recall_score(targets, preds, average=avg, zero_division=0), abs=TOL)
            assert s[f"f1_score_{avg}"] == pytest.approx(
                skm.f1_score(targets, preds, average=avg, zero_division=0), abs=TOL)
        assert s["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(targets, preds), abs=TOL)
        assert s["log_loss"] == pytest.approx(skm.log_loss(targets, probs, labels=labels), abs=TOL)
        assert res.confusion_matrix == skm.confusion_matrix(targets, preds, labels=labels).tolist()

        y_bin = label_binarize(targets, classes=labels)
        if c == 2:  # label_binarize gives one column for two classes
            y_bin = np.column_stack([1 - y_bin[:, 0], y_bin[:, 0]])
        support = y_bin.sum(axis=0)
        assert s["AUC_micro"] == pytest.approx(skm.roc_auc_score(y_bin, probs, average="micro"), abs=TOL)
        assert s["average_precision_score_micro"] == pytest.approx(
            skm.average_precision_score(y_bin, probs, average="micro"), abs=TOL)
        if absent:
            # sklearn gives NaN (AUC) or 0 (AP) for the absent class; we leave it out of the means.
            assert math.isnan(res.per_class[names[-1]]["average_precision"])
            assert s["AUC_macro"] == pytest.approx(_ovr_mean(skm.roc_auc_score, y_bin, probs, None, True), abs=TOL)
            assert s["AUC_weighted"] == pytest.approx(
                _ovr_mean(skm.roc_auc_score, y_bin, probs, support, True), abs=TOL)
            assert s["average_precision_score_macro"] == pytest.approx(
                _ovr_mean(skm.average_precision_score, y_bin, probs, None, False), abs=TOL)
            assert s["average_precision_score_weighted"] == pytest.approx(
                _ovr_mean(skm.average_precision_score, y_bin, probs, support, False), abs=TOL)
            # The exclusion really changes the number compared with sklearn's own macro mean.
            assert s["average_precision_score_macro"] > skm.average_precision_score(
                y_bin, probs, average="macro") + 1e-6
        else:
            for avg in ("macro", "weighted"):
                # Two classes: sklearn takes the positive column only; both one-vs-rest AUCs equal it.
                expected = (skm.roc_auc_score(targets, probs[:, 1]) if c == 2 else
                            skm.roc_auc_score(targets, probs, multi_class="ovr", average=avg, labels=labels))
                assert s[f"AUC_{avg}"] == pytest.approx(expected, abs=TOL)
                assert s[f"average_precision_score_{avg}"] == pytest.approx(
                    skm.average_precision_score(y_bin, probs, average=avg), abs=TOL)

        # Per class: precision / recall / f1 / support over all classes, AP per class, PR curves.
        p, r, f, sup = skm.precision_recall_fscore_support(targets, preds, labels=labels, zero_division=0)
        for k, name in enumerate(names):
            pc = res.per_class[name]
            assert (pc["precision"], pc["recall"], pc["f1_score"], pc["support"]) == pytest.approx(
                (p[k], r[k], f[k], sup[k]), abs=TOL)
            if sup[k]:
                assert pc["average_precision"] == pytest.approx(
                    skm.average_precision_score(y_bin[:, k], probs[:, k]), abs=TOL)
                sk_p, sk_r, sk_t = skm.precision_recall_curve(y_bin[:, k], probs[:, k])
                curve = res.pr_curves[name]
                assert len(curve["thresholds"]) <= 101
                for prec, rec, thr in zip(curve["precision"], curve["recall"], curve["thresholds"], strict=True):
                    i = int(np.flatnonzero(sk_t == thr)[0])  # our points are points of sklearn's curve
                    assert (prec, rec) == pytest.approx((sk_p[i], sk_r[i]), abs=TOL)
                assert curve["recall"][-1] == pytest.approx(1.0)
            else:
                assert res.pr_curves[name] == {"precision": [], "recall": [], "thresholds": []}
    assert res.primary_metric == "accuracy" and res.primary_value == s["accuracy"]


def test_multiclass_single_class_present_and_extreme_probabilities():
    # Every target is class 1, probabilities exactly 0 and 1: log loss stays finite (clipped at eps),
    # the per-class AUCs are undefined (NaN means), the primary metric is a number.
    probs = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.5, 0.3]])
    targets = np.array([1, 1, 1, 1])
    res = multiclass_metrics(probs, targets, ["a", "b", "c"])
    assert res.primary_value == 0.75
    assert res.scalars["log_loss"] == pytest.approx(skm.log_loss(targets, probs, labels=[0, 1, 2]), abs=TOL)
    assert math.isfinite(res.scalars["log_loss"])
    # -log(eps) for the sample that gave the true class probability 0
    assert res.scalars["log_loss"] == pytest.approx((-np.log(np.finfo(float).eps) - np.log(0.5)) / 4, abs=TOL)
    assert math.isnan(res.scalars["AUC_macro"]) and math.isnan(res.scalars["AUC_weighted"])
    assert res.scalars["AUC_micro"] == pytest.approx(
        skm.roc_auc_score(label_binarize(targets, classes=[0, 1, 2]), probs, average="micro"), abs=TOL)
    assert res.scalars["average_precision_score_macro"] == pytest.approx(
        skm.average_precision_score((targets == 1).astype(int), probs[:, 1]), abs=TOL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        preds = probs.argmax(axis=1)
        assert res.scalars["precision_score_macro"] == pytest.approx(
            skm.precision_score(targets, preds, average="macro", zero_division=0), abs=TOL)
    assert res.confusion_matrix == [[0, 0, 0], [1, 3, 0], [0, 0, 0]]


def _multilabel_case(seed: int, c: int, n: int = 50):
    rng = np.random.default_rng(100 + seed)
    targets = (rng.random((n, c)) < rng.uniform(0.1, 0.6, c)).astype(int)
    targets[:, -1] = 0  # a label that never occurs: AUC and AP undefined for it
    targets[: n // 5] = 0  # samples with no label at all: the 0/0 case of the sample IoU
    probs = 1.0 / (1.0 + np.exp(-(rng.normal(size=(n, c)) + 1.5 * (targets - 0.5))))
    probs[2: n // 10] *= 0.4  # some unlabelled samples predict nothing either (0/0 in the sample IoU)
    probs[0, 0], probs[1, 0] = 0.0, 1.0  # exact 0 and 1 for the log loss clipping
    if seed % 2:
        probs = np.round(probs, 1)
    return probs, targets


@pytest.mark.parametrize("seed,c", [(s, c) for s, c in enumerate(range(2, 8))])
def test_multilabel_matches_sklearn(seed, c):
    probs, targets = _multilabel_case(seed, c)
    names = [f"label_{k}" for k in range(c)]
    res = multilabel_metrics(probs, targets, names)
    s = res.scalars
    preds = (probs >= 0.5).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # 0/0 (no label, none predicted) counts as 1 in the primary iou: sklearn's zero_division=1.
        assert s["iou"] == pytest.approx(skm.jaccard_score(targets, preds, average="samples", zero_division=1),
                                         abs=TOL)
        assert s["iou"] > skm.jaccard_score(targets, preds, average="samples", zero_division=0)
        for avg in ("micro", "macro", "weighted"):
            assert s[f"iou_{avg}"] == pytest.approx(skm.jaccard_score(targets, preds, average=avg, zero_division=0),
                                                    abs=TOL)
            assert s[f"precision_score_{avg}"] == pytest.approx(
                skm.precision_score(targets, preds, average=avg, zero_division=0), abs=TOL)
            assert s[f"recall_score_{avg}"] == pytest.approx(
                skm.recall_score(targets, preds, average=avg, zero_division=0), abs=TOL)
            assert s[f"f1_score_{avg}"] == pytest.approx(
                skm.f1_score(targets, preds, average=avg, zero_division=0), abs=TOL)
        assert s["accuracy"] == pytest.approx(skm.accuracy_score(targets, preds), abs=TOL)
        assert s["hamming_loss"] == pytest.approx(skm.hamming_loss(targets, preds), abs=TOL)
        assert s["log_loss"] == pytest.approx(skm.log_loss(targets.ravel(), probs.ravel(), labels=[0, 1]), abs=TOL)
        support = targets.sum(axis=0)
        assert s["AUC_micro"] == pytest.approx(skm.roc_auc_score(targets, probs, average="micro"), abs=TOL)
        assert s["average_precision_score_micro"] == pytest.approx(
            skm.average_precision_score(targets, probs, average="micro"), abs=TOL)
        assert s["AUC_macro"] == pytest.approx(_ovr_mean(skm.roc_auc_score, targets, probs, None, True), abs=TOL)
        assert s["AUC_weighted"] == pytest.approx(_ovr_mean(skm.roc_auc_score, targets, probs, support, True), abs=TOL)
        assert s["average_precision_score_macro"] == pytest.approx(
            _ovr_mean(skm.average_precision_score, targets, probs, None, False), abs=TOL)
        assert s["average_precision_score_weighted"] == pytest.approx(
            _ovr_mean(skm.average_precision_score, targets, probs, support, False), abs=TOL)
        # sklearn's weighted mean gives the absent label weight 0, so it agrees even with the exclusion.
        assert s["average_precision_score_weighted"] == pytest.approx(
            skm.average_precision_score(targets, probs, average="weighted"), abs=TOL)
        p, r, f, sup = skm.precision_recall_fscore_support(targets, preds, zero_division=0)
        jac = skm.jaccard_score(targets, preds, average=None, zero_division=0)
    for k, name in enumerate(names):
        pc = res.per_class[name]
        assert (pc["precision"], pc["recall"], pc["f1_score"], pc["iou"], pc["support"]) == pytest.approx(
            (p[k], r[k], f[k], jac[k], sup[k]), abs=TOL)
    assert math.isnan(res.per_class[names[-1]]["average_precision"])
    assert res.confusion_matrix is None
    assert res.primary_metric == "iou" and res.primary_value == s["iou"]


def test_multilabel_threshold_and_empty_rows():
    # Two samples: the first has labels {0}, predicts {0, 1} -> 1/2; the second has none and predicts none
    # -> 0/0 -> 1. Mean iou = 0.75. With threshold 0.7 the first predicts {0} only -> 1, mean 1.0.
    probs = np.array([[0.9, 0.6], [0.1, 0.2]])
    targets = np.array([[1, 0], [0, 0]])
    assert multilabel_metrics(probs, targets, ["a", "b"]).primary_value == pytest.approx(0.75)
    assert multilabel_metrics(probs, targets, ["a", "b"], threshold=0.7).primary_value == pytest.approx(1.0)
    # Class "b" never occurs: AUC only from class "a" (1.0: 0.9 > 0.1).
    res = multilabel_metrics(probs, targets, ["a", "b"])
    assert res.scalars["AUC_macro"] == 1.0


def test_result_round_trips_through_json():
    probs, targets = _multiclass_case(3, 4, absent=True)
    res = multiclass_metrics(probs, targets, ["a", "b", "c", "d"])
    data = json.loads(json.dumps(res.to_dict(), allow_nan=False))  # strict JSON: NaN became null
    assert data["per_class"]["d"]["average_precision"] is None
    assert data["primary_value"] == res.primary_value
    back = MetricsResult.from_dict(data)
    assert back.scalars == res.scalars
    assert back.confusion_matrix == res.confusion_matrix
    assert back.pr_curves == res.pr_curves
    assert math.isnan(back.per_class["d"]["average_precision"])
    assert back.per_class["a"] == res.per_class["a"]


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError, match="class_names"):
        multiclass_metrics(np.full((2, 3), 1 / 3), np.array([0, 1]), ["a", "b"])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        multiclass_metrics(np.full((2, 3), 1 / 3), np.array([0, 3]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="only 0 and 1"):
        multilabel_metrics(np.full((2, 2), 0.5), np.array([[0, 2], [1, 0]]), ["a", "b"])
