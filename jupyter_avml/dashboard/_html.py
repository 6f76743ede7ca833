"""HTML for the dashboard: pure functions of a ``Snapshot`` (and a ``RunReport``) to strings.

The live widget and the static fallback draw with the same functions, so a saved notebook shows what the
widget showed. Styles are inline (an exported or untrusted notebook drops ``<style>`` blocks); CSS classes
and ``data-*`` attributes name the parts for tests and for the browser test (``avml-row``,
``data-status``...).
"""

from __future__ import annotations

import base64
import math
from html import escape
from typing import Any

from jupyter_avml.dashboard._model import ChildRow, Snapshot, format_duration, format_metric, format_value

STATUS_COLORS = {
    "queued": "#9e9e9e",
    "running": "#1e88e5",
    "completed": "#2e7d32",
    "early_terminated": "#ef6c00",
    "stopped": "#616161",
    "timed_out": "#6d4c41",
    "failed": "#c62828",
    "invalid": "#6a1b9a",
    "interrupted": "#ad1457",
}
STATUS_LABELS = {"early_terminated": "early terminated", "timed_out": "timed out"}
# matplotlib's tab10, so the chart and the report images agree on colours.
SERIES_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf")
NOTE_CHARS = 160

_TABLE = "border-collapse:collapse;font-size:12px;font-family:var(--jp-ui-font-family,sans-serif);"
_CELL = "padding:3px 8px;border-bottom:1px solid #e0e0e0;text-align:left;vertical-align:top;"
_HEAD = _CELL + "font-weight:600;border-bottom:2px solid #bdbdbd;"


def series_color(child_id: int) -> str:
    return SERIES_COLORS[child_id % len(SERIES_COLORS)]


def status_badge(status: str, title: str | None = None) -> str:
    color = STATUS_COLORS.get(status, "#757575")
    label = STATUS_LABELS.get(status, status)
    tip = f' title="{escape(title)}"' if title else ""
    return (f'<span class="avml-status" data-status="{escape(status)}"{tip} style="display:inline-block;'
            f'padding:1px 7px;border-radius:9px;background:{color};color:white;font-size:11px;'
            f'white-space:nowrap;">{escape(label)}</span>')


def _bar(fraction: float, color: str, width: int = 110) -> str:
    pct = round(100 * min(1.0, max(0.0, fraction)), 1)
    return (f'<div class="avml-bar" data-fraction="{fraction:.3f}" style="display:inline-block;width:{width}px;'
            f'height:8px;background:#eeeeee;border-radius:4px;vertical-align:middle;overflow:hidden;">'
            f'<div style="width:{pct}%;height:100%;background:{color};"></div></div>')


# -- header -------------------------------------------------------------------------------------------------
def header_html(snap: Snapshot) -> str:
    budget = f" / {format_duration(snap.budget)} budget" if snap.budget else ""
    counts = ", ".join(f"{n} {STATUS_LABELS.get(s, s)}" for s, n in snap.counts) or "no children yet"
    note = ""
    if snap.note:
        note = (f'<div class="avml-note" style="color:#555;font-size:12px;margin-top:2px;">'
                f'{escape(_short(snap.note, 400))}</div>')
    fraction = snap.done / snap.iterations if snap.iterations else 0.0
    return (
        f'<div class="avml-header" data-name="{escape(snap.name)}" data-status="{escape(snap.status)}" '
        f'data-done="{snap.done}" data-iterations="{snap.iterations}" '
        f'style="font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;margin:2px 0 6px 0;">'
        f'<span style="font-size:15px;font-weight:600;">{escape(snap.name)}</span>'
        f'&nbsp; <span style="color:#555;">{escape(snap.task)}</span> &nbsp;{status_badge(snap.status)}'
        f'<div style="margin-top:4px;">{_bar(fraction, "#2e7d32", 160)} '
        f'<span class="avml-progress">{snap.done} / {snap.iterations} children done</span>'
        f' &nbsp;·&nbsp; <span class="avml-time">{format_duration(snap.elapsed)}{budget}</span>'
        f' &nbsp;·&nbsp; <span style="color:#555;">{escape(counts)}</span></div>{note}</div>')


