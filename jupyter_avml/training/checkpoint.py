"""Checkpoints: the resumable training state and the exported model file.

``checkpoints/last.pt`` (written at the end of every epoch) holds everything needed to continue exactly:
weights, optimizer, scheduler and scaler states, and the trainer's counters. Randomness needs no saved
state because every epoch reseeds from ``(seed, epoch)``.

``outputs/model.pt`` is what users load: weights + resolved configuration + class names + metrics. Both
contain only tensors and plain Python values, so ``torch.load(path, weights_only=True)`` reads them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

MODEL_FORMAT = "jupyter_avml.model/1"


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a checkpoint."""
    from jupyter_avml.fileio import atomic_write

    return atomic_write(path, lambda handle: torch.save(obj, handle))


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the weights (safe to keep while training goes on)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def model_payload(*, task: str, model_name: str, class_names: list[str], config: dict, state_dict: dict,
                  metrics: dict | None = None, epoch: int | None = None, extra: dict | None = None) -> dict:
    """The content of ``outputs/model.pt``."""
    return {"format": MODEL_FORMAT, "task": task, "model_name": model_name, "class_names": list(class_names),
            "config": config, "state_dict": state_dict, "metrics": dict(metrics or {}), "epoch": epoch,
            **(extra or {})}
