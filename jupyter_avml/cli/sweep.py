"""``sweep CONFIG.yaml`` and ``resume NAME``: experiments started, followed and resumed.

* ``avml sweep CONFIG.yaml [--name N] [--set KEY=VALUE ...] [--dry-run] [--detach] [--json]`` submits an
  experiment and, unless ``--detach``, follows it, printing a compact leaderboard whenever something changes.
  Ctrl-C stops following, not the sweep (it runs in its own background driver). In a notebook,
  ``%avml sweep CONFIG.yaml`` (or a ``%%avml`` cell holding the YAML) shows the live dashboard and returns.
* ``avml resume NAME`` (also ``avml sweep --resume NAME``) resumes an interrupted experiment; ``resume RUN_ID``
  an interrupted training run.
* Exit status: 1 when the experiment ended with no child that finished with a model (every child failed,
  was invalid or was stopped before its first evaluation) or when its driver failed.

``register(subparsers)`` adds every experiment verb (``sweep``, ``resume``, ``list``, ``status``, ``stop``,
``best``, ``register``) to an ``avml`` subparsers.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_avml.cli.dry_run import DryRun
from jupyter_avml.cli.experiments import VAR_ARG, best_text
from jupyter_avml.cli.overrides import SET_ARG
from jupyter_avml.cli.table import NOTEBOOK, SHELL, Verb, add_verbs, arg
from jupyter_avml.errors import ConfigError, NotFoundError
from jupyter_avml.workspace import Workspace

DETACH_ARG = arg("--detach", action="store_true", doors={SHELL},
                 help="return once the experiment is started (in a notebook it always runs in the background, "
                      "with its live dashboard; --foreground waits there)")
FOREGROUND_ARG = arg("--foreground", action="store_true", doors={NOTEBOOK},
                     help="wait until the experiment ends (interrupt the kernel to stop waiting)")
DRY_RUN_ARG = arg("--dry-run", action="store_true",
                  help="show the configurations to try, the resolved settings and the data check; start nothing")


# -- configuration -----------------------------------------------------------------------------------------
def load_experiment_config(path: str, overrides: list[str]):
    """The ``ExperimentConfig`` of a YAML file, with ``--set`` overrides on top (validated twice: the file
    with its line numbers, then the overridden settings)."""
    from jupyter_avml.cli.overrides import apply_overrides
    from jupyter_avml.sweep import parse_experiment

    spec = parse_experiment(path)
    if not overrides:
        return spec
    # ``raw`` has the file's data paths made absolute: --set values' relative paths are from the current folder.
    raw = apply_overrides(copy.deepcopy(spec.raw), overrides)
    return parse_experiment(raw, source=f"{path} with --set", base_dir=Path.cwd())


def experiment_name(spec, source: str | None, workspace: Workspace) -> str:
    """``experiment_name`` of the YAML when it is free, else ``<yaml stem>-<n>``."""
    from jupyter_avml.sweep import ExperimentHandle

    try:
        from jupyter_avml.sweep import default_experiment_name
    except ImportError:  # not re-exported by jupyter_avml.sweep before its restructuring
        from jupyter_avml.sweep.experiment import default_experiment_name

    wanted = spec.experiment_name
    if wanted and not ExperimentHandle(wanted, workspace).folder.exists():
        return wanted
    return default_experiment_name(wanted or source, workspace)


# -- doing -----------------------------------------------------------------------------------------------------
@dataclass
class SweepStarted:
    """An experiment just submitted or resumed (``action``), with its handle."""

    handle: Any
    action: str
    spec: Any = None

    def line(self) -> str:
        name = self.handle.name
        if self.spec is None:
            return f"experiment {name} {self.action}"
        spec = self.spec
        return (f"experiment {name} {self.action}: {spec.sampling} sampling, {spec.iterations} "
                f"iteration{'s' * (spec.iterations > 1)} (folder {self.handle.folder})")


def run_sweep(args, door=None):
    """Submit (or resume, or dry-run) the experiment; returns ``SweepStarted`` or ``DryRun``."""
    from jupyter_avml.sweep import Experiment

    command = getattr(door, "command", "avml")
    workspace = Workspace.resolve(args.workspace)
    if args.resume:
        if args.config or args.overrides or args.dry_run:
            raise ConfigError("--resume NAME takes no CONFIG, --set or --dry-run: a resumed experiment keeps the "
                              "configuration it was submitted with", field="--resume", value=args.resume)
        return resume_experiment(args.resume, workspace, command)
    if not args.config:
        raise ConfigError(f"an experiment file is required: {command} sweep CONFIG.yaml", field="config")
    if args.name is not None:
        Experiment(args.name, workspace)  # a bad name fails before the YAML is read
    spec = load_experiment_config(args.config, args.overrides)
    name = args.name or experiment_name(spec, args.config, workspace)
    if args.dry_run:
        return DryRun(name, spec, workspace)
    return SweepStarted(Experiment(name, workspace).submit(spec), "submitted", spec)


def resume_experiment(name: str, workspace, command: str = "avml") -> SweepStarted:
    from jupyter_avml.cli.records import open_experiment

    return SweepStarted(open_experiment(name, workspace, command).resume(), "resumed")


def resume_verb(args, door=None):
    """Resume experiment NAME, or training run NAME: ``SweepStarted`` or the run's ``RunSummary``."""
    from jupyter_avml.cli.records import experiment_or_run
    from jupyter_avml.cli.train import resume_run

    command = getattr(door, "command", "avml")
    kind, target = experiment_or_run(args.name, args.workspace, command)
    if kind == "experiment":
        return SweepStarted(target.resume(), "resumed")
    return resume_run(target, args.workspace, quiet=bool(args.json), command=command)


