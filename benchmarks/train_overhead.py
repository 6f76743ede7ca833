"""Training throughput of the engine vs a minimal hand-written PyTorch loop over the SAME batches.

For each model (resnet18 and vits16r224 at 64 px by default) the batches are materialised once (decoded,
augmented tensors), then, in alternating rounds, the engine (``Trainer.fit`` over those batches) and a plain
loop (forward, cross-entropy, backward, SGD step) train copies of the same initial model. Throughput is
images per second over the training part of each epoch (from the engine's own events: EpochStarted to the
last BatchProgress); the ratio engine/plain is printed with the median of the rounds.

Target: the engine is at least 0.95x the plain loop on CPU.

    python benchmarks/train_overhead.py [--models resnet18 vits16r224] [--size 64] [--batches 12] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.data.shapes import make_shapes
from jupyter_avml.data.validate import read_dataset
from jupyter_avml.metrics.result import MetricsResult
from jupyter_avml.runs.events import BatchProgress, CallbackList, EpochStarted
from jupyter_avml.training.classification import ClassificationRecipe
from jupyter_avml.training.engine import Trainer


class FixedBatches:
    """A recipe mix-in: pre-made batches every epoch and a copy of a given initial model, so the engine and the
    plain loop train the same model on the same tensors (``class R(FixedBatches, SomeRecipe)``)."""

    def __init__(self, *args, batches, model, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches, self.initial = batches, model

    def build_model(self):
        return copy.deepcopy(self.initial)

    def train_batches(self, epoch):
        return self.batches

    def num_train_batches(self):
        return len(self.batches)


class FixedBatchesRecipe(FixedBatches, ClassificationRecipe):
    """The classification recipe over fixed batches; evaluation is skipped."""

    def evaluate(self, model, device):
        return MetricsResult(task="image-classification", primary_metric="accuracy", scalars={"accuracy": 0.0},
                             per_class={}, confusion_matrix=None, pr_curves={}, class_names=self.class_names)


class EpochTimer:
    def __init__(self, device: torch.device):
        self.start, self.durations, self.device = None, [], device

    def on_event(self, event):
        if isinstance(event, EpochStarted):
            self.start = time.perf_counter()
        elif isinstance(event, BatchProgress) and event.batch == event.num_batches:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.durations.append(time.perf_counter() - self.start)


def plain_epochs(model, batches, config, epochs: int, device: torch.device) -> list[float]:
    """The reference: what a user would write by hand (with bf16 autocast + channels-last on CUDA, as the
    engine does there, so both do the same arithmetic)."""
    cuda = device.type == "cuda"
    model = copy.deepcopy(model).to(device).train()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=True)
    loss_fn = torch.nn.CrossEntropyLoss()
    durations = []
    for _ in range(epochs):
        start = time.perf_counter()
        for images, targets in batches:
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            if cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = loss_fn(model(images).float(), targets)
            loss.backward()
            optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - start)
    return durations


def measure(model_name: str, data: Path, size: int, n_batches: int, batch: int, rounds: int, epochs: int,
            workdir: Path, device: str = "cpu") -> tuple[float, float]:
    config = AutoMLImageConfig(task="image-classification", training_data=str(data), model_name=model_name,
                               pretrained=0, train_crop_size=size, valid_crop_size=size, valid_resize_size=size,
                               training_batch_size=batch, number_of_epochs=epochs, evaluation_frequency=epochs,
                               early_stopping=0, log_every_n_batches=10 ** 6, device=device,
                               lr_scheduler="step", step_lr_gamma=1.0)
    records = read_dataset(data, "image-classification", check_images=False)
    base = ClassificationRecipe(config, records.classes, records.records, records.records[:batch])
    loader = iter(base.train_batches(0))
    batches = [next(loader) for _ in range(n_batches)]
    torch.manual_seed(0)
    model = base.build_model()
    images = n_batches * batch
    engine_rates, plain_rates = [], []
    for round_index in range(rounds):
        recipe = FixedBatchesRecipe(config, records.classes, records.records, records.records[:batch],
                                    batches=batches, model=model)
        timer = EpochTimer(torch.device(device))
        run_dir = workdir / f"{model_name}-{round_index}"
        Trainer(recipe, config, run_id="bench", run_dir=run_dir, callbacks=CallbackList([timer])).fit()
        engine_rates += [images / d for d in timer.durations[1:]]  # first epoch warms caches up
        plain_rates += [images / d for d in plain_epochs(model, batches, config, epochs, torch.device(device))[1:]]
    return statistics.median(engine_rates), statistics.median(plain_rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet18", "vits16r224"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the engine then uses bf16 + channels-last)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.device}, {args.threads} threads, {args.size} px, batch {args.batch}, "
          f"{args.batches} batches/epoch, {args.rounds} rounds x {args.epochs} epochs (first epoch of each dropped)")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        data = make_shapes(Path(tmp) / "data", "image-classification", n=args.batch * args.batches, size=args.size,
                           seed=0, color_by_class=True)
        for name in args.models:
            engine, plain = measure(name, data, args.size, args.batches, args.batch, args.rounds, args.epochs,
                                    Path(tmp), args.device)
            ratio = engine / plain
            ok = ratio >= 0.95
            failed |= not ok
            print(f"{name:12} engine {engine:8.1f} img/s   plain loop {plain:8.1f} img/s   "
                  f"ratio {ratio:.3f}  {'PASS' if ok else 'FAIL'} (target >= 0.95)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
