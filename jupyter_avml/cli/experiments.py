"""The experiment verbs: ``list``, ``status``, ``stop``, ``best``, ``register`` (both doors), ``attach`` (notebook).

Each reads the experiment through ``cli/records.py`` (a damaged ``state.json`` is one clear line) and shows
one text in both doors; a notebook adds rich displays (an HTML table, the static summary, the dashboard).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from jupyter_avml.cli.records import (
    DAMAGED,
    ExperimentRow,
    experiment_rows,
    experiment_status,
    open_experiment,
    resume_hint,
)
from jupyter_avml.cli.table import NOTEBOOK, Verb, arg
from jupyter_avml.workspace import Workspace

NAME_ARG = arg("name", metavar="NAME", help="the experiment's name")
VAR_ARG = arg("--var", default=None, metavar="VAR", doors={NOTEBOOK},
              help="put the experiment's handle in the Python variable VAR")


def _command(door) -> str:
    return getattr(door, "command", "avml")


# -- list ----------------------------------------------------------------------------------------------------
class ExperimentList:
    """The experiments of a workspace: text in a shell, an HTML table in a notebook (damaged ones included)."""

    def __init__(self, workspace: Path, rows: list[ExperimentRow]):
        self.workspace = Path(workspace)
        self.experiments = rows

    @classmethod
    def scan(cls, workspace, command: str = "avml") -> ExperimentList:
        ws = Workspace.resolve(workspace)
        return cls(ws.root, experiment_rows(ws, command))

    def rows(self) -> list[tuple[str, ...]]:
        out = []
        for row in self.experiments:
            state = row.state
            if state is None:
                out.append((row.name, "-", DAMAGED, "-", "-", "-"))
                continue
            done = sum(1 for c in state.children if c.finished)
            best = None
            if state.best_child is not None:
                best = next((c.best_value for c in state.children if c.id == state.best_child), None)
            created = time.strftime("%Y-%m-%d %H:%M", time.localtime(state.created)) if state.created else "-"
            out.append((state.name, state.task, row.status, f"{done}/{state.iterations}",
                        f"{state.primary_metric} {best:.4f}" if best is not None else "-", created))
        return out

    def __repr__(self) -> str:
        if not self.experiments:
            return f"no experiment in {self.workspace} yet"
        head = ("name", "task", "status", "children", "best", "created")
        rows = [head, *self.rows()]
        widths = [max(len(r[k]) for r in rows) for k in range(len(head))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines += [f"  {row.name}: {row.problem}" for row in self.experiments if row.problem]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self.experiments:
            return f"<div class=\"avml-list\">no experiment in {escape(str(self.workspace))} yet</div>"
        cell = "padding:2px 8px;border-bottom:1px solid #eee;text-align:left;"
        head = "".join(f'<th style="{cell}">{h}</th>' for h in ("name", "task", "status", "children", "best",
                                                                "created"))
        body = ""
        for row, values in zip(self.experiments, self.rows(), strict=True):
            title = f' title="{escape(row.problem)}"' if row.problem else ""
            body += (f'<tr data-name="{escape(values[0])}" data-status="{escape(values[2])}"{title}>'
                     + "".join(f'<td style="{cell}">{escape(v)}</td>' for v in values) + "</tr>")
        notes = "".join(f"<div>{escape(row.name)}: {escape(row.problem)}</div>" for row in self.experiments
                        if row.problem)
        return f'<table class="avml-list" style="font-size:12px;"><tr>{head}</tr>{body}</table>{notes}'

    def to_json(self) -> list[dict[str, Any]]:
        return [row.to_dict() for row in self.experiments]


def list_verb(args, door=None) -> ExperimentList:
    return ExperimentList.scan(args.workspace, _command(door))


def _print(obj, args, door) -> None:
    print(repr(obj) if not isinstance(obj, str) else obj)


def _display(obj, args, door) -> None:
    door.display(obj)


# -- status --------------------------------------------------------------------------------------------------
@dataclass
class ExperimentStatus:
    handle: Any
    state: Any
    status: str
    command: str = "avml"

    def to_json(self) -> dict[str, Any]:
        return {**self.state.to_dict(), "status": self.status}

    def __repr__(self) -> str:
        from jupyter_avml.cli.sweep import leaderboard

        text = leaderboard(self.state, self.status, limit=1000)
        if self.status == "interrupted":
            text += f"\n  {resume_hint(self.state.name, self.command)}"
        return text


def status_verb(args, door=None):
    """One experiment's status (NAME, or the one the door has in mind), else the list of experiments."""
    ws = Workspace.resolve(args.workspace)
    name = args.name
    if name is None and door is not None:
        name, ws = door.current_experiment(ws, explicit=args.workspace is not None) or (None, ws)
    if name is None:
        return ExperimentList.scan(ws, _command(door))
    handle = open_experiment(name, ws, _command(door))
    return ExperimentStatus(handle, handle.state, experiment_status(handle), _command(door))


