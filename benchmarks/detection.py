"""Object detection from scratch on a real dataset: accuracy, speed, and the engine's overhead.

On ``../shared/data/raccoon`` (Pascal VOC, 200 images, one class; converted with ``avml convert voc``, the
validation set is the seeded 20 % split of ``split_ratio``), for ``fasterrcnn_resnet18_fpn`` and ``yolov5``
(``model_size: small``), both from scratch (no pretrained weights can be fetched here):

1. a full run through ``jupyter_avml.train`` for a fixed number of epochs at a small size: mAP@0.5 (VOC, the
   primary metric), training images/s (EpochStarted to the epoch's last batch, first epoch dropped) and
   validation images/s;
2. the engine's training throughput beside a plain loop over the same batches (ratio, target >= 0.95):
   - Faster R-CNN: the batches are materialised once (decoded, augmented), then, in alternating rounds, the
     engine (``Trainer.fit``) and a hand-written torchvision loop (``loss = sum(model(images, targets))``,
     backward, SGD step) train copies of the same initial model;
   - YOLOv5: our runner (ultralytics' trainer with our optimizer, schedule, callbacks and evaluation) beside
     ultralytics' stock ``DetectionTrainer`` on the same data folder, seed and arguments (its own loader, so
     the same mosaic batches); only the training part of each epoch is timed (our runner also evaluates).

From scratch, a few epochs on 160 images give a low mAP: the numbers show the pipeline learns (mAP well above
the ~0 of an untrained model) and what it costs, not what pretrained weights reach.

    python benchmarks/detection.py [--data ../shared/data/raccoon] [--epochs 8] [--size 320] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_overhead import EpochTimer, FixedBatches  # noqa: E402  (the classification benchmark's rules)

from jupyter_avml.config import AutoMLImageConfig  # noqa: E402
from jupyter_avml.data.convert import convert  # noqa: E402
from jupyter_avml.data.split import split_records  # noqa: E402
from jupyter_avml.data.validate import read_dataset  # noqa: E402
from jupyter_avml.metrics.result import MetricsResult  # noqa: E402
from jupyter_avml.runs.events import CallbackList, EpochMetrics  # noqa: E402
from jupyter_avml.training.detection import DetectionRecipe  # noqa: E402
from jupyter_avml.training.engine import Trainer  # noqa: E402
from jupyter_avml.training.run import train  # noqa: E402

TASK = "image-object-detection"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "raccoon"


class EvalTimer(EpochTimer):
    """EpochTimer plus the evaluation time of each epoch (last batch to EpochMetrics)."""

    def __init__(self, device):
        super().__init__(device)
        self.eval_durations = []

    def on_event(self, event):
        super().on_event(event)
        if isinstance(event, EpochMetrics) and self.start is not None and self.durations:
            self.eval_durations.append(time.perf_counter() - self.start - self.durations[-1])


def full_run(model_name: str, data: Path, args, workspace: Path, n_train: int, n_valid: int) -> dict:
    sizes = ({"min_size": args.size, "max_size": args.size} if model_name != "yolov5"
             else {"img_size": args.size, "model_size": "small"})
    config = AutoMLImageConfig(task=TASK, training_data=str(data), model_name=model_name, pretrained=0,
                               number_of_epochs=args.epochs, training_batch_size=args.batch,
                               validation_batch_size=args.batch, device=args.device, early_stopping=0,
                               optimizer="sgd", learning_rate=args.lr, log_every_n_batches=10 ** 6, **sizes)
    timer = EvalTimer(torch.device(args.device))
    started = time.perf_counter()
    summary = train(config, workspace=workspace, callbacks=[timer], run_name=f"bench-{model_name}")
    return {"map50": summary.metrics.get("mean_average_precision", float("nan")), "status": summary.status,
            "train_rate": n_train / statistics.median(timer.durations[1:] or timer.durations),
            "valid_rate": n_valid / statistics.median(timer.eval_durations) if timer.eval_durations else float("nan"),
            "train_durations": timer.durations, "wall": time.perf_counter() - started, "run_id": summary.run_id}


# -- Faster R-CNN: engine vs a plain torchvision loop over the same batches ------------------------------
class FixedBatchesRecipe(FixedBatches, DetectionRecipe):
    """The detection recipe over fixed batches; evaluation is skipped."""

    def evaluate(self, model, device):
        return MetricsResult(task=TASK, primary_metric="mean_average_precision",
                             scalars={"mean_average_precision": 0.0}, per_class={}, confusion_matrix=None,
                             pr_curves={}, class_names=self.class_names)


def plain_detector_epochs(model, batches, config, epochs: int, device: torch.device) -> list[float]:
    """What a user would write by hand with torchvision (bf16 autocast on CUDA, as the engine does there)."""
    cuda = device.type == "cuda"
    model = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=True)
    durations = []
    for _ in range(epochs):
        start = time.perf_counter()
        for images, targets in batches:
            images = [image.to(device, non_blocking=True) for image in images]
            targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = sum(loss.float() for loss in model(images, targets).values())
            loss.backward()
            optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - start)
    return durations


def detector_overhead(model_name: str, data: Path, args, workdir: Path) -> tuple[float, float]:
    config = AutoMLImageConfig(task=TASK, training_data=str(data), model_name=model_name, pretrained=0,
                               min_size=args.size, max_size=args.size, training_batch_size=args.batch,
                               number_of_epochs=args.overhead_epochs, evaluation_frequency=args.overhead_epochs,
                               early_stopping=0, log_every_n_batches=10 ** 6, device=args.device,
                               lr_scheduler="step", step_lr_gamma=1.0, learning_rate=args.lr)
    records = read_dataset(data, TASK, check_images=False)
    base = DetectionRecipe(config, records.classes, records.records, records.records[:1])
    loader = iter(base.train_batches(0))
    batches = [next(loader) for _ in range(args.overhead_batches)]
    torch.manual_seed(0)
    model = base.build_model()  # ROI sampling as the engine trains it (DetectionRecipe.build_model)
    images = sum(len(b[0]) for b in batches)
    device = torch.device(args.device)
    engine_rates, plain_rates = [], []
    for round_index in range(args.rounds):
        recipe = FixedBatchesRecipe(config, records.classes, records.records, records.records[:1],
                                    batches=batches, model=model)
        timer = EpochTimer(device)
        Trainer(recipe, config, run_id="bench", run_dir=workdir / f"{model_name}-{round_index}",
                callbacks=CallbackList([timer])).fit()
        engine_rates += [images / d for d in timer.durations[1:]]
        plain_rates += [images / d for d in plain_detector_epochs(model, batches, config, args.overhead_epochs,
                                                                   device)[1:]]
    return statistics.median(engine_rates), statistics.median(plain_rates)


# -- YOLOv5: our runner vs ultralytics' stock trainer ------------------------------------------------------
def plain_yolo_rate(layout_root: Path, args, workdir: Path, n_train: int) -> float:
    """Training images/s of ultralytics' own DetectionTrainer (first epoch dropped), no validation."""
    import yaml
    from ultralytics.data.utils import check_class_names
    from ultralytics.models.yolo.detect import DetectionTrainer

    from jupyter_avml.data.yolo_layout import DATA_YAML
    from jupyter_avml.models.yolo import yolo_model_file

    meta = yaml.safe_load((layout_root / DATA_YAML).read_text())

    class StockTrainer(DetectionTrainer):
        def get_dataset(self):
            # check_det_dataset would download a font for its plots; the dictionary it returns, without it.
            names = check_class_names(meta["names"])
            return {"yaml_file": str(layout_root / DATA_YAML), "path": layout_root, "names": names,
                    "nc": len(names), "channels": 3, "train": str(layout_root / "images" / "train"),
                    "val": str(layout_root / "images" / "val")}

    overrides = {"model": yolo_model_file("small"), "data": str(layout_root / DATA_YAML), "epochs": args.epochs,
                 "batch": args.batch, "imgsz": args.size, "optimizer": "SGD", "lr0": args.lr, "momentum": 0.9,
                 "warmup_epochs": 0.0, "nbs": args.batch, "seed": 0, "deterministic": True, "workers": 0,
                 "device": "cpu" if args.device == "cpu" else "0", "amp": args.device != "cpu",
                 "pretrained": False, "val": False, "plots": False, "verbose": False, "save": False,
                 "project": str(workdir), "name": "stock-yolo", "exist_ok": True}
    threads = torch.get_num_threads()  # before the trainer: ultralytics' select_device resets it
    trainer = StockTrainer(overrides=overrides)
    durations, start = [], [0.0]

    def epoch_start(t):
        torch.set_num_threads(threads)  # ultralytics' select_device resets it, as in our runner
        start[0] = time.perf_counter()

    def batch_end(t):
        if t.device.type == "cuda":
            torch.cuda.synchronize()
        durations_in_epoch = time.perf_counter() - start[0]
        if len(durations) < t.epoch + 1:
            durations.append(durations_in_epoch)
        else:
            durations[t.epoch] = durations_in_epoch

    trainer.add_callback("on_train_epoch_start", epoch_start)
    trainer.add_callback("on_train_batch_end", batch_end)
    trainer.train()
    return n_train / statistics.median(durations[1:] or durations)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a Pascal VOC dataset folder")
    parser.add_argument("--models", nargs="+", default=["fasterrcnn_resnet18_fpn", "yolov5"])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--overhead-batches", type=int, default=6)
    parser.add_argument("--overhead-epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"no dataset at {args.data}: pass --data DIR (a Pascal VOC folder)")
        return 2
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.device}, {args.threads} threads; {args.data.name}: {args.epochs} "
          f"epochs at {args.size} px, batch {args.batch}, SGD lr {args.lr}, from scratch")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data.jsonl"
        convert("voc", args.data, data, task=TASK)
        defaults = AutoMLImageConfig(task=TASK, training_data=str(data))
        train_rows, valid_rows = split_records(read_dataset(data, TASK, check_images=False).records, TASK,
                                               defaults.split_ratio, defaults.seed)  # the runs' own split
        n_train, n_valid = len(train_rows), len(valid_rows)
        for name in args.models:
            result = full_run(name, data, args, tmp / "ws", n_train, n_valid)
            print(f"{name:24} {result['status']}: mAP@0.5 {result['map50']:.3f}   train {result['train_rate']:6.1f} "
                  f"img/s   validation {result['valid_rate']:6.1f} img/s   wall {result['wall']:.0f} s")
            if name == "yolov5":
                layout = next((tmp / "ws" / "cache" / "yolo").glob("*/data.yaml")).parent
                engine, plain = result["train_rate"], plain_yolo_rate(layout, args, tmp, n_train)
                reference = "ultralytics DetectionTrainer"
            else:
                engine, plain = detector_overhead(name, data, args, tmp / "overhead")
                reference = "plain torchvision loop"
            ratio = engine / plain
            ok = ratio >= 0.95
            failed |= not ok
            print(f"{'':24} engine {engine:6.1f} img/s   {reference} {plain:6.1f} img/s   ratio {ratio:.3f}  "
                  f"{'PASS' if ok else 'FAIL'} (target >= 0.95)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
