"""The hardware AutoMode plans for: the GPUs the sweep's children will get, or the CPU cores.

Read the same way the sweep's slots are planned (``sweep.slots``): ``device: cpu`` means the CPU whatever the
machine has; ``auto``/``cuda`` mean the GPUs ``detect_gpus`` finds (without initialising CUDA here), the CPU
when there is none.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Hardware", "detect_hardware"]


@dataclass(frozen=True)
class Hardware:
    """``kind`` is ``"gpu"`` or ``"cpu"``; ``gpus`` the number of GPUs, ``cores`` the usable CPU cores."""

    kind: str
    gpus: int
    cores: int

    def describe(self) -> str:
        if self.kind == "gpu":
            return f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}"
        return f"CPU ({self.cores} core{'s' if self.cores != 1 else ''})"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "gpus": self.gpus, "cores": self.cores}


def detect_hardware(device: str | None) -> Hardware:
    """The hardware children of a sweep with run setting ``device`` will run on."""
    from jupyter_avml.sweep.slots import cpu_count, detect_gpus

    cores = cpu_count()
    device = str(device or "auto").strip().lower()
    gpus = [] if device == "cpu" else detect_gpus()
    if gpus:
        return Hardware("gpu", len(gpus), cores)
    return Hardware("cpu", 0, cores)