# -- showing ---------------------------------------------------------------------------------------------------
def _waits(args) -> bool:
    """Whether the user waits for the end: a shell unless --detach, a notebook with --foreground."""
    if hasattr(args, "foreground"):
        return bool(args.foreground)
    return not getattr(args, "detach", False)


def sweep_text(result, args, door) -> int | None:
    """Shell: the start line, then the leaderboard as it changes, then the best child."""
    if isinstance(result, DryRun):
        print(repr(result))
        return None
    if not isinstance(result, SweepStarted):  # ``resume RUN_ID``: a training run
        from jupyter_avml.cli.train import print_summary

        print_summary(result)
        return None
    handle = result.handle
    print(result.line())
    if not _waits(args):
        print(f"follow it: avml status {handle.name}; stop it: avml stop {handle.name}")
        return None
    try:
        follow(handle)
    except KeyboardInterrupt:
        print(f"\nstopped following; experiment {handle.name} goes on in the background.\n"
              f"follow it: avml status {handle.name}; stop it: avml stop {handle.name}", file=sys.stderr)
        return 0
    print_best(handle)
    return None


def sweep_json(result, args) -> Any:
    if isinstance(result, DryRun):
        return result.to_dict()
    if not isinstance(result, SweepStarted):
        return result.to_dict()
    if _waits(args):
        follow(result.handle, quiet=True)
    return summary(result.handle)


def sweep_display(result, args, door) -> None:
    """Notebook: the dry run's table, or the live dashboard (``--var`` binds the handle, ``--foreground``
    waits for the end)."""
    if isinstance(result, DryRun):
        door.display(result)
        return
    if not isinstance(result, SweepStarted):
        from jupyter_avml.cli.train import print_summary

        print_summary(result)
        return
    handle = result.handle
    door.remember(handle.name, handle.workspace.root)
    if getattr(args, "var", None):
        door.bind(args.var, handle)
    widget = door.show_dashboard(handle)
    if _waits(args):
        door.wait(handle, widget)


def sweep_exit_status(result, args) -> int:
    """2: the dry run found problems in the data; 1: the experiment ended (completed or timed out) with no child
    that finished with a model, or its driver failed (or the resumed run failed); else 0 (also while it still
    runs, and when the user stopped it)."""
    if isinstance(result, DryRun):
        return 0 if result.data_ok else 2
    if not isinstance(result, SweepStarted):
        return 1 if result.status == "failed" else 0
    if not _waits(args):  # detached, or in a notebook's background: how it ends is not known yet
        return 0
    state = result.handle.state
    if not state.finished or state.status == "stopped":  # still running, or ended as the user asked
        return 0
    if state.status == "failed":
        return 1
    return 0 if state.succeeded else 1


def sweep_failure(result, args) -> str:
    """The line that says why the exit status is not 0."""
    if isinstance(result, DryRun):
        return result.data_verdict()
    if not isinstance(result, SweepStarted):
        return f"run {result.run_id} failed" + (f": {result.error}" if result.error else "")
    state = result.handle.state
    if state.status == "failed":
        return f"experiment {state.name} failed" + (f": {state.error.splitlines()[0]}" if state.error else "")
    counts = ", ".join(f"{v} {k}" for k, v in sorted(state.counts().items())) or "no children"
    return f"experiment {state.name} ended ({state.status}) with no completed child ({counts})"


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
    """The best child (``best_text``), or why there is none."""
    stream = stream or sys.stdout
    try:
        best = handle.get_best_child()
    except NotFoundError as exc:
        print(str(exc), file=stream)
        return
    print(best_text(best), file=stream)


_SHOWN = dict(text=sweep_text, json=sweep_json, display=sweep_display, exit_status=sweep_exit_status,
              failure=sweep_failure)

VERBS = (
    Verb("sweep", "run a hyperparameter sweep (an experiment) in the background", run_sweep,
         description="Submit an experiment: run settings plus sweep settings (sampling, iterations, search_space, "
                     "early_termination_policy, limits...). A shell follows it (a leaderboard whenever something "
                     "changes; Ctrl-C stops following, not the sweep); a notebook shows its live dashboard and "
                     "returns (a %%avml cell takes the YAML itself). Exit status 1 when it ends with no completed "
                     "child, 2 when it is refused (or --dry-run finds problems in the data).",
         args=(arg("config", nargs="?", metavar="CONFIG", help="experiment YAML file"),
               arg("--name", metavar="NAME", help="experiment name (default: experiment_name in the YAML, else the "
                                                  "YAML file name and a counter)"),
               SET_ARG, DRY_RUN_ARG,
               arg("--resume", metavar="NAME", help="resume an interrupted experiment (as `resume NAME`)"),
               DETACH_ARG, FOREGROUND_ARG, VAR_ARG),
         **_SHOWN),
    Verb("resume", "resume an interrupted experiment, or an interrupted training run", resume_verb,
         description="Resume experiment NAME (finished children are kept; the others run again from their last "
                     "checkpoint) and follow it as `sweep` does; or continue training run NAME (a run id, or a "
                     "unique prefix of 6+ characters) from its last epoch checkpoint, in the foreground.",
         args=(arg("name", metavar="NAME", help="an experiment, or a run id"), DETACH_ARG, FOREGROUND_ARG, VAR_ARG),
         **_SHOWN),
)


def register(subparsers) -> None:
    """Add every experiment verb to an ``avml`` subparsers (as ``cli/main.py`` does)."""
    from jupyter_avml.cli.experiments import VERBS as EXPERIMENT_VERBS

    add_verbs(subparsers, (*VERBS, *EXPERIMENT_VERBS), SHELL, {})
