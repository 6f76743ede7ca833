"""Whether a process that a record names still runs: the one check behind every "is it alive?" question.

Background processes (sweep drivers, training runs, deployed services) record their pid, and where it matters
their start time, in a JSON file; readers ask here. A pid alone can be reused by an unrelated process after a
reboot or a long time, so a recorded ``create_time`` is compared too, and a zombie counts as gone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["pid_alive", "process_alive"]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (possibly another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_alive(record: Mapping[str, Any]) -> bool:
    """Whether the process of a record (``pid``, optional ``create_time``) runs: pid reuse and zombies excluded."""
    import psutil

    try:
        process = psutil.Process(int(record["pid"]))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = record.get("create_time")
        return created is None or abs(process.create_time() - float(created)) < 0.05
    except (psutil.Error, ValueError, TypeError, KeyError):
        return False
