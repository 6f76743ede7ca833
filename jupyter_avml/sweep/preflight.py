"""Checks made before a sweep starts its first child: what would otherwise fail in every child, one by one.

* ``search_range_problem``: a searched parameter whose expression can only give values the parameter table
  (``config.params.PARAMS``) refuses: ``learning_rate: uniform(2, 5)`` (``learning_rate`` is a float in
  [0, 1]), ``choice(2.0, 3.0)``, ``number_of_epochs: uniform(1, 5)`` (an integer setting, fractional
  values). A range that is only partly outside is accepted: the values outside become ``invalid``
  children, as any refused combination does. ``sweep.config`` calls it for every searched parameter, so
  the message carries the YAML file and line.
* ``check_data``: the training (and validation) JSONL exists, parses, its rows fit the task (``data``
  validation, without decoding images) and their local image files exist, and a checkpoint to continue
  (``checkpoint_run_id``) knows its labels; called by ``Experiment.submit``.
"""

from __future__ import annotations

import math
import os
from typing import Any

from jupyter_avml.config.params import Param
from jupyter_avml.errors import DataError
from jupyter_avml.sweep.expressions import Distribution, LogUniform, QLogUniform

__all__ = ["search_range_problem", "check_data"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
MAX_PROBLEMS_SHOWN = 10


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _inside(param: Param, number: float) -> bool:
    if param.low is not None and (number < param.low or (param.low_open and number == param.low)):
        return False
    if param.high is not None and (number > param.high or (param.high_open and number == param.high)):
        return False
    return True


def accepts(param: Param, value: Any) -> bool:
    """Whether the parameter table lets ``param`` take ``value`` (its type, range or choices only: the
    combination with other settings is checked per child)."""
    if param.kind in ("int", "float"):
        number = _number(value)
        if number is None or math.isnan(number):
            return False
        if param.kind == "int" and not number.is_integer():
            return False
        return _inside(param, number)
    if param.kind == "bool01":
        if isinstance(value, (bool, int, float)):
            return value in (0, 1)
        return str(value).strip().lower() in _TRUE | _FALSE
    if param.kind == "choice":
        for option in param.choices:
            if isinstance(option, str):
                if isinstance(value, str) and value.strip().lower() == option:
                    return True
            elif _number(value) == option:
                return True
        return False
    return True  # strings, paths, grids...: no range in the table


def search_range_problem(param: Param, expression: Distribution) -> str | None:
    """Why no value of ``expression`` can be a value of ``param`` (None when some can)."""
    finite = expression.finite_values()
    if finite is not None:
        if any(accepts(param, value) for value in finite):
            return None
        return f"every value of {expression} is outside what {param.name} takes ({param.range_text()})"
    numeric = param.kind in ("int", "float", "bool01") or (
        param.kind == "choice" and all(not isinstance(c, str) for c in param.choices))
    if not numeric:
        return f"{param.name} takes {param.range_text()}, but {expression} gives numbers; use choice(...)"
    if param.kind != "float" and expression.gives_integers() is False:
        hint = f"quniform({expression.bounds()[0]:g}, {expression.bounds()[1]:g}, 1) or choice(...)" \
            if param.kind == "int" else "choice(...)"
        return f"{param.name} takes {param.range_text()}, but {expression} gives fractions; use {hint}"
    low, high = expression.bounds()
    table = param
    if param.kind == "choice":
        table = Param(param.name, "float", "", low=min(param.choices), high=max(param.choices))
    elif param.kind == "bool01":
        table = Param(param.name, "float", "", low=0, high=1)
    all_above = table.high is not None and (low > table.high or (table.high_open and low == table.high))
    all_below = table.low is not None and (high < table.low or (table.low_open and high == table.low))
    if not (all_above or all_below):
        return None
    exponents = ""
    if isinstance(expression, (LogUniform, QLogUniform)):
        exponents = f" (the bounds of {expression.kind} are exponents: value = exp(uniform(low, high)))"
    return (f"{expression} gives values in [{low:.6g}, {high:.6g}]{exponents}, entirely outside what "
            f"{param.name} takes ({param.range_text()})")


# --------------------------------------------------------------------------------------------------------
def check_data(spec, workspace) -> None:
    """Raise ``DataError`` (or ``NotFoundError`` for an unknown registered dataset) when the experiment's data
    cannot train any child: a missing or unreadable file, rows that do not parse or do not fit the task.

    The rows are validated as a run validates them (``data.validate.validate_jsonl``), without decoding the
    images (a child does that) but checking that local image files exist; with ``skip_invalid`` only a file
    without one usable row is refused.
    """
    from jupyter_avml.data.validate import emit_hints, validate_jsonl
    from jupyter_avml.training.data import resolve_data_path

    fixed = spec.fixed
    skip_invalid = str(fixed.get("skip_invalid", 0)).strip().lower() in _TRUE
    classes = None
    for key in ("training_data", "validation_data"):
        value = fixed.get(key)
        if not value:
            continue
        path = resolve_data_path(str(value), workspace)
        report = validate_jsonl(path, spec.task, check_images=False, prefix_map=fixed.get("image_url_prefix_map"),
                                cache_dir=workspace.cache_dir, known_classes=classes)
        emit_hints(report)  # fewer than the spec's 10-15 images per label: a hint under the cell, not an error
        _check_image_files(report)
        usable = bool(report.records) and bool(report.classes or key == "validation_data")
        if key == "training_data" and usable:
            from jupyter_avml.training.incremental import check_start_labels

            check_start_labels(fixed, workspace, report.classes)  # a checkpoint to continue: the same labels
        if report.ok and usable:
            classes = classes or report.classes
            continue
        if skip_invalid and usable:
            classes = classes or report.classes
            continue
        if not report.records and report.rows and all(p.field == "image_url" for p in report.problems):
            head = f"{key}: none of the images {path} names can be found (are the image paths right?)"
        elif not report.records and report.rows:
            head = f"{key}: no row of {path} fits the task {spec.task} (is the task right?)"
        elif not report.rows:
            head = f"{key}: {path} has no rows"
        elif not usable:
            head = f"{key}: {path} has no labelled row to train on"
        else:
            head = (f"{key}: {path} has {len(report.rejected)} row(s) that do not fit the task {spec.task} "
                    f"(set skip_invalid: 1 to train on the valid rows only)")
        raise DataError(head + "\n" + report.format(max_problems=MAX_PROBLEMS_SHOWN), report.problems)


def _check_image_files(report) -> None:
    """Move the rows whose image file is missing from ``report.records`` to its problems (a stat per row:
    decoding is left to the children)."""
    from jupyter_avml.data.jsonl import Problem
    from jupyter_avml.data.records import sorted_classes
    from jupyter_avml.data.validate import RejectedRow

    kept = []
    for record in report.records:
        if record.path is None or os.path.isfile(record.path):
            kept.append(record)
            continue
        problem = Problem(str(report.source), record.line, "image_url", f"no such file {record.path}",
                          record.image_url)
        report.problems.append(problem)
        report.rejected.append(RejectedRow(record.line, "", [problem]))
    if len(kept) != len(report.records):
        report.records = kept
        report.problems.sort(key=lambda p: p.line)
        report.classes = sorted_classes(kept)
