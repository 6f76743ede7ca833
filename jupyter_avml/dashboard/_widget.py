"""The ipywidgets view: renders ``Snapshot`` objects, handles the two controls, nothing else.

Stock widgets only (HTML, Image, Dropdown, Button): the leaderboard and the live chart are HTML/SVG strings
from ``_html``, the report images are the PNG files the child runs wrote. Every part carries a stable CSS
class (``avml-dashboard``, ``avml-leaderboard``, ``avml-chart``, ``avml-confusion-matrix``...).

Threads: ``render`` runs in the updater thread and in the main thread (first draw, a child chosen in the
dropdown, a button); a lock keeps two renders from interleaving. Nothing here calls ``display()``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import ipywidgets as widgets

from jupyter_avml.dashboard._files import REPORT_IMAGES, RunReport
from jupyter_avml.dashboard._html import chart_svg, details_title_html, header_html, leaderboard_html, per_class_html
from jupyter_avml.dashboard._model import ChildRow, Snapshot, format_metric
from jupyter_avml.dashboard._static import static_html, text_summary
from jupyter_avml.sweep.state import CHILD_TERMINAL


class Controller(Protocol):
    """What the controls call: an ``ExperimentHandle`` (``sweep.experiment``) does this."""

    def stop(self) -> Any: ...

    def stop_child(self, child_id: int) -> Any: ...


class DashboardWidget(widgets.VBox):
    """The live dashboard of one experiment.

    Parameters
    ----------
    report_loader : run id -> ``RunReport`` of that finished run (or None).
    controller : receives stop requests; None hides the controls.
    reviewer : ``reviewer(child_id)`` opens that child in the FiftyOne App, displaying into ``review_output``
        (``qa.app.dashboard_reviewer``); None hides the "Review in FiftyOne" button.
    """

    def __init__(self, *, report_loader: Callable[[str], RunReport | None], controller: Controller | None = None,
                 reviewer: Callable[[int], Any] | None = None, **kwargs: Any):
        self._lock = threading.RLock()
        self._report_loader = report_loader
        self._reports: dict[str, RunReport | None] = {}
        self.controller = controller
        self.reviewer = reviewer
        self.snapshot: Snapshot | None = None
        self.updater = None                   # set by make_dashboard; stopped by close()
        self._keys: dict[str, Any] = {}       # part -> what it was last drawn from
        self._chosen: int | None = None       # the child whose details show (None: the best, once finished)
        self._rendering = False

        self.header = widgets.HTML(value="")
        self.leaderboard = widgets.HTML(value="")
        self.chart = widgets.HTML(value="")
        self.child_select = widgets.Dropdown(options=[], value=None, description="child",
                                             layout=widgets.Layout(width="340px"))
        self.stop_child_button = widgets.Button(description="Stop child", icon="stop", button_style="warning",
                                                tooltip="stop the chosen child (it ends after its current batch)")
        self.stop_button = widgets.Button(description="Stop experiment", icon="stop-circle", button_style="danger",
                                          tooltip="stop every child and end the experiment")
        self.review_button = widgets.Button(description="Review in FiftyOne", icon="eye",
                                            tooltip="the chosen child's predictions on its data, in the FiftyOne App "
                                                    "(opens below; predictions run in the background)")
        self.review_output = widgets.Output()
        self.message = widgets.HTML(value="")
        self.details_title = widgets.HTML(value="")
        # The run's PNGs are 500 px wide or so: four side by side, wrapping on narrow screens.
        self.images = {name: widgets.Image(format="png", layout=widgets.Layout(width="320px", height="auto",
                                                                                 display="none"))
                       for name in REPORT_IMAGES}
        self.per_class = widgets.HTML(value="")
        for part, name in ((self.header, "header"), (self.leaderboard, "leaderboard"), (self.chart, "chart"),
                           (self.child_select, "child-select"), (self.stop_child_button, "stop-child"),
                           (self.stop_button, "stop-experiment"), (self.review_button, "review"),
                           (self.review_output, "review-output"), (self.message, "message"),
                           (self.details_title, "details-title"), (self.per_class, "per-class")):
            part.add_class(f"avml-{name}")
        for name, image in self.images.items():
            image.add_class(f"avml-{name.replace('_', '-')}")
        self.controls = widgets.HBox([self.child_select, self.stop_child_button, self.stop_button, self.review_button,
                                      self.message])
        self.controls.add_class("avml-controls")
        self.details = widgets.VBox([self.details_title,
                                     widgets.HBox(list(self.images.values()),
                                                  layout=widgets.Layout(flex_flow="row wrap")),
                                     self.per_class])
        self.details.add_class("avml-details")
        if controller is None:
            self.stop_child_button.layout.display = "none"
            self.stop_button.layout.display = "none"
        if reviewer is None:
            self.review_button.layout.display = "none"
        super().__init__([self.header, self.leaderboard, self.controls, self.review_output, self.chart, self.details],
                         **kwargs)
        self.add_class("avml-dashboard")
        self.child_select.observe(self._on_choose, names="value")
        self.stop_child_button.on_click(self._on_stop_child)
        self.stop_button.on_click(self._on_stop)
        self.review_button.on_click(self._on_review)

    # -- drawing -----------------------------------------------------------------------------------------
    def render(self, snap: Snapshot) -> None:
        """Draw ``snap``: only the parts whose data changed (one state message per changed part)."""
        with self._lock:
            self._rendering = True
            try:
                self._render(snap)
            finally:
                self._rendering = False

    def _render(self, snap: Snapshot) -> None:
        self.snapshot = snap
        header_key = (snap.name, snap.task, snap.status, snap.note, snap.done, snap.iterations, snap.elapsed,
                      snap.budget, snap.counts)
        if self._changed("header", header_key):
            self.header.value = header_html(snap)
        if self._changed("leaderboard", (snap.primary_metric, snap.rows)):
            self.leaderboard.value = leaderboard_html(snap)
        chart_key = (snap.primary_metric, snap.max_epochs,
                     tuple((r.id, r.history, r.cut_short, r.is_best) for r in snap.rows))
        if self._changed("chart", chart_key):
            self.chart.value = chart_svg(snap)
        options = [(_option_label(row), row.id) for row in sorted(snap.rows, key=lambda r: r.id)]
        if self._changed("options", tuple(options)):
            with self.child_select.hold_sync():
                value = self.child_select.value
                self.child_select.options = options
                self.child_select.value = value if value in {v for _, v in options} else None
        if snap.finished and self._chosen is None and snap.best_child is not None:
            self._chosen = snap.best_child
            self.child_select.value = snap.best_child
        self._render_controls(snap)
        self._render_details(snap)

    def _render_controls(self, snap: Snapshot) -> None:
        chosen = self._row(self._chosen)
        key = (snap.finished, None if chosen is None else chosen.status)
        if not self._changed("controls", key):
            return
        self.stop_button.disabled = snap.finished
        self.stop_child_button.disabled = snap.finished or chosen is None or chosen.status in CHILD_TERMINAL
        self.review_button.disabled = chosen is None or not chosen.finished or not chosen.run_id
        if snap.finished and self.message.value.startswith("<span class=\"avml-pending\""):
            self.message.value = ""

    def _render_details(self, snap: Snapshot) -> None:
        row = self._row(self._chosen)
        report = self._report(row) if row is not None else None
        key = (row, report is not None)
        if not self._changed("details", key):
            return
        if row is None:
            self.details_title.value = _hint(snap)
            self.per_class.value = ""
            for image in self.images.values():
                image.layout.display = "none"
            return
        self.details_title.value = details_title_html(row, snap.primary_metric, report)
        self.per_class.value = per_class_html(report.per_class) if report is not None else ""
        for name, image in self.images.items():
            png = report.images.get(name) if report is not None else None
            if png:
                image.value = png
                image.layout.display = ""
            else:
                image.layout.display = "none"

    def _row(self, child_id: int | None) -> ChildRow | None:
        if child_id is None or self.snapshot is None:
            return None
        try:
            return self.snapshot.row(child_id)
        except KeyError:
            return None

    def _report(self, row: ChildRow) -> RunReport | None:
        if not row.finished or not row.run_id:
            return None
        if row.run_id not in self._reports:
            self._reports[row.run_id] = self._report_loader(row.run_id)
        return self._reports[row.run_id]

    def _changed(self, part: str, key: Any) -> bool:
        if part in self._keys and self._keys[part] == key:
            return False
        self._keys[part] = key
        return True

    def show_error(self, exc: BaseException) -> None:
        self.message.value = (f'<span class="avml-error" style="color:#c62828;font-size:12px;">'
                              f'dashboard update failed: {_escape(type(exc).__name__)}: {_escape(str(exc))}</span>')

    # -- controls (these run in the kernel's main thread, where comm messages are handled) ------------------
    def _on_choose(self, change: dict) -> None:
        if self._rendering:  # the render that set it draws the details itself
            return
        with self._lock:
            self._chosen = change["new"]
            if self.snapshot is not None:
                self._render_controls(self.snapshot)
                self._render_details(self.snapshot)

    def _on_stop_child(self, _button: Any = None) -> None:
        child_id = self._chosen
        if self.controller is None or child_id is None:
            self._say("choose a child first")
            return
        try:
            self.controller.stop_child(child_id)
        except Exception as exc:  # an AvmlError says what went wrong; show it where the user clicked
            self._say(f"could not stop child {child_id}: {exc}", error=True)
            return
        self._say(f"child {child_id}: stop requested (it ends after its current batch)", pending=True)

    def _on_stop(self, _button: Any = None) -> None:
        if self.controller is None:
            return
        try:
            self.controller.stop()
        except Exception as exc:
            self._say(f"could not stop the experiment: {exc}", error=True)
            return
        self.stop_button.disabled = True
        self._say("stop requested: the children end after their current batch", pending=True)

    def _on_review(self, _button: Any = None) -> None:
        child_id = self._chosen
        if self.reviewer is None or child_id is None:
            self._say("choose a finished child first")
            return
        self.review_output.clear_output()
        failure = None
        with self.review_output:  # the App and the review's picture display here
            try:  # caught inside: with an IPython shell, Output would print the traceback and swallow it
                self.reviewer(child_id)
            except Exception as exc:  # an AvmlError says what to do; show it where the user clicked
                failure = exc
        if failure is not None:
            self._say(f"could not open child {child_id} in FiftyOne: {failure}", error=True)
            return
        self._say(f"child {child_id}: open in FiftyOne below")

    def _say(self, text: str, *, error: bool = False, pending: bool = False) -> None:
        css = "avml-error" if error else ("avml-pending" if pending else "avml-info")
        color = "#c62828" if error else "#555"
        self.message.value = f'<span class="{css}" style="color:{color};font-size:12px;">{_escape(text)}</span>'

    # -- life cycle and fallbacks --------------------------------------------------------------------------
    def close(self) -> None:
        """Close the widget and its parts; the updater thread ends at its next wake-up."""
        if self.updater is not None:
            self.updater.stop()
        for part in (self.header, self.leaderboard, self.chart, self.child_select, self.stop_child_button,
                     self.stop_button, self.review_button, self.review_output, self.message, self.details_title,
                     self.per_class, self.controls, self.details, *self.images.values()):
            part.close()
        super().close()

    def static_html(self) -> str:
        """The current picture as HTML with embedded PNGs (the chart as a PNG once it has a point)."""
        with self._lock:
            snap = self.snapshot
            if snap is None:
                return ""
            row = self._row(self._chosen)
            details = [(row, self._report(row))] if row is not None else []
            with_chart = any(r.history for r in snap.rows)
        # Before any epoch there is no curve to draw: leave matplotlib alone (the cell must return fast).
        return static_html(snap, details, chart="png" if with_chart else "svg")

    def _repr_mimebundle_(self, **kwargs: Any) -> dict | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None or self.snapshot is None:
            return bundle
        bundle = dict(bundle)
        bundle["text/html"] = self.static_html()
        bundle["text/plain"] = text_summary(self.snapshot)
        return bundle

    def __repr__(self) -> str:  # cheap: no file, no plot
        snap = self.snapshot
        if snap is None:
            return "DashboardWidget(no state yet)"
        return f"DashboardWidget({snap.name!r}, {snap.status}, {snap.done}/{snap.iterations} children done)"


def _option_label(row: ChildRow) -> str:
    best = f", best {format_metric(row.best)}" if row.best is not None else ""
    return f"{row.id}: {row.model_name} ({row.status.replace('_', ' ')}{best})"


def _hint(snap: Snapshot) -> str:
    if not snap.rows:
        return ""
    text = ("choose a child to see its confusion matrix, PR and ROC curves and per-class metrics"
            if not snap.finished else "no child reported a metric")
    return f'<div class="avml-details-hint" style="color:#757575;font-size:12px;margin-top:6px;">{text}</div>'


def _escape(text: str) -> str:
    from html import escape

    return escape(text)

