"""A short check of the CUDA paths of the classification engine (run on a GPU machine).

1. Engine vs plain PyTorch loop over the same batches on the GPU (both bf16 autocast + channels-last),
   resnet18 and vits16r224, as ``train_overhead.py --device cuda``.
2. A real training through ``Trainer`` on the GPU with mixed precision: the autocast dtype the engine picked,
   the memory format of the weights, accuracy after a few epochs, images/s, peak GPU memory.

    PYTHONPATH=. python benchmarks/gpu_check.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.data.shapes import make_shapes
from jupyter_avml.data.split import split_records
from jupyter_avml.data.validate import read_dataset
from jupyter_avml.models.device import amp_dtype_for
from jupyter_avml.runs.events import CallbackList, EpochMetrics
from jupyter_avml.training.classification import ClassificationRecipe
from jupyter_avml.training.engine import Trainer


class Collect:
    def __init__(self):
        self.epochs = []

    def on_event(self, event):
        if isinstance(event, EpochMetrics):
            self.epochs.append(event)


def real_training(tmp: Path) -> None:
    data = make_shapes(tmp / "cls", "image-classification", n=600, size=96, seed=0, color_by_class=True)
    records = read_dataset(data, "image-classification")
    train, valid = split_records(records.records, "image-classification", 0.2, 0)
    for model_name in ("resnet18", "vits16r224"):
        config = AutoMLImageConfig(task="image-classification", training_data=str(data), model_name=model_name,
                                   pretrained=0, device="cuda", mixed_precision=1, number_of_epochs=4,
                                   train_crop_size=96 if model_name == "resnet18" else 96, valid_crop_size=96,
                                   valid_resize_size=96, training_batch_size=64, validation_batch_size=128,
                                   optimizer="adamw", learning_rate=0.001, warmup_cosine_lr_warmup_epochs=1,
                                   early_stopping=0, num_workers=4)
        recipe = ClassificationRecipe(config, records.classes, train, valid)
        collect = Collect()
        trainer = Trainer(recipe, config, run_id="gpu-check", run_dir=tmp / model_name,
                          callbacks=CallbackList([collect]))
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = trainer.fit()
        seconds = time.perf_counter() - start
        payload = torch.load(result.model_path, weights_only=True)
        amp_dtype = amp_dtype_for(config.mixed_precision, trainer.device)
        print(f"{model_name}: amp dtype {amp_dtype}, channels_last {recipe._channels_last}, "
              f"status {result.status}, accuracy per epoch "
              f"{[round(e.primary_value or 0, 3) for e in collect.epochs]}, "
              f"{len(train) * config.number_of_epochs / seconds:.0f} train img/s incl. eval, "
              f"peak {torch.cuda.max_memory_allocated() / 2 ** 30:.2f} GiB, model.pt epoch {payload['epoch']}")


def main() -> int:
    print(subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip())
    print(f"torch {torch.__version__}, cuda {torch.version.cuda}, bf16 {torch.cuda.is_bf16_supported()}")
    sys.argv = [sys.argv[0], "--device", "cuda", "--size", "128", "--batch", "64", "--batches", "16",
                "--epochs", "3", "--rounds", "2"]
    from train_overhead import main as overhead

    status = overhead()
    with tempfile.TemporaryDirectory() as tmp:
        real_training(Path(tmp))
    return status


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main())
