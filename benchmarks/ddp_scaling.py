"""Throughput scaling of one training from 1 GPU to N GPUs with DDP (``distributed``), reported as a ratio.

    python benchmarks/ddp_scaling.py                         # every visible GPU (2 or more needed)
    python benchmarks/ddp_scaling.py --gpus 2 --model resnet50 --size 224 --images 4000 --batch 128

A short prepared check for a multi-GPU machine (it cannot run on a CPU-only or one-GPU machine: it says so and
exits with status 2). It trains the same configuration twice on generated shapes, through the product
(``training.run.train``): once in one process on one GPU (``distributed: 0``), once with ``distributed: N`` on N
GPUs, with the same global batch (``training_batch_size``). From the runs' own events it prints:

* training throughput, images per second: the training images of an epoch over the time from its
  ``epoch_started`` to its last ``batch_progress`` (evaluation excluded), the first epoch left out (warm-up,
  cuDNN benchmarking);
* the speed-up (N GPUs / 1 GPU) and the scaling efficiency (speed-up / N); a target of >= 0.8 efficiency is
  printed as PASS/FAIL for models large enough to keep the GPUs busy (resnet50 at 224 px);
* the best validation metric of each run (the same configuration: close, not equal).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

EFFICIENCY_TARGET = 0.8


def training_throughput(workspace: Path, run_id: str, train_images: int) -> float:
    """Images per second of the training part of each epoch after the first (median)."""
    from jupyter_avml.runs.events import BatchProgress, EpochStarted, read_events

    events, _ = read_events(workspace / "runs" / run_id / "events.jsonl")
    started = {e.epoch: e.time for e in events if isinstance(e, EpochStarted)}
    last_batch: dict[int, float] = {}
    for event in events:
        if isinstance(event, BatchProgress):
            last_batch[event.epoch] = event.time
    rates = [train_images / (last_batch[epoch] - started[epoch]) for epoch in sorted(started)
             if epoch > 1 and epoch in last_batch and last_batch[epoch] > started[epoch]]
    if not rates:
        raise SystemExit(f"run {run_id}: no epoch after the first to measure (give --epochs 3 or more)")
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpus", type=int, default=0, help="GPUs for the DDP run (default: every visible one)")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=128, help="the global batch (training_batch_size)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="num_workers (data loading processes per rank)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpus = args.gpus or visible
    if visible < 2 or gpus < 2 or gpus > visible:
        print(f"needs 2 or more GPUs ({visible} visible, {gpus} asked): run it on a multi-GPU machine")
        return 2
    from jupyter_avml.config import AutoMLImageConfig
    from jupyter_avml.data.shapes import make_shapes
    from jupyter_avml.training.run import train

    with tempfile.TemporaryDirectory(prefix="avml-bench-ddp-") as tmp:
        workspace = Path(tmp) / "ws"
        data = make_shapes(Path(tmp) / "data", "image-classification", n=args.images, size=args.size, seed=0,
                           color_by_class=True)
        base = dict(task="image-classification", training_data=str(data), model_name=args.model, pretrained=0,
                    train_crop_size=args.size, valid_resize_size=args.size, valid_crop_size=args.size,
                    training_batch_size=args.batch, validation_batch_size=args.batch, number_of_epochs=args.epochs,
                    early_stopping=0, num_workers=args.workers, log_every_n_batches=1, device="cuda",
                    split_ratio=0.2)
        results = {}
        for label, distributed in (("1 GPU", 0), (f"{gpus} GPUs", gpus)):
            summary = train(AutoMLImageConfig.from_dict({**base, "distributed": distributed}), workspace=workspace)
            train_images = round(args.images * 0.8)  # split_ratio 0.2 holds out the rest
            results[label] = (training_throughput(workspace, summary.run_id, train_images),
                              summary.primary_metric_value)
            print(f"  {label:8}: {results[label][0]:8.1f} images/s (training), best {summary.primary_metric} "
                  f"{summary.primary_metric_value}")
    (one, _), (many, _) = results["1 GPU"], results[f"{gpus} GPUs"]
    speedup = many / one
    efficiency = speedup / gpus
    verdict = "PASS" if efficiency >= EFFICIENCY_TARGET else "FAIL"
    print(f"\n{args.model} at {args.size} px, global batch {args.batch}: speed-up {speedup:.2f}x on {gpus} GPUs, "
          f"scaling efficiency {efficiency:.2f} (target >= {EFFICIENCY_TARGET}: {verdict})")
    return 0 if efficiency >= EFFICIENCY_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
