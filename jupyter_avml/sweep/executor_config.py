"""Where a sweep's children run: the executor settings of an experiment (``executor``, ``ray_address``...).

==================  ==========================================================================================
``executor``        ``local`` (default): children are worker processes of this machine (``processes.py``);
                    ``ray``: each child is a Ray task placed by Ray's scheduler on a cluster (``ray_executor``).
``ray_address``     (ray) the cluster to join: ``auto`` (default: ``$RAY_ADDRESS``, else the cluster started on
                    this machine with ``ray start``), ``HOST:PORT`` (the head's GCS address that ``ray start
                    --head`` prints) or ``ray://HOST:PORT`` (Ray Client).
``cpus_per_child``  CPUs one child reserves (Ray's ``num_cpus``; also its torch threads). Local executor: the
                    CPU slots are ``cores // cpus_per_child`` (``cpu_slots`` says it directly). Ray default: 1.
``gpus_per_child``  GPUs one child reserves. Above 1, the child trains with DDP on them (one process per GPU).
                    Local executor: slots group that many GPUs (default 1). Ray: Ray's ``num_gpus`` (a fraction
                    shares a GPU); default 1 when the cluster has GPUs and ``device`` is not ``cpu``, else 0.
``child_retries``   (ray) 0 (default) or 1: a child whose Ray worker or node dies runs once more (resuming its
                    run from its last epoch checkpoint) instead of failing. A child that fails by itself (an
                    error in training) is never retried.
==================  ==========================================================================================

The settings are sweep settings: they travel in ``experiment.yaml`` and reach the driver, never a child's run
configuration (a child's run is the same whichever executor ran it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyter_avml.config.loader import echo_value
from jupyter_avml.errors import ConfigError

__all__ = ["ExecutorSettings", "EXECUTOR_KEYS", "EXECUTORS", "parse_executor_settings"]

EXECUTORS = ("local", "ray")
EXECUTOR_KEYS = ("executor", "ray_address", "cpus_per_child", "gpus_per_child", "child_retries")
RAY_ONLY_KEYS = ("ray_address", "child_retries")
MAX_CPUS_PER_CHILD = 1024
MAX_GPUS_PER_CHILD = 64
# HOST:PORT or ray://HOST:PORT; HOST is a name, an IPv4 address or a bracketed IPv6 address.
_ADDRESS = re.compile(r"^(ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


@dataclass(frozen=True)
class ExecutorSettings:
    """The executor settings of an experiment (see the module docstring); ``None`` means "not given"."""

    executor: str = "local"
    ray_address: str = "auto"
    cpus_per_child: float | None = None
    gpus_per_child: float | None = None
    child_retries: int = 0

    @property
    def is_ray(self) -> bool:
        return self.executor == "ray"

    def describe(self) -> str:
        """One line for logs: ``ray at auto, 1 CPU and 0 GPUs per child``."""
        if not self.is_ray:
            return "local worker processes"
        cpus = 1 if self.cpus_per_child is None else self.cpus_per_child
        gpus = "auto" if self.gpus_per_child is None else f"{self.gpus_per_child:g}"
        return f"Ray at {self.ray_address}, {cpus:g} CPU(s) and {gpus} GPU(s) per child"


Fail = Callable[[str, str, Any], ConfigError]


def parse_executor_settings(given: dict[str, tuple[Any, str]], fail: Fail, *, device: str | None = None,
                            cpu_slots: int | None = None) -> ExecutorSettings:
    """Validate the executor settings.

    Parameters
    ----------
    given:
        Canonical key -> ``(value, where it was written)`` for the keys of ``EXECUTOR_KEYS`` that were set.
    fail:
        ``fail(message, where, value)`` -> the ``ConfigError`` to raise (it adds the file and line).
    device:
        The run setting ``device`` when fixed (``cuda`` needs GPUs per child on Ray).
    cpu_slots:
        The ``cpu_slots`` setting (local executor only).
    """
    executor = "local"
    if "executor" in given:
        value, where = given["executor"]
        executor = str(value).strip().lower() if isinstance(value, str) else ""
        if executor not in EXECUTORS:
            raise fail(f"{where} must be one of {', '.join(EXECUTORS)}, got {echo_value(value)}", where, value)
    if executor != "ray":
        for key in RAY_ONLY_KEYS:
            if key in given:
                value, where = given[key]
                raise fail(f"{where} applies to executor: ray (the executor is {executor}); set executor: ray or "
                           f"remove {where}", where, value)
    address = "auto"
    if "ray_address" in given:
        value, where = given["ray_address"]
        address = value.strip() if isinstance(value, str) else ""
        if address != "auto" and not _valid_address(address):
            raise fail(f"{where} must be auto, HOST:PORT (the address `ray start --head` prints) or ray://HOST:PORT, "
                       f"got {echo_value(value)}", where, value)
    cpus = _number(given, "cpus_per_child", fail, low=0.0, high=MAX_CPUS_PER_CHILD, low_open=True)
    gpus = _number(given, "gpus_per_child", fail, low=0.0, high=MAX_GPUS_PER_CHILD, low_open=False)
    if gpus is not None and gpus > 1 and not float(gpus).is_integer():
        value, where = given["gpus_per_child"]
        raise fail(f"{where} above 1 must be a whole number of GPUs (a child trains on each of them with DDP), "
                   f"got {echo_value(value)}", where, value)
    if executor == "local":
        if gpus is not None and not float(gpus).is_integer():
            value, where = given["gpus_per_child"]
            raise fail(f"{where} must be a whole number with executor: local (a fraction of a GPU needs executor: "
                       f"ray), got {echo_value(value)}", where, value)
        if cpus is not None and not float(cpus).is_integer():
            value, where = given["cpus_per_child"]
            raise fail(f"{where} must be a whole number of cores with executor: local, got {echo_value(value)}",
                       where, value)
        if cpus is not None and cpu_slots is not None:
            value, where = given["cpus_per_child"]
            raise fail(f"give cpu_slots or {where}, not both (cpu_slots = cores // cpus_per_child)", where, value)
    else:
        if cpu_slots is not None:
            raise fail("cpu_slots is for executor: local; with executor: ray each child reserves cpus_per_child "
                       "CPUs of the cluster", "cpu_slots", cpu_slots)
        if str(device or "").strip().lower().startswith("cuda:"):
            raise fail(f"device is {device!r}: with executor: ray the child sees only the GPUs Ray gives it; use "
                       f"device: cuda (or auto) and gpus_per_child", "device", device)
    if str(device or "").strip().lower().startswith("cuda") and gpus is not None and gpus == 0:
        value, where = given["gpus_per_child"]
        raise fail(f"device is {device!r} but {where} is 0: a child sees only the GPUs it gets; set gpus_per_child "
                   f"to 1 or more, or device: auto", where, value)
    retries = 0
    if "child_retries" in given:
        value, where = given["child_retries"]
        if isinstance(value, bool) or value not in (0, 1):
            raise fail(f"{where} must be 0 or 1 (retry a child whose Ray worker or node died once), got "
                       f"{echo_value(value)}", where, value)
        retries = int(value)
    return ExecutorSettings(executor=executor, ray_address=address, cpus_per_child=cpus, gpus_per_child=gpus,
                            child_retries=retries)


def _valid_address(address: str) -> bool:
    match = _ADDRESS.match(address)
    return bool(match) and len(match.group(2)) <= 253 and 0 < int(match.group(3)) < 65536  # 253: a DNS name


def _number(given: dict, key: str, fail: Fail, *, low: float, high: float, low_open: bool) -> float | None:
    if key not in given:
        return None
    value, where = given[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"({low:g}, {high:g}]" if low_open else f"[{low:g}, {high:g}]"
        raise fail(f"{where} must be a number in {bound}, got {echo_value(value)}", where, value)
    return int(value) if float(value).is_integer() else float(value)
