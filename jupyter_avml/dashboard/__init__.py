"""The experiment dashboard: a state model, its views, and the thread that keeps a view current.

* ``DashboardModel`` / ``Snapshot`` (``_model``): plain Python; folds experiment states and run events into
  what a view draws. Tests drive it with recorded sequences, no browser needed.
* ``ExperimentFiles`` / ``DashboardSource`` (``_files``): read the experiment's files in the workspace.
* ``DashboardWidget`` (``_widget``): the ipywidgets view. ``DashboardUpdater`` (``_updater``): the thread.
* ``static_html`` / ``StaticSummary`` (``_static``): the same picture as HTML with PNGs.

``open_dashboard(name)`` builds the whole thing for an experiment of the workspace. Importing this package
imports neither ipywidgets nor matplotlib: the widget module loads on first use.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from jupyter_avml.dashboard._files import DashboardSource, ExperimentFiles, RunReport
from jupyter_avml.dashboard._model import ChildRow, DashboardModel, Snapshot
from jupyter_avml.dashboard._static import StaticSummary, static_html, text_summary
from jupyter_avml.dashboard._updater import DashboardUpdater

__all__ = ["ChildRow", "DashboardModel", "DashboardSource", "DashboardUpdater", "DashboardWidget",
           "ExperimentFiles", "RunReport", "Snapshot", "StaticSummary", "open_dashboard", "static_html",
           "static_summary", "text_summary"]

#: Seconds between two polls of the experiment's files: at most about 2 widget updates per second.
UPDATE_INTERVAL = 0.5


def __getattr__(name: str) -> Any:
    if name == "DashboardWidget":
        return importlib.import_module("jupyter_avml.dashboard._widget").DashboardWidget
    raise AttributeError(f"module 'jupyter_avml.dashboard' has no attribute {name!r}")


def open_dashboard(name: str, workspace: str | os.PathLike | None = None, *, controller: Any = None,
                   interval: float = UPDATE_INTERVAL, start: bool = True):
    """A ``DashboardWidget`` for experiment ``name``, drawn from its current files.

    Unless the experiment is already over, an updater thread keeps it current until the experiment ends or
    the widget is closed. ``controller`` (an ``ExperimentHandle``) receives the stop buttons' requests; with one,
    the "Review in FiftyOne" button opens the chosen child in the FiftyOne App (``qa.app.dashboard_reviewer``).
    The experiment need not have written its state yet (a sweep just submitted): the widget fills in when
    it does.
    """
    from jupyter_avml.dashboard._widget import DashboardWidget
    from jupyter_avml.qa.app import dashboard_reviewer

    files = ExperimentFiles(name, workspace)
    source = DashboardSource(files)
    reviewer = dashboard_reviewer(name, files.workspace) if controller is not None else None
    widget = DashboardWidget(report_loader=files.run_report, controller=controller, reviewer=reviewer)
    snap = source.poll()
    if snap is not None:
        widget.render(snap)
    if start and (snap is None or not snap.finished):
        updater = DashboardUpdater(source.poll, widget.render, interval=interval, on_error=widget.show_error,
                                   name=f"avml-dashboard-{name}")
        updater.last = snap
        widget.updater = updater.start()
    return widget


def static_summary(name: str, workspace: str | os.PathLike | None = None, *,
                   child: int | None = None) -> StaticSummary:
    """The experiment's summary as static HTML/PNG, with the report of ``child`` (default: the best)."""
    from jupyter_avml.errors import NotFoundError

    files = ExperimentFiles(name, workspace)
    snap = DashboardSource(files).poll()
    if snap is None:
        raise NotFoundError(f"no experiment {name!r} in {files.workspace.root} (no {files.folder / 'state.json'})")
    chosen = snap.best_child if child is None else child
    details = []
    if chosen is not None:
        try:
            row = snap.row(chosen)
        except KeyError:
            raise NotFoundError(f"experiment {name!r} has no child {chosen} "
                                f"(children: {', '.join(str(r.id) for r in snap.rows) or 'none'})") from None
        details.append((row, files.run_report(row.run_id) if row.run_id and row.finished else None))
    return StaticSummary(snap, details)
