"""A stand-in for ``jupyter_avml.sweep.worker`` that speaks the same protocol without training anything.

``python -m tests.sweep.fake_worker --parent PID --workspace WS --serial N``: waits on stdin for its
assignment (one JSON line), then plays the ``behaviour`` named in the assignment's ``config``:

* ``complete``: reports its run, writes ``RunStarted``, one ``EpochMetrics`` per value of ``values``, and
  ``RunFinished(completed)``;
* ``wait``: reports its run and one epoch, then waits for a ``{"cmd": "stop"}`` line and ends its run as
  asked (``RunFinished(status, reason)``);
* ``ignore_stop``: like ``wait`` but never stops (the driver has to kill it);
* ``fail_early``: fails before any run exists (writes ``{"error": ...}`` in its child info), exit 1;
* ``die``: reports its run and one epoch, then exits with code 3 without the run's end.

A driver sends real run settings, not a ``behaviour``: then the ``learning_rate`` picks one (``BY_RATE``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from jupyter_avml.runs.events import EpochMetrics, JsonlEventWriter, RunFinished, RunStarted
from jupyter_avml.sweep.folder import ExperimentFolder

#: learning_rate -> (behaviour, primary values per epoch), for children sent by a real driver.
BY_RATE = {0.01: ("complete", [0.4, 0.6]), 0.02: ("complete", [0.7]), 0.03: ("fail_early", []),
           0.04: ("die", [0.2]), 0.05: ("wait", [0.3, 0.3])}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parent", type=int)
    parser.add_argument("--workspace")
    parser.add_argument("--serial")
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args()
    print(f"fake worker {os.getpid()} (spare {args.serial}) ready", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    assignment = json.loads(line)
    folder = ExperimentFolder(assignment["folder"])
    child = int(assignment["child"])
    config = assignment.get("config") or {}
    behaviour, values = BY_RATE.get(config.get("learning_rate"), ("complete", [0.5]))
    behaviour = config.get("behaviour", behaviour)
    print(f"child {child}: {behaviour} (threads {assignment['threads']}, cpu_threads {config.get('cpu_threads')})",
          flush=True)
    if behaviour == "fail_early":
        folder.write_child_info(child, {"child": child, "pid": os.getpid(), "run_id": None,
                                        "error": "DataError: train.jsonl: no usable row"})
        return 1
    run_id = assignment.get("resume_run_id") or f"fake{child:03d}s{args.serial}"
    writer = JsonlEventWriter(os.path.join(args.workspace, "runs", run_id, "events.jsonl"))
    folder.write_child_info(child, {"child": child, "slot": assignment["slot"], "pid": os.getpid(), "run_id": run_id})
    values = list(config.get("values") or values or [0.5])
    writer.on_event(RunStarted(run_id, model_name="fake", number_of_epochs=len(values)))
    shown = values if behaviour == "complete" else values[:1]
    for epoch, value in enumerate(shown, start=1):
        writer.on_event(EpochMetrics(run_id, epoch=epoch, train_loss=1.0 / epoch, metrics={"accuracy": value},
                                     primary_metric="accuracy", primary_value=value))
    if behaviour == "complete":
        writer.on_event(RunFinished(run_id, status="completed", best_value=max(values),
                                    best_epoch=values.index(max(values)) + 1))
        return 0
    if behaviour == "die":
        return 3
    for command in sys.stdin:
        message = json.loads(command)
        if message.get("cmd") == "stop" and behaviour == "wait":
            writer.on_event(RunFinished(run_id, status=message["status"], reason=message["reason"],
                                        best_value=values[0], best_epoch=1))
            return 0
    while behaviour == "ignore_stop":
        time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
