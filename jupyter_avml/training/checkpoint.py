"""The resumable training state (``checkpoints/last.pt``) and the weights copies the trainers save.

``checkpoints/last.pt`` (written at the end of every epoch) holds everything needed to continue exactly:
weights, optimizer, scheduler and scaler states (or the YOLO runner's equivalents), and the trainer's counters.
Randomness needs no saved state because every epoch reseeds from ``(seed, epoch)``. It contains only tensors and
plain Python values and is read with ``weights_only=True``, as data.

The model file users load (``outputs/model.pt``) is ``jupyter_avml.models.model_file``'s; ``model_payload`` and
``MODEL_FORMAT`` are re-exported here for existing callers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyter_avml.errors import AvmlError, WeightsUnavailableError
from jupyter_avml.models.model_file import (  # noqa: F401  (re-exports)
    MODEL_FORMAT,
    cpu_state_dict,
    model_payload,
    save_torch_file,
)

#: ``torch.save`` through ``fileio.atomic_write`` (no half-written file, no temporary file left, DiskFullError).
atomic_save = save_torch_file


def load_checkpoint(path: str | os.PathLike, expected_format: str | None = None) -> dict[str, Any]:
    """A run's ``checkpoints/last.pt``, read as data; ``AvmlError`` naming the file when it cannot be used."""
    from jupyter_avml.models.weights_files import load_weights_file

    path = Path(path)
    advice = "delete it to restart the run from its first epoch"
    try:
        checkpoint = load_weights_file(path, field="checkpoint")
    except WeightsUnavailableError as exc:
        raise AvmlError(f"{exc}; {advice}") from None
    if not isinstance(checkpoint, dict) or "trainer_state" not in checkpoint:
        raise AvmlError(f"{path} is not a training checkpoint (no trainer_state); {advice}")
    if expected_format is not None and checkpoint.get("format") != expected_format:
        raise AvmlError(f"{path} is not a checkpoint of this trainer (format {checkpoint.get('format')!r}, "
                        f"expected {expected_format!r}); {advice}")
    return checkpoint
