"""Stand-ins for ``ray_child.run_child`` that speak its protocol without training (executor tests).

``play(message, probe)`` reports a run (``children/<id>.json`` with this worker's pid, a run folder with
``RunStarted``), then follows ``message["config"]["behaviour"]``:

* ``hold``: waits (up to 60 s) for the driver's stop order and ends the run as asked (``RunFinished``);
* ``complete``: ends the run at once as completed.

A resumed child (``resume_run_id``: the executor retried it) writes ``RunStarted`` again and completes.
"""

from __future__ import annotations

import os
import time

from jupyter_avml.runs.events import JsonlEventWriter, RunFinished, RunStarted
from jupyter_avml.sweep.folder import ExperimentFolder
from jupyter_avml.workspace import Workspace


def play(message: dict, probe: dict) -> dict:
    folder = ExperimentFolder(message["folder"])
    child = int(message["child"])
    run_id = message.get("resume_run_id") or f"run{child}"
    run_dir = Workspace.resolve(message["workspace"]).run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    events = JsonlEventWriter(run_dir / "events.jsonl")
    events.on_event(RunStarted(run_id, number_of_epochs=1))
    folder.write_child_info(child, {"child": child, "pid": os.getpid(), "run_id": run_id})
    behaviour = "complete" if message.get("resume_run_id") else (message.get("config") or {}).get("behaviour")
    if behaviour == "hold":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and folder.child_stop_order(child) is None:
            time.sleep(0.1)
        status, reason = folder.child_stop_order(child) or ("failed", "no stop order within 60 s")
        events.on_event(RunFinished(run_id, status=status, reason=reason))
        return {"code": 0}
    events.on_event(RunFinished(run_id, status="completed"))
    return {"code": 0}
