"""Whether a process that a record names still runs: the one check behind every "is it alive?" question.

Background processes (sweep drivers, training runs, deployed services) record their pid, and where it matters
their start time, in a JSON file; readers ask here. A pid alone can be reused by an unrelated process after a
reboot or a long time, so a recorded ``create_time`` is compared too, and a zombie counts as gone.

The other direction, a child process that must not outlive its parent (a sweep worker its driver, a DDP rank its
launcher), is ``die_with_parent``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["pid_alive", "process_alive", "die_with_parent", "EXIT_PARENT_GONE"]

PR_SET_PDEATHSIG = 1
EXIT_PARENT_GONE = 70  # the exit status of a process whose parent went away


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


def die_with_parent(parent_pid: int) -> None:
    """Exit (status ``EXIT_PARENT_GONE``) when ``parent_pid`` goes away: PDEATHSIG where Linux offers it, and a
    watchdog thread where it does not (or when the parent died before ``prctl`` took effect)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(EXIT_PARENT_GONE)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(EXIT_PARENT_GONE)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