# -- leaderboard ----------------------------------------------------------------------------------------------
def leaderboard_html(snap: Snapshot) -> str:
    metric = escape(snap.primary_metric)
    head = "".join(f'<th style="{_HEAD}">{h}</th>' for h in
                   ("#", "child", "model", "parameters", "status", "epochs", metric, f"best {metric}"))
    body = "".join(_row_html(rank, row) for rank, row in enumerate(snap.rows, start=1))
    if not snap.rows:
        body = f'<tr><td colspan="8" style="{_CELL}color:#757575;">no child has been queued yet</td></tr>'
    return (f'<table class="avml-leaderboard" data-rows="{len(snap.rows)}" style="{_TABLE}">'
            f'<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def _row_html(rank: int, row: ChildRow) -> str:
    style = "background:#fff8e1;font-weight:600;" if row.is_best else ""
    classes = f"avml-row avml-status-{row.status}" + (" avml-best" if row.is_best else "")
    params = ", ".join(f"{k}={format_value(v)}" for k, v in row.params) or "defaults"
    why = ""
    if row.why:  # AutoMode: why this configuration was chosen (the full text in the tooltip)
        why = (f'<div class="avml-row-why" title="{escape(row.why)}" style="font-weight:normal;color:#555;'
               f'font-size:11px;">chosen: {escape(_short(row.why, NOTE_CHARS))}</div>')
    note = ""
    if row.note:
        note = (f'<div class="avml-row-note" style="font-weight:normal;color:#555;font-size:11px;max-width:320px;">'
                f'{escape(_short(row.note, NOTE_CHARS))}</div>')
    epochs = f"{row.epoch}/{row.number_of_epochs}" if row.number_of_epochs else str(row.epoch)
    best = format_metric(row.best)
    if row.best is not None and row.best_epoch is not None:
        best += f' <span style="color:#757575;font-weight:normal;">(epoch {row.best_epoch})</span>'
    star = " ★" if row.is_best else ""
    return (f'<tr class="{classes}" data-child="{row.id}" data-status="{escape(row.status)}" '
            f'data-epoch="{row.epoch}" data-best="{"" if row.best is None else f"{row.best:.6g}"}" style="{style}">'
            f'<td style="{_CELL}">{rank}</td><td style="{_CELL}">{row.id}{star}</td>'
            f'<td style="{_CELL}">{escape(row.model_name)}</td>'
            f'<td style="{_CELL}max-width:300px;">{escape(params)}{why}</td>'
            f'<td style="{_CELL}">{status_badge(row.status, row.note)}{note}</td>'
            f'<td style="{_CELL}white-space:nowrap;">'
            f'{_bar(row.fraction, STATUS_COLORS.get(row.status, "#757575"))} {epochs}</td>'
            f'<td style="{_CELL}">{format_metric(row.current)}</td><td style="{_CELL}">{best}</td></tr>')


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


# -- live chart (SVG) ---------------------------------------------------------------------------------------
def chart_svg(snap: Snapshot, width: int = 560, height: int = 250) -> str:
    """The primary metric per epoch of every child; a child cut short ends in a cross on a dashed line."""
    left, right, top, bottom = 48, 120, 22, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    series = [row for row in sorted(snap.rows, key=lambda r: r.id) if row.history]
    values = [v for row in series for _, v in row.history]
    low, high = y_range(values)
    max_epoch = snap.max_epochs

    def x(epoch: float) -> float:
        return left + (plot_w * (epoch - 1) / (max_epoch - 1) if max_epoch > 1 else plot_w / 2)

    def y(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    parts = [f'<svg class="avml-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" data-series="{len(series)}" '
             f'style="font-family:sans-serif;font-size:10px;background:white;">',
             f'<text x="{left}" y="13" font-size="12" font-weight="600">'
             f'Validation {escape(snap.primary_metric)} per epoch</text>',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#bdbdbd"/>']
    for k in range(5):
        value = low + (high - low) * k / 4
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                     f'stroke="#eeeeee"/><text x="{left - 4}" y="{y(value) + 3:.1f}" text-anchor="end">'
                     f'{value:.2f}</text>')
    for epoch in _epoch_ticks(max_epoch):
        parts.append(f'<text x="{x(epoch):.1f}" y="{top + plot_h + 13}" text-anchor="middle">{epoch}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">epoch</text>')
    if not series:
        parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
                     f'fill="#757575">no epoch evaluated yet</text>')
    for index, row in enumerate(series):
        color = series_color(row.id)
        points = " ".join(f"{x(e):.1f},{y(v):.1f}" for e, v in row.history)
        dash = ' stroke-dasharray="4 3"' if row.cut_short else ""
        parts.append(f'<polyline class="avml-series" data-child="{row.id}" data-cut="{str(row.cut_short).lower()}" '
                     f'points="{points}" fill="none" stroke="{color}" stroke-width="{2.5 if row.is_best else 1.6}"'
                     f'{dash}/>')
        for e, v in row.history:
            parts.append(f'<circle cx="{x(e):.1f}" cy="{y(v):.1f}" r="2.2" fill="{color}"/>')
        if row.cut_short:
            ex, ey = x(row.history[-1][0]), y(row.history[-1][1])
            parts.append(f'<path class="avml-cut" d="M{ex - 5:.1f},{ey - 5:.1f}L{ex + 5:.1f},{ey + 5:.1f}'
                         f'M{ex - 5:.1f},{ey + 5:.1f}L{ex + 5:.1f},{ey - 5:.1f}" stroke="{color}" stroke-width="2"/>')
        ly = top + 4 + 13 * index
        if ly < height - 10:
            label = f"child {row.id}" + (" (cut)" if row.cut_short else "") + (" ★" if row.is_best else "")
            parts.append(f'<line x1="{left + plot_w + 10}" x2="{left + plot_w + 26}" y1="{ly}" y2="{ly}" '
                         f'stroke="{color}" stroke-width="2"{dash}/><text x="{left + plot_w + 30}" y="{ly + 3}">'
                         f'{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def y_range(values: list[float]) -> tuple[float, float]:
    """The chart's value axis: the values' range rounded out to tenths (metrics live in [0, 1])."""
    if not values:
        return 0.0, 1.0
    low = math.floor(min(values) * 10 + 1e-9) / 10
    high = math.ceil(max(values) * 10 - 1e-9) / 10
    if high - low < 0.1 - 1e-9:  # one value on a tenth: give it room on both sides
        low, high = low - 0.05, high + 0.05
    if 0.0 <= min(values) and max(values) <= 1.0:  # keep inside [0, 1], sliding rather than shrinking
        width = high - low
        low, high = max(0.0, min(low, 1.0 - width)), min(1.0, max(high, width))
    return low, high


def _epoch_ticks(max_epoch: int) -> list[int]:
    step = max(1, -(-max_epoch // 10))
    ticks = list(range(1, max_epoch + 1, step))
    if ticks[-1] != max_epoch:
        ticks.append(max_epoch)
    return ticks


# -- details of one child -------------------------------------------------------------------------------------
def per_class_html(per_class: dict[str, dict[str, Any]]) -> str:
    if not per_class:
        return ""
    columns: list[str] = []
    for metrics in per_class.values():
        for key in metrics:
            if key not in columns:
                columns.append(key)
    head = f'<th style="{_HEAD}">class</th>' + "".join(f'<th style="{_HEAD}">{escape(c)}</th>' for c in columns)
    rows = []
    for name, metrics in per_class.items():
        cells = "".join(f'<td style="{_CELL}">{_num(metrics.get(c))}</td>' for c in columns)
        rows.append(f'<tr data-class="{escape(name)}"><td style="{_CELL}">{escape(name)}</td>{cells}</tr>')
    return (f'<table class="avml-per-class" style="{_TABLE}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return str(int(value))
    return format_value(value)


def details_title_html(row: ChildRow, metric: str, report=None) -> str:
    parts = [f"Child {row.id}", escape(row.model_name), status_badge(row.status, row.note)]
    if row.best is not None:
        best = f"best {escape(metric)} {format_metric(row.best)}"
        if row.best_epoch is not None:
            best += f" at epoch {row.best_epoch}"
        parts.append(best)
    title = " · ".join(parts)
    params = ", ".join(f"{k}={format_value(v)}" for k, v in row.params)
    extra = f'<div style="color:#555;font-size:12px;">{escape(params)}</div>' if params else ""
    if row.note:
        extra += f'<div style="color:#555;font-size:12px;">{escape(_short(row.note, 600))}</div>'
    if report is None and row.finished:
        extra += ('<div style="color:#757575;font-size:12px;">this child left no report '
                  '(no outputs/metrics.json)</div>')
    elif report is None:
        extra += ('<div style="color:#757575;font-size:12px;">the confusion matrix, PR and ROC curves and per-class '
                  'metrics appear when this child finishes</div>')
    return (f'<div class="avml-details-title" data-child="{row.id}" '
            f'style="font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;margin-top:8px;">'
            f'<b>{title}</b>{extra}</div>')


def png_img(name: str, png: bytes, width: int | None = None) -> str:
    data = base64.b64encode(png).decode("ascii")
    size = f' width="{width}"' if width else ""
    return (f'<img class="avml-{name.replace("_", "-")}" alt="{escape(name.replace("_", " "))}"{size} '
            f'src="data:image/png;base64,{data}" style="margin:4px;vertical-align:top;"/>')
