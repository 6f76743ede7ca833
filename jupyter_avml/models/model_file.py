"""The model file (``outputs/model.pt`` of a run, or a registered model's copy): what training writes and
inference reads.

Content (``torch.save`` of plain values and tensors only, so it is read with ``weights_only=True``, as data):

* ``format``: ``MODEL_FORMAT``; ``task``; ``model_name``; ``class_names`` (the model's output order);
* ``config``: the resolved configuration of the run; ``metrics`` and ``epoch`` of the saved weights;
* ``state_dict``: the weights (CPU tensors);
* family facts recorded at training time, read back by the predictor instead of being recomputed (as timm's
  pretrained config travels with its weights): ``normalization`` (classifiers: mean and std),
  ``detector`` (torchvision detectors: ``batchnorm_eps``), ``yolo`` (model file, scale, stride, network size).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyter_avml.errors import ModelFileError, UnsafeWeightsError, WeightsUnavailableError

MODEL_FORMAT = "jupyter_avml.model/1"
REQUIRED_KEYS = ("task", "model_name", "class_names", "config", "state_dict")
WHAT_A_MODEL_FILE_IS = ("a model file is the outputs/model.pt of a training run (or a registered model "
                        "models:/NAME/VERSION)")


def model_payload(*, task: str, model_name: str, class_names: list[str], config: dict, state_dict: dict,
                  metrics: dict | None = None, epoch: int | None = None, extra: dict | None = None) -> dict:
    """The content of a model file (see the module docstring); ``extra`` holds the family facts."""
    return {"format": MODEL_FORMAT, "task": task, "model_name": model_name, "class_names": list(class_names),
            "config": config, "state_dict": state_dict, "metrics": dict(metrics or {}), "epoch": epoch,
            **(extra or {})}


def cpu_state_dict(model) -> dict[str, Any]:
    """A detached CPU copy of a module's weights (safe to keep while training goes on)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save_torch_file(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through ``fileio.atomic_write``: a reader never sees half a file, a failed write leaves no
    temporary file, and a full disk raises ``DiskFullError`` naming ``path``."""
    import torch

    from jupyter_avml.fileio import atomic_write

    return atomic_write(path, lambda handle: torch.save(obj, handle))


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The content of a model file, read as data.

    Raises
    ------
    ModelFileError
        Naming the path and what a model file is, when the file is empty, truncated, not a PyTorch file,
        a file that only running code could read, a training checkpoint (``checkpoints/last.pt``), or a
        dictionary without a model's entries.
    """
    from jupyter_avml.models.weights_files import load_weights_file

    file = Path(path)
    try:
        payload = load_weights_file(file, field="model file")
    except UnsafeWeightsError as exc:
        raise ModelFileError(f"{file} is not a model file: it pickles objects that only running its code could "
                             f"rebuild ({', '.join(getattr(exc, 'names', [])[:5])}), and jupyter_avml never runs "
                             f"code from a file it loads; {WHAT_A_MODEL_FILE_IS}") from None
    except WeightsUnavailableError as exc:
        raise ModelFileError(f"{file} is not a model file ({_reason(exc)}); {WHAT_A_MODEL_FILE_IS}") from None
    if not isinstance(payload, dict):
        raise ModelFileError(f"{file} is not a model file (it holds a {type(payload).__name__}); "
                             f"{WHAT_A_MODEL_FILE_IS}")
    if "trainer_state" in payload:
        raise ModelFileError(f"{file} is a training checkpoint (the state to resume a run), not a model file: "
                             f"resume the run with `avml train --resume RUN_ID`, or load its outputs/model.pt")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise ModelFileError(f"{file} is not a model file (no {', '.join(missing)}); {WHAT_A_MODEL_FILE_IS}")
    if not isinstance(payload["state_dict"], dict) or not isinstance(payload["config"], dict):
        raise ModelFileError(f"{file} is not a model file (its state_dict or config is not a dictionary); "
                             f"{WHAT_A_MODEL_FILE_IS}")
    return payload


def _reason(error: BaseException) -> str:
    """The part of a weights error after its ``field: path`` prefix."""
    text = str(error)
    return text.split(": ", 1)[1] if text.startswith("model file: ") else text
