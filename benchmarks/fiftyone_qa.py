"""Benchmark of visual QA in FiftyOne: our import and our predictions, beside FiftyOne's and deployment's own.

    python benchmarks/fiftyone_qa.py --images 5000 --predict-images 256

Generates shapes data in a temporary folder (its own FiftyOne database there too), then measures, side by side in
one run (best of ``--repeat``):

1. import: ``to_fiftyone`` of a registered detection dataset of ``--images`` images (JSONL -> a new FiftyOne
   dataset: ground truth, split tags, rows, content hashes, duplicates), beside FiftyOne's own COCO importer
   (``fo.Dataset.from_dir(dataset_type=COCODetectionDataset)``) on the same data converted to COCO
   (``data.convert.to_coco``); target: our rate >= 0.8x its rate. Registration (validation with every image
   decoded, hashing) is done once before and reported on its own line: it is the registry's step, shared by
   training;
2. predictions: ``add_predictions`` (the model loaded, prediction, logits and embeddings captured by hooks,
   labels converted and written to the database) beside ``load_model(...).predict`` (the model loaded, prediction)
   on the same ``--predict-images`` images, for an untrained resnet18 classifier (32 px) and
   fasterrcnn_resnet18_fpn detector (64 px); target: our rate >= 0.9x.

The two sides of each comparison run alternately, best of ``--repeat``. Rates are judged on wall-clock time (the
database is another process: process CPU time, printed too, leaves its share out); run it on a quiet machine.
Prints the rates, the ratios and PASS/FAIL; the exit status is 1 when a target fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

IMPORT_TARGET = 0.8
PREDICT_TARGET = 0.9


class Timer:
    """Best (smallest) wall-clock and CPU time of one side of a comparison."""

    def __init__(self):
        self.wall = self.cpu = float("inf")

    def run(self, fn, before=None) -> None:
        if before is not None:
            before()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        self.wall = min(self.wall, time.perf_counter() - wall)
        self.cpu = min(self.cpu, time.process_time() - cpu)


def compare(repeat: int, ours, theirs, before_ours=None, before_theirs=None) -> tuple[Timer, Timer]:
    """Best of ``repeat`` runs of each, alternating (ours, theirs, ours, ...) so that a machine busier at one moment
    does not favour one side."""
    mine, other = Timer(), Timer()
    for _ in range(repeat):
        mine.run(ours, before_ours)
        other.run(theirs, before_theirs)
    return mine, other


def untrained_model(folder: Path, task: str, model_name: str, **settings) -> Path:
    """A model file of an untrained network, as training writes it (speed does not depend on the weights)."""
    import torch

    from jupyter_avml.config import AutoMLImageConfig

    config = AutoMLImageConfig(task=task, training_data=str(folder / "train.jsonl"), model_name=model_name,
                               pretrained=0, device="cpu", **settings)
    torch.manual_seed(0)
    if config.model_spec.family == "timm":
        from jupyter_avml.models.classification import build_classifier

        model = build_classifier(config.model_spec, 3, pretrained=False, img_size=config.train_crop_size)
    else:
        from jupyter_avml.models.detection import build_detector

        model = build_detector(config.model_spec, 3, pretrained=False, min_size=config.min_size,
                               max_size=config.max_size)
    path = folder / "outputs" / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "jupyter_avml.model/1", "task": task, "model_name": model_name,
                "class_names": ["circle", "square", "triangle"], "config": config.to_dict(),
                "state_dict": model.state_dict(), "metrics": {}, "epoch": 0}, path)
    return path


def bench_import(root: Path, images: int, repeat: int) -> bool:
    from jupyter_avml.data.convert.to_coco import write_coco
    from jupyter_avml.data.dataset_registry import register_dataset
    from jupyter_avml.data.shapes import make_shapes
    from jupyter_avml.qa import to_fiftyone
    from jupyter_avml.qa._fo import fiftyone
    from jupyter_avml.qa.importer import dataset_name

    fo = fiftyone()
    start = time.perf_counter()
    jsonl = make_shapes(root / "detection", "image-object-detection", n=images, size=64, seed=0)
    print(f"generated {images} detection images in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    version = register_dataset("bench", jsonl, task="image-object-detection")
    print(f"registration (validation, every image decoded and hashed; once): {time.perf_counter() - start:.1f} s, "
          f"{images / (time.perf_counter() - start):.0f} images/s")
    coco = write_coco(version.records(), root / "detection" / "coco.json", "image-object-detection")

    def drop(name: str):
        return lambda: fo.delete_dataset(name) if fo.dataset_exists(name) else None

    ours, theirs = compare(
        repeat, lambda: to_fiftyone(version, progress=False),
        lambda: fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset, data_path=str(root / "detection"),
                                    labels_path=str(coco), label_field="ground_truth", name="bench-coco",
                                    progress=False),
        drop(dataset_name(version)), drop("bench-coco"))
    ratio = theirs.wall / ours.wall
    verdict = "PASS" if ratio >= IMPORT_TARGET else "FAIL"
    print(f"import into FiftyOne: to_fiftyone {images / ours.wall:.0f} images/s (CPU {ours.cpu:.2f} s), "
          f"FiftyOne's COCO importer {images / theirs.wall:.0f} images/s (CPU {theirs.cpu:.2f} s): ratio "
          f"{ratio:.2f}x (target >= {IMPORT_TARGET}x) {verdict}")
    for name in (dataset_name(version), "bench-coco"):
        drop(name)()
    return ratio >= IMPORT_TARGET


def bench_predictions(root: Path, images: int, repeat: int) -> bool:
    from jupyter_avml import load_model
    from jupyter_avml.data.shapes import make_shapes
    from jupyter_avml.qa import add_predictions, to_fiftyone

    ok = True
    for task, model_name, size, settings in (
            ("image-classification", "resnet18", 32, dict(train_crop_size=32, valid_resize_size=32,
                                                          valid_crop_size=32)),
            ("image-object-detection", "fasterrcnn_resnet18_fpn", 64, dict(min_size=64, max_size=64))):
        jsonl = make_shapes(root / task, task, n=images, size=size, seed=1, color_by_class=True)
        model = untrained_model(root / f"model-{task}", task, model_name, **settings)
        dataset = to_fiftyone(jsonl, task=task, progress=False, workspace=root / "ws")
        paths = dataset.values("filepath")
        load_model(model, device="cpu").predict(paths[:8])  # warm-up: first-call allocations are not measured

        def plain(m=model, images=paths):
            return load_model(m, device="cpu").predict(images)

        def ours(d=dataset, m=model):
            return add_predictions(d, m, field="bench", overwrite=True, progress=False, device="cpu",
                                   workspace=root / "ws")

        mine, other = compare(repeat, ours, plain)
        ratio = other.wall / mine.wall
        verdict = "PASS" if ratio >= PREDICT_TARGET else "FAIL"
        ok = ok and ratio >= PREDICT_TARGET
        print(f"predictions, {model_name} ({size} px): add_predictions {images / mine.wall:.1f} images/s (CPU "
              f"{mine.cpu:.2f} s), load_model(...).predict {images / other.wall:.1f} images/s (CPU {other.cpu:.2f} "
              f"s): ratio {ratio:.2f}x (target >= {PREDICT_TARGET}x) {verdict}")
        dataset.delete()
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="images of the import benchmark (5000)")
    parser.add_argument("--predict-images", type=int, default=256, help="images of the prediction benchmark (256)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best counts (3)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="avml-bench-fiftyone-"))
    os.environ["AVML_WORKSPACE"] = str(root / "ws")
    os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(root / "fiftyone-db"))
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    try:
        ok = bench_import(root, args.images, args.repeat)
        ok = bench_predictions(root, args.predict_images, args.repeat) and ok
    finally:
        from jupyter_avml.qa._fo import stop_database

        stop_database()
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