def status_display(result, args, door) -> None:
    """A notebook shows the list as a table, and an experiment as the dashboard's text summary."""
    if isinstance(result, ExperimentList):
        door.display(result)
        return
    import dataclasses

    from jupyter_avml.dashboard import DashboardSource, ExperimentFiles, text_summary

    handle = result.handle
    # The status (and its hint) is the one ``status_verb`` derived, not the dashboard's own guess.
    snap = DashboardSource(ExperimentFiles(handle.name, handle.workspace), alive=lambda: True).poll()
    if snap is None:
        print(repr(result))
        return
    note = resume_hint(handle.name, result.command) if result.status == "interrupted" else snap.note
    print(text_summary(dataclasses.replace(snap, status=result.status, note=note)))


# -- stop ----------------------------------------------------------------------------------------------------
@dataclass
class StopResult:
    name: str
    child: int | None
    requested: bool
    status: str  # of the experiment, or of the child when one was named

    def __repr__(self) -> str:
        if self.child is None:
            if self.requested:
                return f"asked experiment {self.name} to stop (its children stop after their current batch)"
            return f"experiment {self.name} has already ended ({self.status})"
        if self.requested:
            return f"asked child {self.child} of {self.name} to stop (after its current batch)"
        return f"child {self.child} of {self.name} has already ended ({self.status})"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "child": self.child, "stop_requested": self.requested, "status": self.status}


def stop_verb(args, door=None) -> StopResult:
    handle = open_experiment(args.name, args.workspace, _command(door))
    if args.child is None:
        requested = handle.stop(reason=args.reason)
        return StopResult(args.name, None, requested, handle.state.status)
    requested = handle.stop_child(args.child, reason=args.reason)  # an unknown child: NotFoundError
    return StopResult(args.name, args.child, requested, handle.state.child(args.child).status)


