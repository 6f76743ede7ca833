"""Speed of the metric functions on large inputs (CPU time of this process).

    python benchmarks/metrics_speed.py
"""

from __future__ import annotations

import time

import numpy as np

from jupyter_avml.metrics import (
    ImagePredictions,
    ImageTargets,
    detection_metrics,
    multiclass_metrics,
    multilabel_metrics,
)


def random_scene(rng, n_images, n_boxes, n_classes, size=(640, 480)):
    w, h = size
    targets, predictions = [], []
    for _ in range(n_images):
        xy = rng.uniform(0, [w - 60, h - 60], (n_boxes, 2))
        boxes = np.c_[xy, xy + rng.uniform(10, 60, (n_boxes, 2))]
        labels = rng.integers(0, n_classes, n_boxes)
        found = rng.random(n_boxes) < 0.7
        noisy = boxes[found] + rng.normal(0, 3, (found.sum(), 4))
        extra = n_boxes - found.sum()
        fxy = rng.uniform(0, [w - 60, h - 60], (extra, 2))
        fp = np.c_[fxy, fxy + rng.uniform(10, 60, (extra, 2))]
        targets.append(ImageTargets(boxes, labels, iscrowd=rng.random(n_boxes) < 0.05, width=w, height=h))
        predictions.append(ImagePredictions(np.r_[noisy, fp], rng.random(n_boxes),
                                            np.r_[labels[found], rng.integers(0, n_classes, extra)]))
    return targets, predictions


def timed(fn, *args, **kwargs):
    start = time.process_time()
    result = fn(*args, **kwargs)
    return result, time.process_time() - start


def main() -> None:
    rng = np.random.default_rng(0)
    n, c = 100_000, 100
    names = [str(k) for k in range(c)]
    probs = rng.random((n, c))
    probs /= probs.sum(axis=1, keepdims=True)
    _, seconds = timed(multiclass_metrics, probs, rng.integers(0, c, n), names)
    print(f"multiclass_metrics  N={n} C={c}: {seconds:.2f} s CPU")
    _, seconds = timed(multilabel_metrics, rng.random((n, c)), (rng.random((n, c)) < 0.1).astype(np.int8), names)
    print(f"multilabel_metrics  N={n} C={c}: {seconds:.2f} s CPU")
    targets, predictions = random_scene(rng, 500, 20, 5)
    for metric_type in ("voc", "coco"):
        result, seconds = timed(detection_metrics, targets, predictions, list("abcde"), metric_type=metric_type)
        print(f"detection_metrics   {metric_type:4} 500 images x 20 boxes x 5 classes: {seconds:.2f} s CPU "
              f"(mAP {result.primary_value:.3f})")


if __name__ == "__main__":
    main()
