"""Sweep verbs: ``avml sweep``, ``avml status``, ``avml stop``, ``avml best``, ``avml register``.

* ``avml sweep CONFIG.yaml [--name N] [--detach] [--json]`` submits an experiment and, unless ``--detach``,
  follows it, printing a compact leaderboard whenever something changes. Ctrl-C stops following, not the
  sweep (it runs in its own background driver). ``avml sweep --resume NAME`` resumes an interrupted one.
* ``avml status [NAME] [--json]``: every experiment, or one with its children.
* ``avml stop NAME [--child ID]``: stop the whole sweep, or one child.
* ``avml best NAME [--json]``: the best child (run id, model, metrics, model file).
* ``avml register NAME MODEL_NAME``: register the best child's model (or run NAME's model); prints the version.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from jupyter_avml.errors import ConfigError


def register(subparsers) -> None:
    sweep = subparsers.add_parser("sweep", help="run a hyperparameter sweep (an experiment) in the background",
                                  description="Submit an experiment: run settings plus sweep settings (sampling, "
                                              "iterations, search_space, early_termination_policy...).")
    sweep.add_argument("config", nargs="?", help="experiment YAML file")
    sweep.add_argument("--name", help="experiment name (default: the YAML file name and a counter)")
    sweep.add_argument("--detach", action="store_true", help="return once the sweep is started")
    sweep.add_argument("--json", action="store_true", help="print one JSON object at the end instead of progress")
    sweep.add_argument("--resume", metavar="NAME", help="resume an interrupted experiment")
    sweep.set_defaults(func=run_sweep)

    status = subparsers.add_parser("status", help="experiments and their children")
    status.add_argument("name", nargs="?", help="one experiment (default: all)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=run_status)

    stop = subparsers.add_parser("stop", help="stop an experiment, or one of its children")
    stop.add_argument("name")
    stop.add_argument("--child", type=int, metavar="ID", help="stop only this child")
    stop.add_argument("--reason", default="stopped by user")
    stop.set_defaults(func=run_stop)

    best = subparsers.add_parser("best", help="the best child of an experiment")
    best.add_argument("name")
    best.add_argument("--json", action="store_true")
    best.set_defaults(func=run_best)

    reg = subparsers.add_parser("register", help="register the best child's model in the MLflow Model Registry")
    reg.add_argument("name", help="experiment name (its best child) or run id")
    reg.add_argument("model_name", help="registered model name")
    reg.set_defaults(func=run_register)


# --------------------------------------------------------------------------------------------------------
def run_sweep(args) -> int:
    from jupyter_avml.sweep.config import parse_experiment
    from jupyter_avml.sweep.experiment import Experiment, attach, default_experiment_name
    from jupyter_avml.sweep.state import experiment_dir
    from jupyter_avml.workspace import Workspace

    workspace = Workspace.resolve(args.workspace)
    if args.resume:
        if args.config:
            raise ConfigError("give either CONFIG or --resume NAME, not both", field="--resume", value=args.resume)
        handle = attach(args.resume, workspace).resume()
        if not args.json:
            print(f"experiment {handle.name} resumed")
    else:
        if not args.config:
            raise ConfigError("an experiment file is required: avml sweep CONFIG.yaml", field="config")
        spec = parse_experiment(args.config)
        name = args.name
        if name is None:
            wanted = spec.experiment_name
            if wanted and not experiment_dir(workspace.root, wanted).exists():
                name = wanted
            else:
                name = default_experiment_name(wanted or args.config, workspace)
        handle = Experiment(name, workspace).submit(spec)
        if not args.json:
            print(f"experiment {name} submitted: {spec.sampling} sampling, {spec.iterations} "
                  f"iteration{'s' * (spec.iterations > 1)} (folder {handle.folder})")
    if args.detach:
        if args.json:
            print(json.dumps(summary(handle)))
        else:
            print(f"follow it: avml status {handle.name}; stop it: avml stop {handle.name}")
        return 0
    try:
        state = follow(handle, quiet=args.json)
    except KeyboardInterrupt:
        print(f"\nstopped following; experiment {handle.name} goes on in the background.\n"
              f"follow it: avml status {handle.name}; stop it: avml stop {handle.name}", file=sys.stderr)
        return 0
    if args.json:
        print(json.dumps(summary(handle)))
    else:
        print_best(handle)
    return 1 if state.status == "failed" else 0


def follow(handle, quiet: bool = False, poll: float = 1.0, stream=None):
    """Print the leaderboard whenever it changes, until the experiment ends (raises if its driver dies)."""
    stream = stream or sys.stdout  # looked up per call: tests and notebooks replace sys.stdout
    last = None
    while True:
        state = handle.state
        if not quiet:
            key = (state.status, tuple((c.id, c.status, c.epoch, c.best_value) for c in state.children))
            if key != last:
                print(leaderboard(state, handle.status), file=stream, flush=True)
                last = key
        if state.finished:
            return state
        if not handle.driver_alive:
            return handle.wait(timeout=0)  # finished meanwhile, or raises with the driver log
        time.sleep(poll)


def leaderboard(state, status: str | None = None, limit: int = 20) -> str:
    """A compact table of the children, best first."""
    metric = state.primary_metric or "metric"
    counts = ", ".join(f"{v} {k}" for k, v in sorted(state.counts().items())) or "no children yet"
    elapsed = ""
    if state.started:
        seconds = (state.ended or time.time()) - state.started
        elapsed = f", {int(seconds // 60)}m{int(seconds % 60):02d}s"
    lines = [f"experiment {state.name}: {status or state.status} ({counts}; {state.iterations} iterations{elapsed})"]
    children = sorted(state.children, key=lambda c: (c.best_value is None, -(c.best_value or 0.0), c.id))
    if children:
        lines.append(f"  {'id':>4}  {'status':16} {'epoch':>7}  {metric:>10}  params")
    for child in children[:limit]:
        epochs = f"{child.epoch}/{child.number_of_epochs}" if child.number_of_epochs else str(child.epoch)
        value = f"{child.best_value:.4f}" if child.best_value is not None else "-"
        mark = "*" if child.id == state.best_child else " "
        params = " ".join(f"{k}={_short(v)}" for k, v in child.params.items())
        lines.append(f" {mark}{child.id:>4}  {child.status:16} {epochs:>7}  {value:>10}  {params}")
        note = child.error or child.reason
        if note and child.status in ("failed", "invalid", "early_terminated"):
            lines.append(f"        {note.splitlines()[0][:150]}")
    if len(children) > limit:
        lines.append(f"  ... {len(children) - limit} more (avml status {state.name} --json)")
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary(handle) -> dict[str, Any]:
    """The JSON ``avml sweep --json`` prints: name, status, children and best child."""
    from jupyter_avml.errors import NotFoundError

    state = handle.state
    try:
        best = handle.get_best_child()
        best_data = {"run_id": best.run_id, "child_id": best.child_id, "model_name": best.model_name,
                     "primary_metric_value": best.primary_metric_value, "metrics": best.metrics,
                     "model_path": best.model_path}
    except NotFoundError:
        best_data = None
    return {"name": state.name, "status": handle.status, "primary_metric": state.primary_metric,
            "parent_run_id": state.parent_run_id,
            "children": [{"id": c.id, "params": c.params, "status": c.status, "run_id": c.run_id,
                          "primary_metric_value": c.best_value, "reason": c.reason, "error": c.error}
                         for c in state.children],
            "best": best_data}


def print_best(handle, stream=None) -> None:
    from jupyter_avml.errors import NotFoundError

    stream = stream or sys.stdout
    try:
        best = handle.get_best_child()
    except NotFoundError as exc:
        print(str(exc), file=stream)
        return
    print(f"best child {best.child_id} ({best.status}): {best.model_name} {best.primary_metric}="
          f"{best.primary_metric_value:.4f}", file=stream)
    print(f"  run {best.run_id}", file=stream)
    if best.params:
        print("  params: " + ", ".join(f"{k}={_short(v)}" for k, v in best.params.items()), file=stream)
    print(f"  model: {best.model_path}", file=stream)


# --------------------------------------------------------------------------------------------------------
def run_status(args) -> int:
    from jupyter_avml.sweep.experiment import attach, list_experiments
    from jupyter_avml.workspace import Workspace

    workspace = Workspace.resolve(args.workspace)
    if args.name:
        handle = attach(args.name, workspace)
        state = handle.state
        if args.json:
            print(json.dumps({**state.to_dict(), "status": handle.status}, default=str))
        else:
            print(leaderboard(state, handle.status, limit=1000))
        return 0
    states = list_experiments(workspace)
    if args.json:
        out = []
        for state in states:
            data = state.to_dict()
            data["status"] = attach(state.name, workspace).status
            out.append(data)
        print(json.dumps(out, default=str))
        return 0
    if not states:
        print("no experiments yet (avml sweep CONFIG.yaml)")
        return 0
    print(f"{'experiment':28} {'created':16} {'status':12} {'children':28} best")
    for state in states:
        status = attach(state.name, workspace).status
        counts = ", ".join(f"{v} {k}" for k, v in sorted(state.counts().items())) or "-"
        best = ""
        if state.best_child is not None:
            child = state.child(state.best_child)
            best = f"{state.primary_metric}={child.best_value:.4f} (child {child.id})"
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(state.created))
        print(f"{state.name:28} {created:16} {status:12} {counts:28} {best}")
    return 0


def run_stop(args) -> int:
    from jupyter_avml.sweep.experiment import attach

    handle = attach(args.name, args.workspace)
    if args.child is not None:
        if handle.stop_child(args.child, reason=args.reason):
            print(f"asked child {args.child} of {args.name} to stop (after its current batch)")
        else:
            print(f"child {args.child} of {args.name} has already ended ({handle.state.child(args.child).status})")
    elif handle.stop(reason=args.reason):
        print(f"asked experiment {args.name} to stop (its children stop after their current batch)")
    else:
        print(f"experiment {args.name} has already ended ({handle.state.status})")
    return 0


def run_best(args) -> int:
    from jupyter_avml.sweep.experiment import attach

    handle = attach(args.name, args.workspace)
    if args.json:
        print(json.dumps(handle.get_best_child().to_dict(), default=str))
    else:
        handle.get_best_child()  # raises NotFoundError (exit 2) when there is none
        print_best(handle)
    return 0


def run_register(args) -> int:
    from jupyter_avml.tracking.registry import register_model

    version = register_model(args.name, args.model_name, workspace=args.workspace)
    print(version)
    return 0
