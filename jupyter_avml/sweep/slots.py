"""Where a sweep's children run: one slot per GPU, or ``cpu_slots`` slots sharing the CPU cores.

A slot runs one child at a time. What a worker process of a slot gets:

* a GPU slot: ``CUDA_VISIBLE_DEVICES`` set to its one GPU (the child sees it as ``cuda:0``) and
  ``cores // slots`` CPU threads for data loading and host work;
* a CPU slot: no GPU (``CUDA_VISIBLE_DEVICES=""``) and ``cores // slots`` torch threads (at least 1), set
  through ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` before torch is imported and ``torch.set_num_threads``.

GPU detection happens in the driver and must not initialise CUDA there (a driver holding a CUDA context
wastes GPU memory and, if it ever forked, would break the children). So it does not import torch:
``CUDA_VISIBLE_DEVICES`` when set, else the lines of ``nvidia-smi -L``. When ``nvidia-smi`` is missing, the
last resort is ``torch.cuda.device_count()`` in a short-lived subprocess, which counts devices through the
driver API without creating a context in the driver itself.

How many slots on the CPU: ``cpu_slots`` when given; else ``cores // cpus_per_child`` when that is given
(each child gets ``cpus_per_child`` threads); else ``max_concurrent_iterations`` bounded by the number of
cores; else ``max(1, cores // 4)`` (at least four threads per child).

Multi-GPU children: with ``gpus_per_child: N`` a slot holds N GPUs (``CUDA_VISIBLE_DEVICES=0,1``), and its
child trains on all of them with DDP (``distributed`` is set in its run settings); GPUs left over when the
count is not a multiple of N stay unused. ``gpus_per_child: 0`` gives CPU slots.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

__all__ = ["Slot", "detect_gpus", "plan_slots", "cpu_count"]


@dataclass(frozen=True)
class Slot:
    """One place a child can run."""

    index: int
    kind: str                 # "gpu" or "cpu"
    gpu: str | None           # the physical GPU id (as CUDA_VISIBLE_DEVICES names it) for a GPU slot
    threads: int              # torch CPU threads for the child

    def env(self) -> dict[str, str]:
        """Environment variables for a worker process of this slot."""
        threads = str(self.threads)
        return {"CUDA_VISIBLE_DEVICES": self.gpu if self.gpu is not None else "",
                "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}

    @property
    def gpu_count(self) -> int:
        return len(self.gpu.split(",")) if self.kind == "gpu" and self.gpu else 0

    def child_values(self, values: dict) -> dict:
        """A child's run settings on this slot: the slot's CPU threads unless the user set ``cpu_threads``; on
        a GPU slot ``cuda:N`` becomes ``cuda`` (the worker sees only its own GPUs, from ``cuda:0``); a slot of
        several GPUs trains its child on all of them (``distributed: 1``)."""
        values = dict(values)
        if "cpu_threads" not in values:
            values["cpu_threads"] = self.threads
        if self.kind == "gpu" and str(values.get("device", "")).startswith("cuda:"):
            values["device"] = "cuda"
        if self.gpu_count > 1:
            values.setdefault("distributed", 1)
        return values

    def describe(self) -> str:
        if self.kind == "gpu":
            return f"GPU {self.gpu}" if self.gpu is not None else "the GPU(s) Ray gives"
        return f"CPU ({self.threads} thread{'s' * (self.threads > 1)})"


def cpu_count() -> int:
    """Cores this process may use (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def detect_gpus() -> list[str]:
    """The GPUs children may use, as ``CUDA_VISIBLE_DEVICES`` entries; ``[]`` when there is none.

    Never initialises CUDA in this process (see the module docstring).
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [item.strip() for item in visible.split(",") if item.strip()]
        # "-1" (or any invalid entry) hides every device after it.
        out = []
        for item in ids:
            if item.startswith("-"):
                break
            out.append(item)
        return out
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            result = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return []
        if result.returncode != 0:
            return []
        return [str(i) for i, line in enumerate(line for line in result.stdout.splitlines() if line.startswith("GPU "))]
    try:
        result = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
                                capture_output=True, text=True, timeout=120)
        count = int(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else 0
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        count = 0
    return [str(i) for i in range(count)]


def plan_slots(device: str, *, cpu_slots: int | None = None, max_concurrent: int | None = None,
               cpu_threads: int | None = None, gpus: list[str] | None = None, cores: int | None = None,
               gpus_per_child: int | None = None, cpus_per_child: int | None = None) -> list[Slot]:
    """The slots of a sweep.

    Parameters
    ----------
    device:
        The run setting ``device``: ``cpu`` uses CPU slots; ``auto``/``cuda`` one slot per GPU (CPU slots
        when there is none); ``cuda:N`` one slot on GPU N.
    cpu_slots:
        The ``cpu_slots`` setting (CPU slots only).
    max_concurrent:
        ``max_concurrent_iterations``: without ``cpu_slots`` it sets the CPU slots (at most one per core).
    cpu_threads:
        The run setting ``cpu_threads`` when the user gave it: every child gets exactly that.
    gpus, cores:
        Detected values (``detect_gpus()``, ``cpu_count()``) unless given (tests).
    gpus_per_child, cpus_per_child:
        The executor settings (``executor_config.py``): GPUs per slot (0: CPU slots), cores per CPU slot.
    """
    cores = cores if cores is not None else cpu_count()
    device = str(device or "auto").strip().lower()
    per_child = 1 if gpus_per_child is None else int(gpus_per_child)
    if device != "cpu" and per_child > 0:
        found = detect_gpus() if gpus is None else list(gpus)
        if device.startswith("cuda:"):
            wanted = device.split(":", 1)[1]
            found = [found[int(wanted)]] if wanted.isdigit() and int(wanted) < len(found) else []
            if not found:
                from jupyter_avml.errors import ConfigError

                raise ConfigError(f"device is {device!r} but that GPU is not available to this sweep",
                                  field="device", value=device)
        if found and per_child > 1:
            if len(found) < per_child:
                from jupyter_avml.errors import ConfigError

                raise ConfigError(f"gpus_per_child is {per_child} but this machine has {len(found)} GPU(s) for the "
                                  f"sweep", field="gpus_per_child", value=per_child)
            found = [",".join(found[i:i + per_child]) for i in range(0, len(found) - per_child + 1, per_child)]
        if found:
            threads = cpu_threads or max(1, cores // len(found))
            return [Slot(i, "gpu", gpu, threads) for i, gpu in enumerate(found)]
        if device.startswith("cuda"):
            from jupyter_avml.errors import ConfigError

            raise ConfigError(f"device is {device!r} but no CUDA GPU is available; use device: auto or cpu",
                              field="device", value=device)
    if cpu_slots is not None:
        count = cpu_slots
    elif cpus_per_child is not None:
        count = max(1, cores // int(cpus_per_child))
        cpu_threads = cpu_threads or int(cpus_per_child)
    elif max_concurrent is not None:
        count = max(1, min(max_concurrent, cores))
    else:
        count = max(1, cores // 4)
    threads = cpu_threads or max(1, cores // count)
    return [Slot(i, "cpu", None, threads) for i in range(count)]
