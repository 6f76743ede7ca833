"""``%avml list``: the experiments of a workspace, read from their ``state.json`` files."""

from __future__ import annotations

import time
from html import escape
from pathlib import Path

from jupyter_avml.dashboard._model import format_metric
from jupyter_avml.sweep.state import ExperimentState


class ExperimentList:
    def __init__(self, workspace: Path, states: list[ExperimentState]):
        self.workspace = workspace
        self.states = states

    @classmethod
    def scan(cls, workspace: Path) -> ExperimentList:
        """Every experiment of ``workspace``, oldest first; an unfinished one whose driver is gone is
        listed as ``interrupted``."""
        from jupyter_avml.sweep.experiment import driver_alive, list_experiments

        states = list_experiments(workspace)
        for state in states:
            if not state.finished and not driver_alive(state.name, workspace):
                state.status = "interrupted"
        return cls(Path(workspace), states)

    def rows(self) -> list[tuple[str, ...]]:
        out = []
        for s in self.states:
            done = sum(1 for c in s.children if c.finished)
            best = None
            if s.best_child is not None:
                try:
                    best = s.child(s.best_child).best_value
                except KeyError:
                    best = None
            created = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created)) if s.created else "–"
            out.append((s.name, s.task, s.status, f"{done}/{s.iterations}",
                        f"{s.primary_metric} {format_metric(best)}" if best is not None else "–", created))
        return out

    def __repr__(self) -> str:
        if not self.states:
            return f"no experiment in {self.workspace}"
        head = ("name", "task", "status", "children", "best", "created")
        rows = [head, *self.rows()]
        widths = [max(len(r[k]) for r in rows) for k in range(len(head))]
        return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)

    def _repr_html_(self) -> str:
        if not self.states:
            return f"<div class=\"avml-list\">no experiment in {escape(str(self.workspace))}</div>"
        cell = "padding:2px 8px;border-bottom:1px solid #eee;text-align:left;"
        head = "".join(f'<th style="{cell}">{h}</th>' for h in ("name", "task", "status", "children", "best",
                                                                "created"))
        body = "".join(f'<tr data-name="{escape(r[0])}" data-status="{escape(r[2])}">'
                       + "".join(f'<td style="{cell}">{escape(v)}</td>' for v in r) + "</tr>" for r in self.rows())
        return f'<table class="avml-list" style="font-size:12px;"><tr>{head}</tr>{body}</table>'
