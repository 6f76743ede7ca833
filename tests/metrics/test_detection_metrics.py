"""VOC mAP (ours) on cases worked out by hand, plus the metric-type plumbing and the speed case.

Boxes are ``xyxy`` pixels. Unless a test says otherwise boxes are 10x10 and far apart, so a prediction
equal to a ground truth box has IoU 1 with it and 0 with everything else.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from jupyter_avml.metrics import (
    ImagePredictions,
    ImageTargets,
    MetricsResult,
    average_precision_all_points,
    box_iou,
    detection_metrics,
    mask_iou,
    merge_box_and_mask,
)

A = [0, 0, 10, 10]
B = [100, 0, 110, 10]
C = [200, 0, 210, 10]
FAR = [500, 500, 510, 510]  # overlaps no ground truth


def gt(boxes, labels, iscrowd=None, masks=None):
    return ImageTargets(boxes=np.array(boxes, dtype=float).reshape(-1, 4), labels=np.array(labels, dtype=int),
                        iscrowd=None if iscrowd is None else np.array(iscrowd, dtype=bool), masks=masks)


def dt(boxes, scores, labels, masks=None):
    return ImagePredictions(boxes=np.array(boxes, dtype=float).reshape(-1, 4), scores=np.array(scores, dtype=float),
                            labels=np.array(labels, dtype=int), masks=masks)


def voc(targets, predictions, names=("a",), **kwargs) -> MetricsResult:
    return detection_metrics(targets, predictions, list(names), metric_type="voc", **kwargs)


def test_iou_functions(monkeypatch):
    # [0,0,10,10] vs [5,0,15,10]: intersection 5x10 = 50, union 100 + 100 - 50 = 150 -> 1/3.
    np.testing.assert_allclose(box_iou(np.array([A]), np.array([[5, 0, 15, 10], A, FAR])), [[1 / 3, 1.0, 0.0]])
    assert box_iou(np.zeros((0, 4)), np.array([A])).shape == (0, 1)
    m = np.zeros((2, 4, 4), bool)
    m[0, :2, :] = True  # 8 pixels
    m[1, :, :1] = True  # 4 pixels, 2 of them shared with m[0]
    # intersection 2, union 8 + 4 - 2 = 10 -> 0.2; an empty mask against itself -> 0 (empty union)
    np.testing.assert_allclose(mask_iou(m[:1], m), [[1.0, 0.2]])
    np.testing.assert_allclose(mask_iou(np.zeros((1, 4, 4), bool), np.zeros((1, 4, 4), bool)), [[0.0]])
    assert mask_iou(m, np.zeros((0, 4, 4), bool)).shape == (2, 0)
    # Large masks are multiplied in blocks: force tiny blocks and compare with a direct count.
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 6, 7)) < 0.5, rng.random((4, 6, 7)) < 0.5
    inter = (a[:, None] & b[None]).sum(axis=(2, 3))
    union = (a[:, None] | b[None]).sum(axis=(2, 3))
    full = mask_iou(a, b)
    np.testing.assert_allclose(full, inter / union)
    monkeypatch.setattr("jupyter_avml.metrics.detection._MASK_BLOCK_PIXELS", 100)  # 2 masks per block
    np.testing.assert_allclose(mask_iou(a, b), full)


def test_perfect_predictions_give_one():
    targets = [gt([A, B], [0, 0]), gt([C], [0])]
    predictions = [dt([B, A], [0.4, 0.9], [0, 0]), dt([C], [0.35], [0])]
    res = voc(targets, predictions)
    assert res.primary_metric == "mean_average_precision"
    assert res.primary_value == 1.0
    assert res.per_class["a"]["average_precision"] == 1.0
    assert res.scalars["precision"] == 1.0 and res.scalars["recall"] == 1.0
    assert res.per_class["a"]["support"] == 3.0


def test_false_positive_ranked_above_true_positives():
    # Ranked: FP (0.9), TP (0.8), TP (0.7); 2 positives.
    # precision 0/1, 1/2, 2/3; recall 0, 1/2, 1.
    # Envelope: at recall 1/2 -> max(1/2, 2/3) = 2/3; at recall 1 -> 2/3.
    # AP = (1/2 - 0) * 2/3 + (1 - 1/2) * 2/3 = 2/3.
    res = voc([gt([A, B], [0, 0])], [dt([FAR, A, B], [0.9, 0.8, 0.7], [0, 0, 0])])
    assert res.primary_value == pytest.approx(2 / 3, abs=1e-12)
    curve = res.pr_curves["a"]  # raw (not enveloped) precision after each ranked prediction
    assert curve["precision"] == pytest.approx([0.0, 0.5, 2 / 3])
    assert curve["recall"] == pytest.approx([0.0, 0.5, 1.0])
    assert curve["thresholds"] == pytest.approx([0.9, 0.8, 0.7])
    # At score_threshold 0.75 only FP (0.9) and TP (0.8) count: precision 1/2, recall 1/2.
    res = voc([gt([A, B], [0, 0])], [dt([FAR, A, B], [0.9, 0.8, 0.7], [0, 0, 0])], score_threshold=0.75)
    assert (res.scalars["precision"], res.scalars["recall"]) == pytest.approx((0.5, 0.5))


def test_missed_ground_truth_and_all_point_vs_11_point():
    # 3 positives, 2 found: precision 1, 1; recall 1/3, 2/3.
    # All-point: 1/3 * 1 + (2/3 - 1/3) * 1 = 2/3 (recall 2/3 -> 1 adds nothing: envelope precision 0 there).
    # 11-point: max precision at recall >= t for t = 0, .1, ..., 1: it is 1 for t <= 0.6 (7 points:
    # 0 .. 0.6, since 2/3 >= 0.6) and 0 for t = 0.7 .. 1.0 (4 points) -> 7/11 = 0.636..., not 2/3.
    res = voc([gt([A, B, C], [0, 0, 0])], [dt([A, B], [0.9, 0.8], [0, 0])])
    assert res.primary_value == pytest.approx(2 / 3, abs=1e-12)
    assert abs(res.primary_value - 7 / 11) > 0.03
    assert res.scalars["recall"] == pytest.approx(2 / 3) and res.scalars["precision"] == 1.0
    # The helper on its own: the same numbers.
    assert average_precision_all_points(np.array([1 / 3, 2 / 3]), np.array([1.0, 1.0])) == pytest.approx(2 / 3)


def test_all_point_interpolation_uses_the_envelope():
    # Ranked TP, FP, TP with 2 positives: precision 1, 1/2, 2/3; recall 1/2, 1/2, 1.
    # Envelope: recall 1/2 -> max(1, 1/2, 2/3) = 1; recall 1 -> 2/3. AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    # (11-point would give (6 * 1 + 5 * 2/3) / 11 = 28/33.)
    res = voc([gt([A, B], [0, 0])], [dt([A, FAR, B], [0.9, 0.8, 0.7], [0, 0, 0])])
    assert res.primary_value == pytest.approx(5 / 6, abs=1e-12)


def test_duplicate_detection_is_a_false_positive():
    # A found twice (the copy shifted by 1 px: IoU 90/110 = 0.82 >= 0.5), then B.
    # Ranked TP (0.9), FP duplicate (0.8), TP (0.7): same numbers as the envelope case above: AP 5/6.
    dup = [1, 0, 11, 10]
    res = voc([gt([A, B], [0, 0])], [dt([A, dup, B], [0.9, 0.8, 0.7], [0, 0, 0])])
    assert res.primary_value == pytest.approx(5 / 6, abs=1e-12)
    assert res.scalars["precision"] == pytest.approx(2 / 3)


def test_second_prediction_goes_to_the_best_unmatched_ground_truth():
    # Two overlapping ground truths: A = [0,0,10,10] (area 100) and A2 = [0,0,10,6] (area 60, IoU 0.6 with A).
    # p1 = A (0.9): IoU 1 with A, 0.6 with A2 -> takes A.
    # p2 = [0,0,10,9] (0.8): IoU 90/100 = 0.9 with A (taken), 60/90 = 0.67 with A2 (free) -> takes A2: TP.
    # Both positives found by TPs in a row: AP 1. (Matching to the best box even if taken would make p2 a
    # false positive and give AP 1/2.)
    res = voc([gt([A, [0, 0, 10, 6]], [0, 0])], [dt([A, [0, 0, 10, 9]], [0.9, 0.8], [0, 0])])
    assert res.primary_value == 1.0


def test_crowd_matches_are_ignored_and_crowds_are_not_positives():
    crowd = [50, 50, 70, 70]
    targets = [gt([A, crowd], [0, 0], iscrowd=[False, True])]
    # On the crowd region: exact (0.95) and shifted by 2 px (0.9; IoU 18*20 / (400+400-360) = 0.82): both
    # ignored (a crowd box is never used up). Then FAR (0.7) is FP and A (0.6) TP.
    # Kept ranking: FP, TP; 1 positive (the crowd box does not count).
    # precision 0, 1/2; recall 0, 1 -> AP = 1 * 1/2 = 1/2.
    # (Counting the crowd hits as FPs would give precision 1/4 at the TP: AP 1/4.)
    predictions = [dt([crowd, [52, 50, 72, 70], FAR, A], [0.95, 0.9, 0.7, 0.6], [0, 0, 0, 0])]
    res = voc(targets, predictions)
    assert res.primary_value == pytest.approx(0.5, abs=1e-12)
    assert res.per_class["a"]["support"] == 1.0
    # At the threshold: TP 1, FP 1 (the crowd hits are neither) -> precision 1/2, recall 1.
    assert (res.scalars["precision"], res.scalars["recall"]) == pytest.approx((0.5, 1.0))
    assert res.pr_curves["a"]["thresholds"] == pytest.approx([0.7, 0.6])


def test_best_match_on_a_crowd_box_wins_over_a_non_crowd_box():
    # A = [0,0,10,10] (non-crowd), crowd region [0,0,10,8]. p = [0,0,10,7]:
    # IoU with A = 70/100 = 0.7; with the crowd box 70/80 = 0.875 -> the best match is the crowd box:
    # p is ignored and A stays unmatched. 1 positive, no TP -> AP 0, recall 0.
    targets = [gt([A, [0, 0, 10, 8]], [0, 0], iscrowd=[False, True])]
    res = voc(targets, [dt([[0, 0, 10, 7]], [0.9], [0])])
    assert res.primary_value == 0.0
    assert (res.scalars["precision"], res.scalars["recall"]) == (0.0, 0.0)
    # Moving the prediction so that the non-crowd box wins (IoU 1 vs 80/100 = 0.8) makes it a TP.
    res = voc(targets, [dt([A], [0.9], [0])])
    assert res.primary_value == 1.0


def test_two_classes_and_the_mean():
    # Class "a": FP, TP, TP (see above) -> 2/3. Class "b": perfect -> 1. mAP = (2/3 + 1) / 2 = 5/6.
    targets = [gt([A, B], [0, 0]), gt([C], [1])]
    predictions = [dt([FAR, A, B], [0.9, 0.8, 0.7], [0, 0, 0]), dt([C], [0.5], [1])]
    res = voc(targets, predictions, names=("a", "b"))
    assert res.per_class["a"]["average_precision"] == pytest.approx(2 / 3)
    assert res.per_class["b"]["average_precision"] == 1.0
    assert res.primary_value == pytest.approx(5 / 6, abs=1e-12)
    # A predicted label that is wrong does not match: the box is right but the class is not.
    res = voc([gt([A], [0])], [dt([A], [0.9], [1])], names=("a", "b"))
    assert res.per_class["a"]["average_precision"] == 0.0
    assert math.isnan(res.per_class["b"]["average_precision"])
    assert res.primary_value == 0.0


def test_class_without_predictions_scores_zero_and_class_without_ground_truth_is_left_out():
    # "a": perfect (1), "b": 1 ground truth and no prediction (0), "c": no ground truth, one FP (NaN, left out).
    # mAP = (1 + 0) / 2 = 1/2.
    targets = [gt([A, B], [0, 1])]
    predictions = [dt([A, C], [0.9, 0.8], [0, 2])]
    res = voc(targets, predictions, names=("a", "b", "c"))
    assert res.per_class["b"]["average_precision"] == 0.0
    assert math.isnan(res.per_class["c"]["average_precision"])
    assert res.primary_value == pytest.approx(0.5)
    # The FP of "c" still lowers the micro precision: 1 TP, 1 FP.
    assert res.scalars["precision"] == 0.5 and res.scalars["recall"] == 0.5
    assert res.pr_curves["b"] == {"precision": [], "recall": [], "thresholds": []}
    assert res.pr_curves["c"] == {"precision": [], "recall": [], "thresholds": []}


def test_no_ground_truth_at_all_gives_a_number():
    res = voc([gt(np.zeros((0, 4)), [])], [dt([A], [0.9], [0])])
    assert res.primary_value == 0.0
    assert res.scalars["recall"] == 0.0 and res.scalars["precision"] == 0.0


def test_equal_scores_keep_input_order():
    # Scores tie: the stable sort keeps the input order, FP then TP -> precision 0, 1/2 -> AP 1/2.
    # Swapping the input order gives TP then FP -> AP 1.
    assert voc([gt([A], [0])], [dt([FAR, A], [0.5, 0.5], [0, 0])]).primary_value == pytest.approx(0.5)
    assert voc([gt([A], [0])], [dt([A, FAR], [0.5, 0.5], [0, 0])]).primary_value == 1.0


def test_segm_uses_mask_iou():
    # 20x20 image; ground truth mask rows 0-9, cols 0-9 (100 px).
    # p1 (0.9): cols 0-3 (40 px) -> mask IoU 0.4: FP. p2 (0.8): cols 0-4 (50 px) -> IoU 0.5: TP.
    # segm: FP, TP -> precision 0, 1/2; recall 0, 1 -> AP 1/2.
    # Both boxes equal the ground truth box, so bbox gives TP, then FP (duplicate) -> AP 1.
    g = np.zeros((1, 20, 20), bool)
    g[0, :10, :10] = True
    p = np.zeros((2, 20, 20), bool)
    p[0, :10, :4] = True
    p[1, :10, :5] = True
    targets = [gt([A], [0], masks=g)]
    predictions = [dt([A, A], [0.9, 0.8], [0, 0], masks=p)]
    task = "image-instance-segmentation"
    mask_res = voc(targets, predictions, iou_type="segm", task=task)
    box_res = voc(targets, predictions, iou_type="bbox", task=task)
    assert mask_res.primary_value == pytest.approx(0.5)
    assert box_res.primary_value == 1.0
    merged = merge_box_and_mask(box_res, mask_res)
    assert merged.task == task and merged.primary_metric == "mean_average_precision"
    assert merged.primary_value == pytest.approx(0.5)
    assert merged.scalars["box_mean_average_precision"] == 1.0
    assert merged.per_class["a"]["box_average_precision"] == 1.0
    assert merged.per_class["a"]["average_precision"] == pytest.approx(0.5)
    assert set(merged.scalars) == set(mask_res.scalars) | {f"box_{k}" for k in box_res.scalars}
    with pytest.raises(ValueError, match="masks"):
        voc([gt([A], [0])], predictions, iou_type="segm")


def test_metric_types_and_primary():
    targets = [gt([A, B], [0, 0]), gt([C], [1])]
    predictions = [dt([FAR, A, B], [0.9, 0.8, 0.7], [0, 0, 0]), dt([C], [0.5], [1])]
    names = ["a", "b"]
    none = detection_metrics(targets, predictions, names, metric_type="none")
    assert set(none.scalars) == {"precision", "recall"}
    assert math.isnan(none.primary_value)  # the one case where the primary value may be NaN
    assert "average_precision" not in none.per_class["a"] and none.pr_curves == {}

    both = detection_metrics(targets, predictions, names, metric_type="coco_voc")
    assert both.primary_value == both.scalars["voc_map"] == pytest.approx(5 / 6)
    assert "coco_map" in both.scalars and "coco_mar_100" in both.scalars
    assert both.per_class["a"]["average_precision"] == both.per_class["a"]["voc_average_precision"]
    coco_first = detection_metrics(targets, predictions, names, metric_type="coco_voc", primary="coco")
    assert coco_first.primary_value == coco_first.scalars["coco_map"]
    assert coco_first.per_class["a"]["average_precision"] == coco_first.per_class["a"]["coco_average_precision"]
    coco = detection_metrics(targets, predictions, names, metric_type="coco")
    assert coco.primary_value == coco.scalars["coco_map"] and "voc_map" not in coco.scalars

    with pytest.raises(ValueError, match="metric_type"):
        detection_metrics(targets, predictions, names, metric_type="map")
    with pytest.raises(ValueError, match="primary"):
        detection_metrics(targets, predictions, names, metric_type="voc", primary="coco")
    with pytest.raises(ValueError, match="labels"):
        detection_metrics([gt([A], [2])], [dt([A], [0.9], [0])], names)
    with pytest.raises(ValueError, match="images"):
        detection_metrics(targets, predictions[:1], names)

    data = json.loads(json.dumps(both.to_dict(), allow_nan=False))
    assert MetricsResult.from_dict(data).scalars == both.scalars