# -- best ----------------------------------------------------------------------------------------------------
def best_text(best) -> str:
    """The best child in a few lines (``avml best``, ``%avml best``, the end of ``avml sweep``)."""
    lines = [f"best child {best.child_id} ({best.model_name}, {best.status}): {best.primary_metric} "
             f"{best.primary_metric_value:.4f}", f"  run {best.run_id}"]
    if best.params:
        lines.append("  params: " + ", ".join(f"{k}={_short(v)}" for k, v in best.params.items()))
    lines.append(f"  model: {best.model_path}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def best_verb(args, door=None):
    handle = open_experiment(args.name, args.workspace, _command(door))
    return handle, handle.get_best_child()  # none yet: NotFoundError (exit status 2)


def best_display(result, args, door) -> None:
    from jupyter_avml.dashboard import static_summary

    handle, best = result
    print(best_text(best))
    door.display(static_summary(handle.name, handle.workspace.root, child=best.child_id))


# -- register ------------------------------------------------------------------------------------------------
@dataclass
class Registration:
    model_name: str
    version: int
    run_id: str
    experiment: str | None = None
    best: Any = None  # BestChild when an experiment's best child was registered

    def sentence(self) -> str:
        if self.best is not None:
            best = self.best
            return (f"{self.experiment}: registered the model of child {best.child_id} ({best.model_name}, "
                    f"{best.primary_metric} {best.primary_metric_value:.4f}) as {self.model_name} "
                    f"version {self.version}")
        return f"registered the model of run {self.run_id} as {self.model_name} version {self.version}"

    def to_json(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "version": self.version, "run_id": self.run_id,
                "experiment": self.experiment, "child": self.best.child_id if self.best is not None else None,
                "uri": f"models:/{self.model_name}/{self.version}"}


def register_verb(args, door=None) -> Registration:
    """Register the best child's model of experiment NAME, or the model of run NAME."""
    from jupyter_avml.cli.records import experiment_or_run

    kind, target = experiment_or_run(args.name, args.workspace, _command(door))
    if kind == "experiment":
        best = target.get_best_child()
        version = target.register_model(args.model_name)
        return Registration(args.model_name, version, best.run_id, target.name, best)
    from jupyter_avml.tracking.model_registry import register_run_model

    version = register_run_model(target, args.model_name, workspace=args.workspace)
    return Registration(args.model_name, version, target)


def register_text(result: Registration, args, door) -> None:
    """The sentence on stderr, the version number alone on stdout (``v=$(avml register ...)``)."""
    print(result.sentence(), file=sys.stderr)
    print(result.version)


# -- attach (notebook) ---------------------------------------------------------------------------------------
def attach_verb(args, door=None):
    return open_experiment(args.name, args.workspace, _command(door))


def attach_display(handle, args, door) -> None:
    door.remember(handle.name, handle.workspace.root)
    if args.var:
        door.bind(args.var, handle)
    door.show_dashboard(handle)


VERBS = (
    Verb("list", "the experiments of the workspace", list_verb, text=_print, display=_display,
         json=lambda result, args: result.to_json()),
    Verb("status", "an experiment's leaderboard, or every experiment", status_verb,
         description="One experiment's leaderboard (children best first). Without NAME: in a notebook, the "
                     "experiment last started or attached there; else every experiment (as `list`).",
         args=(arg("name", nargs="?", metavar="NAME", help="the experiment (default: see above)"),),
         text=_print, display=status_display, json=lambda result, args: result.to_json()),
    Verb("stop", "stop an experiment, or one of its children", stop_verb,
         description="Ask the experiment's driver to stop every child after its current batch (or only child "
                     "ID); the experiment ends as stopped. Returns at once.",
         args=(NAME_ARG, arg("--child", type=int, default=None, metavar="ID", help="stop only this child"),
               arg("--reason", default="stopped by user", metavar="TEXT",
                   help="recorded as the reason (default: stopped by user)")),
         text=_print, json=lambda result, args: result.to_json()),
    Verb("best", "the best child of an experiment: metrics, model file", best_verb,
         description="The child with the best primary metric among those that finished with a model; a "
                     "notebook also shows its confusion matrix and curves.",
         args=(NAME_ARG,), text=lambda result, args, door: print(best_text(result[1])), display=best_display,
         json=lambda result, args: result[1].to_dict()),
    Verb("register", "register a model in the MLflow Model Registry (an experiment's best child, or a run)",
         register_verb,
         description="Register the model of NAME as the next version of MODEL_NAME: NAME is an experiment (its "
                     "best child's model) or a run id (a unique prefix of 6+ characters is enough). The shell "
                     "prints the version number alone on stdout (and the sentence on stderr).",
         args=(arg("name", metavar="NAME", help="an experiment (its best child) or a run id"),
               arg("model_name", metavar="MODEL_NAME", help="the registered model's name")),
         text=register_text, display=lambda result, args, door: print(result.sentence()),
         json=lambda result, args: result.to_json()),
    Verb("attach", "rebuild the live dashboard of an experiment (after a kernel restart too)", attach_verb,
         args=(NAME_ARG, VAR_ARG), display=attach_display, doors=frozenset({NOTEBOOK}),
         only_because="it draws the live dashboard and binds the handle to a variable, which a shell has not; "
                      "there, `avml status NAME` shows the leaderboard"),
)
