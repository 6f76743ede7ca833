"""Where a model runs and in which precision: one rule for training and inference."""

from __future__ import annotations

import torch

from jupyter_avml.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first CUDA GPU when there is one, else the CPU; ``ConfigError`` for a CUDA device without
    CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device is {name!r} but no CUDA GPU is available; use device: auto or cpu",
                          field="device", value=name)
    return device


def amp_dtype_for(mixed_precision: bool, device: torch.device) -> torch.dtype | None:
    """Mixed precision on CUDA only: bf16 where the GPU has it, else fp16 (with a gradient scaler); None off CUDA
    or when disabled."""
    if device.type != "cuda" or not mixed_precision:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
