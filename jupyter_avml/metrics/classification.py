"""Classification metrics (multi-class and multi-label), named as the cloud AutoML system reports them.

Pure numpy; the values match scikit-learn's functions of the same meaning (the tests check each one), with
the differences stated below.

Conventions shared by both tasks
--------------------------------
* Division by zero gives 0 (scikit-learn's ``zero_division=0``): a class never predicted has precision 0,
  a class never present has recall 0, and F1 is ``2 tp / (2 tp + fp + fn)`` or 0 when that is 0/0.
* Ranking metrics (``AUC_*``, ``average_precision_score_*``) are one-vs-rest per class. A class's AUC is
  undefined when the class has no positive or no negative in ``targets``; its average precision is undefined
  when it has no positive. Undefined per-class values are NaN and are **left out of the macro and weighted
  means** (scikit-learn would return NaN for the AUC, and count the average precision as 0). When no class
  is defined the mean is NaN. Micro means pool every (sample, class) pair into one binary problem.
* Tied scores form one threshold (as in scikit-learn): AUC counts a tied positive/negative pair as 1/2.
* ``log_loss`` clips probabilities to ``[eps, 1 - eps]`` with ``eps = np.finfo(probs.dtype).eps``, as
  scikit-learn does, so probabilities of exactly 0 or 1 give a finite loss.
* PR curves have one point per distinct score of a positive example (the thresholds at which recall
  changes), ordered by decreasing threshold, downsampled to at most 101 points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from jupyter_avml.metrics.result import MetricsResult, curve_dict, roc_curve_dict
from jupyter_avml.tasks import ImageTask

__all__ = ["multiclass_metrics", "multilabel_metrics"]


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0 where den == 0 (scikit-learn's zero_division=0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _nan_mean(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """(Weighted) mean of the finite entries; NaN when none is finite or the weights sum to 0."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    if not ok.any():
        return math.nan
    if weights is None:
        return float(values[ok].mean())
    w = np.asarray(weights, dtype=np.float64)[ok]
    total = w.sum()
    return float(np.dot(values[ok], w) / total) if total > 0 else math.nan


class _Ranking:
    """AUC, average precision and PR curve of one binary problem (scores of all examples, and of positives).

    ``sorted_scores`` are the scores of every example, ascending; ``positive_scores`` those of the positive
    examples (any order; each must occur in ``sorted_scores``). Everything follows from ranks, so no argsort
    of the full problem is needed. With ``roc`` the ROC curve is kept too (``fpr``, ``tpr``).
    """

    __slots__ = ("auc", "average_precision", "precision", "recall", "thresholds", "fpr", "tpr", "roc_thresholds")

    def __init__(self, sorted_scores: np.ndarray, positive_scores: np.ndarray, roc: bool = True):
        n = sorted_scores.size
        pos = np.sort(positive_scores)
        n_pos = pos.size
        n_neg = n - n_pos
        empty = np.zeros(0)
        self.auc = math.nan
        self.average_precision = math.nan
        self.precision = self.recall = self.thresholds = empty
        self.fpr = self.tpr = self.roc_thresholds = empty
        if n_pos == 0:
            return
        lo = np.searchsorted(sorted_scores, pos, side="left")  # scores strictly below each positive
        if n_neg > 0:
            # Mann-Whitney: sum over positives of (#scores below + 1/2 #scores equal) counts every pair
            # (positive, x); removing the pairs with another positive (exactly n_pos^2 / 2 in total, ties
            # included) leaves the positive-negative pairs: the area under the ROC curve with ties as 1/2.
            # Scores equal to a positive end at hi (exclusive). Every positive is itself in sorted_scores at
            # index lo, so without ties hi = lo + 1; a second binary search is needed for tied values only.
            hi = lo + 1
            tied = hi < n
            tied[tied] = sorted_scores[hi[tied]] == pos[tied]
            if tied.any():
                hi[tied] = np.searchsorted(sorted_scores, pos[tied], side="right")
            twice_u = int(lo.sum(dtype=np.int64)) + int(hi.sum(dtype=np.int64)) - n_pos * n_pos
            self.auc = twice_u / (2.0 * n_pos * n_neg)
            if roc:
                self._roc(sorted_scores, pos, n_pos, n_neg)
        # Recall only changes at the distinct scores of positives: AP = sum of (recall step) x precision there.
        starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])
        counts = np.diff(np.r_[starts, n_pos])
        tps = n_pos - starts  # positives scoring >= each distinct value
        predicted = n - lo[starts]  # everything scoring >= it
        precision = tps / predicted
        self.average_precision = float(np.dot(counts, precision) / n_pos)
        self.precision = precision[::-1]
        self.recall = (tps / n_pos)[::-1]
        self.thresholds = pos[starts][::-1]

    def _roc(self, sorted_scores: np.ndarray, pos: np.ndarray, n_pos: int, n_neg: int) -> None:
        """The ROC curve: at each distinct score t, from the highest, TPR = share of positives scoring >= t and
        FPR = share of negatives scoring >= t; it starts at (0, 0) (threshold inf). Its trapezoid area is
        ``auc`` (ties count 1/2)."""
        n = sorted_scores.size
        starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
        values = sorted_scores[starts]
        at_or_above = n - starts
        pos_at_or_above = n_pos - np.searchsorted(pos, values, side="left")
        neg_at_or_above = at_or_above - pos_at_or_above
        self.tpr = np.r_[0.0, (pos_at_or_above / n_pos)[::-1]]
        self.fpr = np.r_[0.0, (neg_at_or_above / n_neg)[::-1]]
        self.roc_thresholds = np.r_[np.inf, values[::-1]]

    def curve(self) -> dict[str, list[float]]:
        return curve_dict(self.precision, self.recall, self.thresholds)

    def roc_curve(self) -> dict[str, list[float]]:
        return roc_curve_dict(self.fpr, self.tpr, self.roc_thresholds)


