"""Starting a driver: a detached process that outlives the notebook kernel or the terminal that started it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from jupyter_avml.sweep.folder import ExperimentFolder, process_identity
from jupyter_avml.workspace import Workspace

__all__ = ["start_driver"]


def start_driver(workspace: Workspace, name: str, *, resume: bool) -> subprocess.Popen:
    """Start the driver of experiment ``name`` detached (own session, output appended to ``driver.log``).

    The launcher records the process in ``launch.json``, never in ``driver.json`` (only the driver writes
    that, and a resumed driver reads its predecessor's record there first): until the driver holds its lock,
    ``launch.json`` is what tells readers that a driver is starting.
    """
    folder = ExperimentFolder.of(workspace.root, name)
    command = [sys.executable, "-m", "jupyter_avml.sweep.driver", str(workspace.root), name]
    if resume:
        command.append("--resume")
    folder.path.mkdir(parents=True, exist_ok=True)
    with open(folder.log_file, "ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {'resume' if resume else 'submit'}: "
                  f"{' '.join(command)}\n".encode())
        out.flush()
        # spawn/exec in a new session: a notebook kernel restart (or Ctrl-C in a terminal) leaves it running.
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        identity = process_identity(process.pid)
    except Exception:  # noqa: BLE001 - it exited already; driver_alive will say so
        identity = {"pid": process.pid, "create_time": None, "host": socket.gethostname()}
    folder.write_launch_record({**identity, "time": time.time(), "resume": resume})
    return process
