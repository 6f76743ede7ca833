"""A child worker: one process that trains one child of a sweep (``python -m jupyter_avml.sweep.worker``).

Life of a worker
----------------
1. The driver starts it in advance, as a *warm spare* of a slot (``subprocess.Popen`` = fork + exec of a
   fresh interpreter, never a bare fork: CUDA and pymongo do not survive a fork). Its environment carries the
   slot's ``CUDA_VISIBLE_DEVICES`` and thread counts.
2. It ties its life to the driver's: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (Linux) kills it when the driver
   dies, and a watchdog thread exits when its parent pid changes (the fallback where prctl is missing, and a
   second guard since PDEATHSIG follows the parent *thread* that started the process).
3. It imports torch, timm, torchvision, matplotlib and the training modules and opens the tracking store
   (several seconds), then waits on stdin for its assignment: one JSON line (see ``Assignment``). So when a
   slot frees up, the next child starts in a process that is already warm.
4. It sends its output to ``children/<id>.log``, runs ``training.run.train`` (or ``resume`` for a child
   that was interrupted), and exits when the run ends.

How the driver learns the run id: on the run's first event (``RunStarted``, or ``RunFinished`` when it fails
before starting) the worker writes ``children/<id>.json`` = ``{"child", "slot", "pid", "run_id", "log"}``
(``ExperimentFolder.write_child_info``). From then on the driver tails ``runs/<run_id>/events.jsonl``. A
failure before any run exists (unreadable data) is written there too, as ``{"error": ...}``.

Stopping: the driver writes the run's STOP file (``request_stop``) and, since the run id may not be known
yet, also sends ``{"cmd": "stop", "status": ..., "reason": ...}`` on stdin; SIGTERM asks for a clean stop
too. Either way the run ends after its current batch, with its best model kept.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from jupyter_avml.liveness import die_with_parent
from jupyter_avml.sweep.folder import ExperimentFolder


def warm_up(workspace: str, tracking_uri: str | None) -> None:
    """Import what a training needs and open the tracking store, so a child starts in well under a second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import timm  # noqa: F401
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    import jupyter_avml.training.classification  # noqa: F401
    import jupyter_avml.training.data  # noqa: F401
    import jupyter_avml.training.engine  # noqa: F401
    import jupyter_avml.training.outputs  # noqa: F401
    import jupyter_avml.training.run  # noqa: F401
    from jupyter_avml.tracking.store import Tracker

    # MLflow caches its store per URI: creating it now spares the child the SQLAlchemy set-up (the Tracker
    # serialises the store's creation across processes itself).
    Tracker(workspace, tracking_uri).client.search_experiments(max_results=1)


class _Reporter:
    """Writes ``children/<id>.json`` on the run's first event, so the driver learns the run id early."""

    def __init__(self, folder: ExperimentFolder, child_id: int, slot: int, info: dict[str, Any] | None = None):
        self.folder, self.child_id, self.slot = folder, child_id, slot
        self.log = folder.child_log(child_id)
        self.info = dict(info or {})  # what the executor adds (a Ray child: its node)
        self.run_id: str | None = None

    def on_event(self, event) -> None:
        if self.run_id is None:
            self.run_id = event.run_id
            self.write(run_id=event.run_id)

    def write(self, **extra: Any) -> None:
        data = {"child": self.child_id, "slot": self.slot, "pid": os.getpid(), "log": str(self.log),
                "time": time.time(), **self.info, **extra}
        self.folder.write_child_info(self.child_id, data)


def _redirect_output(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _read_commands(stop_signal) -> None:
    """Stop requests sent by the driver after the assignment (one JSON object per line)."""
    for line in sys.stdin:
        try:
            command = json.loads(line)
        except ValueError:
            continue
        if command.get("cmd") == "stop":
            stop_signal.request(command.get("reason") or "stopped by user", command.get("status") or "stopped")


def run_assignment(assignment: dict[str, Any], stop_signal, info: dict[str, Any] | None = None) -> int:
    """Train (or resume) the assigned child; returns the exit status.

    ``info`` is added to ``children/<id>.json`` (a Ray child records its node there).
    """
    from jupyter_avml.config import AutoMLImageConfig
    from jupyter_avml.training.run import resume, train

    folder = ExperimentFolder(assignment["folder"])
    child_id = int(assignment["child"])
    reporter = _Reporter(folder, child_id, int(assignment.get("slot", 0)), info)
    threads = int(assignment.get("threads") or 0)
    if threads:
        import torch

        torch.set_num_threads(threads)
    print(f"worker {os.getpid()}: child {child_id} of {assignment['experiment']} "
          f"({'resuming run ' + assignment['resume_run_id'] if assignment.get('resume_run_id') else 'new run'})",
          flush=True)
    try:
        if assignment.get("resume_run_id"):
            summary = resume(assignment["resume_run_id"], workspace=assignment["workspace"], callbacks=[reporter],
                             stop_signal=stop_signal)
        else:
            config = AutoMLImageConfig.from_dict(assignment["config"])
            summary = train(config, workspace=assignment["workspace"], callbacks=[reporter], stop_signal=stop_signal,
                            experiment=assignment["experiment"], parent_run_id=assignment.get("parent_run_id"),
                            run_name=assignment.get("run_name"), tags=assignment.get("tags") or {})
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the driver
        traceback.print_exc()
        if reporter.run_id is None:
            # No run was created (bad data...): the driver learns the error from this file.
            reporter.write(run_id=None, error=f"{type(exc).__name__}: {exc}")
        return 1
    print(f"worker {os.getpid()}: child {child_id} ended {summary.status}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupyter_avml.sweep.worker")
    parser.add_argument("--parent", type=int, required=True, help="the driver's pid (the worker dies with it)")
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--serial", default="0")
    args = parser.parse_args(argv)
    die_with_parent(args.parent)

    from jupyter_avml.runs.events import StopSignal

    stop_signal = StopSignal()
    assigned = threading.Event()

    def on_sigterm(signum, frame) -> None:
        if not assigned.is_set():
            os._exit(0)  # an idle spare has nothing to save
        stop_signal.request("stopped: the worker received SIGTERM", "stopped")

    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.time()
    warm_up(args.workspace, args.tracking_uri)
    print(f"worker {os.getpid()} (spare {args.serial}): warm after {time.time() - started:.1f} s", flush=True)

    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the driver closed our stdin: this spare is not needed
    assignment = json.loads(line)
    assigned.set()
    _redirect_output(ExperimentFolder(assignment["folder"]).child_log(int(assignment["child"])))
    threading.Thread(target=_read_commands, args=(stop_signal,), name="driver-commands", daemon=True).start()
    return run_assignment(assignment, stop_signal)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown (daemon threads blocked on stdin, torch's thread pools).
    os._exit(code)
