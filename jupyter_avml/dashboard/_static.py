"""The static fallback: the dashboard as plain HTML with PNG images, for saved and exported notebooks.

A live widget needs a kernel (or saved widget state) to draw; this HTML needs nothing. The widget puts it
in its display bundle as ``text/html`` (see ``DashboardWidget._repr_mimebundle_``), and ``%avml attach`` /
``%avml best`` of a finished experiment show it directly. Built in the kernel's main thread only (the
chart uses matplotlib's object API, never pyplot, so it touches no global figure state either way).
"""

from __future__ import annotations

import io
from html import escape

from jupyter_avml.dashboard._files import REPORT_IMAGES, RunReport
from jupyter_avml.dashboard._html import (
    chart_svg,
    details_title_html,
    header_html,
    leaderboard_html,
    per_class_html,
    png_img,
    series_color,
)
from jupyter_avml.dashboard._model import ChildRow, Snapshot


def chart_png(snap: Snapshot) -> bytes:
    """The live chart (primary metric per epoch for every child) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.2, 3.0), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = 0
    for row in sorted(snap.rows, key=lambda r: r.id):
        if not row.history:
            continue
        epochs = [e for e, _ in row.history]
        values = [v for _, v in row.history]
        label = f"child {row.id}" + (" (cut)" if row.cut_short else "") + (" ★" if row.is_best else "")
        ax.plot(epochs, values, marker="o", markersize=3, color=series_color(row.id),
                linestyle="--" if row.cut_short else "-", linewidth=2.4 if row.is_best else 1.5, label=label)
        if row.cut_short:
            ax.plot(epochs[-1:], values[-1:], marker="x", markersize=9, markeredgewidth=2,
                    color=series_color(row.id))
        drawn += 1
    ax.set(xlabel="epoch", ylabel=snap.primary_metric, title=f"Validation {snap.primary_metric} per epoch")
    ax.set_xlim(0.8, max(2, snap.max_epochs) + 0.2)
    if drawn:
        ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.text(0.5, 0.5, "no epoch evaluated yet", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def details_html(row: ChildRow, primary_metric: str, report: RunReport | None) -> str:
    """A child's report: title, curves, confusion matrix, PR and ROC curves, per-class metrics."""
    parts = [details_title_html(row, primary_metric, report)]
    if report is not None:
        images = "".join(png_img(name, report.images[name], width=320) for name in REPORT_IMAGES
                         if name in report.images)
        if images:
            parts.append(f'<div class="avml-report-images">{images}</div>')
        parts.append(per_class_html(report.per_class))
    return f'<div class="avml-details" data-child="{row.id}">{"".join(parts)}</div>'


def static_html(snap: Snapshot, details: list[tuple[ChildRow, RunReport | None]] = (), *,
                chart: str = "png") -> str:
    """The whole dashboard as one HTML fragment (chart as an embedded PNG, or ``chart="svg"``)."""
    if chart == "png":
        chart_part = png_img("chart", chart_png(snap))
    else:
        chart_part = chart_svg(snap)
    body = [header_html(snap), leaderboard_html(snap), f'<div style="margin-top:6px;">{chart_part}</div>']
    body.extend(details_html(row, snap.primary_metric, report) for row, report in details)
    return (f'<div class="avml-static" data-name="{escape(snap.name)}" data-status="{escape(snap.status)}">'
            f'{"".join(body)}</div>')


class StaticSummary:
    """A finished (or any) experiment's summary for ``display()``: HTML with PNGs, and plain text."""

    def __init__(self, snap: Snapshot, details: list[tuple[ChildRow, RunReport | None]] = ()):
        self.snapshot = snap
        self.details = list(details)

    def _repr_html_(self) -> str:
        return static_html(self.snapshot, self.details)

    def __repr__(self) -> str:
        return text_summary(self.snapshot)


def text_summary(snap: Snapshot) -> str:
    """The leaderboard as text (``%avml status``, and the ``text/plain`` of every bundle)."""
    from jupyter_avml.dashboard._model import format_duration, format_metric, format_value

    budget = f" / {format_duration(snap.budget)}" if snap.budget else ""
    lines = [f"{snap.name}: {snap.task}, {snap.status}, {snap.done}/{snap.iterations} children done, "
             f"{format_duration(snap.elapsed)}{budget}"]
    if snap.note:
        lines.append(f"  {snap.note}")
    if snap.rows:
        header = f"  {'child':>5}  {'model':<24} {'status':<17} {'epochs':>7}  {snap.primary_metric:>10}  best"
        lines.append(header)
    for row in snap.rows:
        epochs = f"{row.epoch}/{row.number_of_epochs}" if row.number_of_epochs else str(row.epoch)
        params = ", ".join(f"{k}={format_value(v)}" for k, v in row.params)
        best = format_metric(row.best) + (" *" if row.is_best else "")
        line = (f"  {row.id:>5}  {row.model_name[:24]:<24} {row.status:<17} {epochs:>7}  "
                f"{format_metric(row.current):>10}  {best}")
        if params:
            line += f"  [{params}]"
        if row.note:
            line += f"  ({row.note})"
        lines.append(line)
    return "\n".join(lines)