def _check_probs(probs: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    probs = np.asarray(probs)
    if not np.issubdtype(probs.dtype, np.floating):
        probs = probs.astype(np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be a 2-D array [N, C], got shape {probs.shape}")
    n, c = probs.shape
    if n == 0:
        raise ValueError("probs is empty: no samples to evaluate")
    if len(class_names) != c:
        raise ValueError(f"class_names has {len(class_names)} names but probs has {c} columns")
    if not np.isfinite(probs).all():
        raise ValueError("probs contains NaN or infinite values")
    return probs


def _log_loss_eps(probs: np.ndarray) -> float:
    return float(np.finfo(probs.dtype).eps)


def _ranking_metrics(probs: np.ndarray, probs_t: np.ndarray, columns: list[np.ndarray],
                     micro_positive_scores: np.ndarray, support: np.ndarray) -> tuple[dict[str, float], list[_Ranking]]:
    """One-vs-rest AUC and AP for every class and pooled (micro).

    ``probs_t`` is a C-contiguous copy of ``probs.T`` that is sorted in place here; ``columns[k]`` holds the
    scores of class k's positives.
    """
    probs_t.sort(axis=1)
    rankings = [_Ranking(probs_t[k], columns[k]) for k in range(probs.shape[1])]
    micro = _Ranking(np.sort(probs, axis=None), micro_positive_scores, roc=False)  # no pooled ROC curve
    auc = np.array([r.auc for r in rankings])
    ap = np.array([r.average_precision for r in rankings])
    scalars = {
        "AUC_macro": _nan_mean(auc),
        "AUC_micro": float(micro.auc),
        "AUC_weighted": _nan_mean(auc, support),
        "average_precision_score_macro": _nan_mean(ap),
        "average_precision_score_micro": float(micro.average_precision),
        "average_precision_score_weighted": _nan_mean(ap, support),
    }
    return scalars, rankings


def _result(task: ImageTask, primary_metric: str, scalars: dict[str, float], class_names: Sequence[str],
            rankings: list, support: np.ndarray, *, confusion_matrix: list | None,
            **columns: np.ndarray) -> MetricsResult:
    """The MetricsResult of a classification task: per class, ``columns`` (each ``[C]``) then the average
    precision of ``rankings`` and the support; PR curves from ``rankings``."""
    names = [str(name) for name in class_names]
    per_class = {
        name: {**{column: float(values[k]) for column, values in columns.items()},
               "average_precision": float(rankings[k].average_precision), "support": float(support[k])}
        for k, name in enumerate(names)
    }
    return MetricsResult(task=task.value, primary_metric=primary_metric, scalars=scalars, per_class=per_class,
                         confusion_matrix=confusion_matrix,
                         pr_curves={name: rankings[k].curve() for k, name in enumerate(names)}, class_names=names,
                         roc_curves={name: rankings[k].roc_curve() for k, name in enumerate(names)})


def multiclass_metrics(probs: np.ndarray, targets: np.ndarray, class_names: Sequence[str]) -> MetricsResult:
    """Metrics of a multi-class classifier; primary metric ``accuracy``.

    Parameters
    ----------
    probs : np.ndarray
        ``[N, C]`` float, class probabilities (softmax outputs; rows should sum to 1 -- they are not
        renormalised). The prediction is the arg-max (the first column on ties).
    targets : np.ndarray
        ``[N]`` int, the true class index in ``[0, C)``.
    class_names : list[str]
        ``C`` names, in column order.

    Returns
    -------
    MetricsResult
        ``scalars``: ``accuracy`` (primary), ``balanced_accuracy``, ``precision_score_{micro,macro,weighted}``,
        ``recall_score_*``, ``f1_score_*``, ``AUC_{macro,micro,weighted}`` (one-vs-rest),
        ``average_precision_score_{macro,micro,weighted}``, ``log_loss``. ``per_class``: ``precision``,
        ``recall``, ``f1_score``, ``average_precision``, ``support``. ``confusion_matrix``: rows = true
        class, columns = predicted class. ``pr_curves``, ``roc_curves``: one-vs-rest per class.

    Notes
    -----
    * Precision, recall and F1 macro means run over the classes that occur in ``targets`` or in the
      predictions (scikit-learn's default label set): a class absent from both carries no information and
      would only pull the mean down. Weighted means use the support (count in ``targets``). Micro
      precision, recall and F1 all equal the accuracy.
    * ``balanced_accuracy`` is the mean recall over the classes present in ``targets``.
    * AUC / average precision of a class absent from ``targets`` are NaN and excluded from the means (see
      the module docstring); with a single class present, every per-class AUC is undefined and the
      ``AUC_macro`` / ``AUC_weighted`` are NaN, while ``AUC_micro`` stays defined.
    """
    probs = _check_probs(probs, class_names)
    n, c = probs.shape
    targets = np.asarray(targets)
    if targets.shape != (n,):
        raise ValueError(f"targets must have shape ({n},) to match probs, got {targets.shape}")
    if not np.issubdtype(targets.dtype, np.integer):
        if not np.all(np.mod(targets, 1) == 0):
            raise ValueError("targets must be integer class indices")
    targets = targets.astype(np.int64)
    if targets.min() < 0 or targets.max() >= c:
        raise ValueError(f"targets must lie in [0, {c}), got values from {targets.min()} to {targets.max()}")

    preds = probs.argmax(axis=1)
    cm = np.bincount(targets * c + preds, minlength=c * c).reshape(c, c)
    tp = np.diag(cm).astype(np.int64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    fp = predicted - tp
    fn = support - tp
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    labels = (support > 0) | (predicted > 0)

    scalars: dict[str, float] = {"accuracy": float(tp.sum() / n)}
    for name, per in (("precision_score", precision), ("recall_score", recall), ("f1_score", f1)):
        scalars[f"{name}_macro"] = float(per[labels].mean())
        scalars[f"{name}_weighted"] = float(np.dot(per, support) / support.sum())
    # Over the label set every sample counts once as predicted and once as true: micro P = R = F1 = accuracy.
    micro_tp, micro_fp, micro_fn = tp[labels].sum(), fp[labels].sum(), fn[labels].sum()
    scalars["precision_score_micro"] = float(_safe_div(micro_tp, micro_tp + micro_fp))
    scalars["recall_score_micro"] = float(_safe_div(micro_tp, micro_tp + micro_fn))
    scalars["f1_score_micro"] = float(_safe_div(2 * micro_tp, 2 * micro_tp + micro_fp + micro_fn))
    scalars["balanced_accuracy"] = float(recall[support > 0].mean())

    true_scores = probs[np.arange(n), targets]
    eps = _log_loss_eps(probs)
    scalars["log_loss"] = float(-np.mean(np.log(np.clip(true_scores, eps, 1 - eps), dtype=np.float64)))

    order = np.argsort(targets, kind="stable")
    bounds = np.r_[0, np.cumsum(support)]
    grouped = true_scores[order]
    columns = [grouped[bounds[k]:bounds[k + 1]] for k in range(c)]
    ranking_scalars, rankings = _ranking_metrics(probs, np.ascontiguousarray(probs.T), columns, true_scores, support)
    scalars.update(ranking_scalars)

    return _result(ImageTask.IMAGE_CLASSIFICATION, "accuracy", scalars, class_names, rankings, support,
                   confusion_matrix=cm.tolist(), precision=precision, recall=recall, f1_score=f1)


def multilabel_metrics(probs: np.ndarray, targets: np.ndarray, class_names: Sequence[str],
                       threshold: float = 0.5) -> MetricsResult:
    """Metrics of a multi-label classifier; primary metric ``iou``.

    Parameters
    ----------
    probs : np.ndarray
        ``[N, C]`` float, independent per-class probabilities (sigmoid outputs).
    targets : np.ndarray
        ``[N, C]`` in {0, 1} (or bool): 1 where the label applies.
    class_names : list[str]
        ``C`` names, in column order.
    threshold : float
        A label is predicted when its probability is ``>= threshold``.

    Returns
    -------
    MetricsResult
        ``scalars``: ``iou`` (primary), ``iou_{micro,macro,weighted}``, ``accuracy`` (subset accuracy: every
        label of the sample right), ``hamming_loss``, ``precision_score_{micro,macro,weighted}``,
        ``recall_score_*``, ``f1_score_*``, ``AUC_{macro,micro,weighted}``,
        ``average_precision_score_{macro,micro,weighted}``, ``log_loss`` (mean binary cross-entropy over all
        N x C entries). ``per_class``: ``precision``, ``recall``, ``f1_score``, ``iou``,
        ``average_precision``, ``support``. ``pr_curves``, ``roc_curves``: per label. No confusion matrix.

    Notes
    -----
    * ``iou`` is the sample-wise Jaccard index: the mean over samples of ``|pred & true| / |pred | true|``,
      where a sample with no true and no predicted label (0/0) counts as 1 -- predicting "nothing" for an
      image with no label is right. This equals scikit-learn's
      ``jaccard_score(targets, preds, average="samples", zero_division=1)``. Unlike the other metrics, this
      one does not follow the 0/0 -> 0 rule: with it, a model could never reach 1 on data that has
      unlabelled images.
    * ``iou_micro/macro/weighted`` are the per-class Jaccard ``tp / (tp + fp + fn)`` pooled, averaged over all
      C classes, or weighted by support; 0/0 -> 0 there (scikit-learn's default).
    * Precision, recall, F1 and IoU macro means run over all C classes (scikit-learn's behaviour for
      label-indicator targets). A class's AUC is undefined when it is on in no sample or in every sample.
    """
    probs = _check_probs(probs, class_names)
    n, c = probs.shape
    targets = np.asarray(targets)
    if targets.shape != (n, c):
        raise ValueError(f"targets must have shape ({n}, {c}) to match probs, got {targets.shape}")
    truth = targets != 0
    if targets.dtype != np.bool_ and not (targets[truth] == 1).all():
        raise ValueError("targets must contain only 0 and 1")
    preds = probs >= threshold

    hit = preds & truth
    tp = np.count_nonzero(hit, axis=0).astype(np.int64)
    predicted = np.count_nonzero(preds, axis=0).astype(np.int64)
    support = np.count_nonzero(truth, axis=0).astype(np.int64)
    fp = predicted - tp
    fn = support - tp
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    jaccard = _safe_div(tp, tp + fp + fn)

    inter = np.count_nonzero(hit, axis=1)
    union = np.count_nonzero(preds | truth, axis=1)
    sample_iou = np.ones(n, dtype=np.float64)
    np.divide(inter, union, out=sample_iou, where=union > 0)

    scalars: dict[str, float] = {
        "iou": float(sample_iou.mean()),
        "accuracy": float(np.count_nonzero(inter == union) / n),  # exact match: nothing outside the overlap
        "hamming_loss": float(np.count_nonzero(preds != truth) / (n * c)),
    }
    total_support = support.sum()
    for name, per, num, den in (
        ("iou", jaccard, tp.sum(), (tp + fp + fn).sum()),
        ("precision_score", precision, tp.sum(), (tp + fp).sum()),
        ("recall_score", recall, tp.sum(), (tp + fn).sum()),
        ("f1_score", f1, 2 * tp.sum(), (2 * tp + fp + fn).sum()),
    ):
        scalars[f"{name}_micro"] = float(_safe_div(num, den))
        scalars[f"{name}_macro"] = float(per.mean())
        scalars[f"{name}_weighted"] = float(_safe_div(np.dot(per, support), total_support))

    eps = _log_loss_eps(probs)
    p_true = 1 - probs  # then the probability given to what actually happened, clipped, in place
    np.copyto(p_true, probs, where=truth)
    np.clip(p_true, eps, 1 - eps, out=p_true)
    scalars["log_loss"] = float(-np.mean(np.log(p_true, out=p_true), dtype=np.float64))
    del p_true

    probs_t = np.ascontiguousarray(probs.T)
    truth_t = np.ascontiguousarray(truth.T)
    columns = [probs_t[k][truth_t[k]] for k in range(c)]
    del truth_t
    ranking_scalars, rankings = _ranking_metrics(probs, probs_t, columns, probs[truth], support)
    del probs_t
    scalars.update(ranking_scalars)

    return _result(ImageTask.IMAGE_CLASSIFICATION_MULTILABEL, "iou", scalars, class_names, rankings, support,
                   confusion_matrix=None, precision=precision, recall=recall, f1_score=f1, iou=jaccard)
