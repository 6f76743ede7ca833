"""Reading the spec's JSON Lines (section 2): one decoded JSON value -> one ``ImageRecord``.

``parse_record`` is the single place where the label forms of the four tasks are understood. It accepts the
looser forms found in real files and reports everything else as ``Problem`` objects
(``FILE:LINE: field: message (value)``), collecting all of them for a row instead of stopping at the first.

Accepted loose forms:

- numbers written as strings: ``"topX": "0.26"``, ``"width": "2230px"`` (``px`` suffix, any case);
- ``isCrowd`` as 0/1, true/false, or those written as strings (``"true"``, ``"0"``, any case);
- a single box / instance object where a list of them is expected;
- a segmentation ``polygon`` given as one flat list ``[x1, y1, ...]`` (one segment);
- ``image_details.format`` in any case, with or without a leading dot;
- class names written as JSON integers (``"label": 3`` becomes the class ``"3"``);
- ``"image_details": null`` (as if absent); ``label_confidence`` (written by the cloud labeling export) is
  accepted and ignored.

Decisions:

- Coordinates must be fractions in [0, 1]. Values within ``COORD_SLACK`` (1e-6) outside the range are float
  noise from ``xmin / width`` and are clamped silently; anything further out is a problem (values above 1
  usually mean pixels, and the message says so).
- A box needs ``topX < bottomX`` and ``topY < bottomY`` (a zero-width box is a problem).
- A polygon segment needs an even number of values, at least 3 points, and a non-zero shoelace area
  (collinear points or a bow-tie whose two lobes cancel out are problems).
- In segmentation, the box of an instance is the extent of its polygon (``ObjectLabel.from_polygon``);
  ``topX``/``topY``/``bottomX``/``bottomY`` written beside a polygon are known keys and are ignored.
- Multi-class labels are strings; a list there is the wrong form (the message points at the multi-label task).
  Multi-label labels are lists (empty allowed); a repeated class in one row is a problem.
- Any problem makes the row unusable: ``parse_record`` returns None. Nothing is silently dropped.

Why one module of about 650 lines: the label forms of the four tasks, each with its fast path (plain rows)
and its checking path (every problem named), are one contract; split apart, a change to a form would have to
be made in several files that must agree. Reading the file itself (lines, encodings, limits) is
``jsonl_file``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import operator
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jupyter_avml.data.jsonl_file import iter_jsonl_checked
from jupyter_avml.data.records import ImageRecord, ObjectLabel
from jupyter_avml.tasks import ImageTask

COORD_SLACK = 1e-6
"""Coordinates within this distance outside [0, 1] are clamped (float noise); further out is a problem."""

MIN_POLYGON_AREA = 1e-10
"""Smallest |shoelace area| of a segment, in squared fractions (a 1-pixel square of a 10k x 10k image is 1e-8)."""

IMAGE_FORMATS = ("jpg", "jpeg", "png", "jpe", "jfif", "bmp", "tif", "tiff")
_FORMAT_SET = frozenset(IMAGE_FORMATS)

TOP_KEYS = ("image_url", "image_details", "label")
IGNORED_TOP_KEYS = frozenset({"label_confidence"})
DETAIL_KEYS = ("format", "width", "height")
BOX_KEYS = ("label", "topX", "topY", "bottomX", "bottomY", "isCrowd")
BOX_COORDS = ("topX", "topY", "bottomX", "bottomY")
INSTANCE_KEYS = ("label", "isCrowd", "polygon")
_TOP_SET = frozenset(TOP_KEYS) | IGNORED_TOP_KEYS
_DETAIL_SET = frozenset(DETAIL_KEYS)
_BOX_SET = frozenset(BOX_KEYS)
_INSTANCE_SET = frozenset(INSTANCE_KEYS) | frozenset(BOX_COORDS)

_VALUE_REPR_MAX = 80

__all__ = ["COORD_SLACK", "IMAGE_FORMATS", "MIN_POLYGON_AREA", "Problem", "iter_jsonl", "iter_jsonl_checked",
           "parse_record", "shoelace_area", "suggest"]


def _make_object_factory():
    """A faster ``ObjectLabel(label, top_x, top_y, bottom_x, bottom_y, is_crowd)`` for the parsing hot path.

    A frozen dataclass's ``__init__`` assigns each field through ``object.__setattr__``; setting the slots
    through their descriptors gives the same object (equal, hashable, frozen afterwards) in about half the time.
    If ``ObjectLabel`` ever gains other fields or a ``__post_init__``, the plain constructor is used instead.
    """
    names = tuple(f.name for f in dataclasses.fields(ObjectLabel))
    expected = ("label", "top_x", "top_y", "bottom_x", "bottom_y", "is_crowd", "polygon")
    if names != expected or hasattr(ObjectLabel, "__post_init__") or "__slots__" not in ObjectLabel.__dict__:
        return lambda name, x0, y0, x1, y1, crowd: ObjectLabel(name, x0, y0, x1, y1, crowd)
    new = object.__new__
    setters = [getattr(ObjectLabel, n).__set__ for n in expected]
    s_label, s_x0, s_y0, s_x1, s_y1, s_crowd, s_polygon = setters

    def make(name: str, x0: float, y0: float, x1: float, y1: float, crowd: bool) -> ObjectLabel:
        obj = new(ObjectLabel)
        s_label(obj, name)
        s_x0(obj, x0)
        s_y0(obj, y0)
        s_x1(obj, x1)
        s_y1(obj, y1)
        s_crowd(obj, crowd)
        s_polygon(obj, ())
        return obj

    return make


_new_object = _make_object_factory()

_TRUE = frozenset({"1", "true"})
_FALSE = frozenset({"0", "false"})


@dataclass(frozen=True)
class Problem:
    """One problem with one row: ``FILE:LINE: field: message (value)``.

    ``line`` starts at 1; 0 means the file as a whole. ``field`` is a path into the row such as
    ``image_url``, ``image_details.width`` or ``label[2].topX``; ``value`` is the offending value (None when
    there is none to show, e.g. a missing field).
    """

    source: str
    line: int
    field: str
    message: str
    value: Any = None
    hint: str = ""  # how to fix it, when the message alone does not say (shown after the value)

    def __str__(self) -> str:
        text = f"{self.source}:{self.line}: {self.field}: {self.message}"
        if self.value is not None:
            shown = repr(self.value)
            if len(shown) > _VALUE_REPR_MAX:
                shown = shown[:_VALUE_REPR_MAX - 3] + "..."
            text += f" ({shown})"
        if self.hint:
            text += f"; {self.hint}"
        return text


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each non-blank line of ``path`` (numbers start at 1; text without EOL).

    A UTF-8 byte-order mark is skipped. Bytes that are not UTF-8 are replaced by U+FFFD here, and a line longer
    than ``jsonl_file.MAX_LINE_BYTES`` comes cut; the validator reads with ``iter_jsonl_checked`` to report
    both instead.
    """
    for number, text, _error in iter_jsonl_checked(path):
        yield number, text


# ---------------------------------------------------------------------------------------------------------
# helpers: every one appends its problems through ``_Row.add``.

class _Row:
    __slots__ = ("source", "line", "problems", "count")

    def __init__(self, source: str, line: int, problems: list[Problem]):
        self.source = source
        self.line = line
        self.problems = problems
        self.count = 0

    def add(self, field: str, message: str, value: Any = None, hint: str = "") -> None:
        self.problems.append(Problem(self.source, self.line, field, message, value, hint))
        self.count += 1


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def suggest(key: str, known: tuple[str, ...] | frozenset[str]) -> str:
    """``; did you mean 'x'?`` for a close known key (case and underscores ignored first), else ``""``."""
    squash = {k.lower().replace("_", ""): k for k in known}
    exact = squash.get(key.lower().replace("_", "").replace("-", ""))
    if exact:
        return f"; did you mean {exact!r}?"
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown_keys(row: _Row, obj: dict, allowed: frozenset[str], shown: tuple[str, ...], prefix: str,
                  hints: dict[str, str] | None = None) -> None:
    for key in obj:
        if key not in allowed:
            hint = (hints or {}).get(key) or suggest(str(key), shown)
            row.add(f"{prefix}{key}", f"unknown field (known: {', '.join(shown)}){hint}", obj[key])


def _number(value: Any) -> float | None:
    """A finite float from a JSON number or a numeric string; None otherwise."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        return float(value)
    if kind is str:
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _coordinate(row: _Row, field: str, value: Any) -> float | None:
    # Fast path for the common case: a float already in range.
    if type(value) is float and 0.0 <= value <= 1.0:
        return value
    number = _number(value)
    if number is None:
        row.add(field, f"expected a number (a fraction in [0, 1]), got {_type_name(value)}", value)
        return None
    if 0.0 <= number <= 1.0:
        return number
    if -COORD_SLACK <= number < 0.0:
        return 0.0
    if 1.0 < number <= 1.0 + COORD_SLACK:
        return 1.0
    hint = "; coordinates are fractions of the image width/height (looks like pixels)" if number > 1 else ""
    row.add(field, f"outside [0, 1]{hint}", value)
    return None


def _is_crowd(row: _Row, field: str, value: Any) -> bool:
    if value is None or value is False or value == 0 and type(value) is int:
        return False
    if value is True or value == 1 and type(value) is int:
        return True
    if type(value) is str:
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    if type(value) is float and value in (0.0, 1.0):
        return bool(value)
    row.add(field, "expected 0, 1, true or false", value)
    return False


def _class_name(row: _Row, field: str, value: Any) -> str | None:
    kind = type(value)
    if kind is str:
        if value.strip():
            return value
        row.add(field, "empty class name", value)
        return None
    if kind is int:  # numeric class ids are common in exports; they become names
        return str(value)
    if value is None:
        row.add(field, "missing class name")
    else:
        row.add(field, f"expected a class name (a string), got {_type_name(value)}", value)
    return None


def _dimension(row: _Row, field: str, value: Any) -> int | None:
    kind = type(value)
    if kind is int:
        number: float | None = value
    elif kind is float:
        number = value if value.is_integer() else None
    elif kind is str:
        text = value.strip().lower()
        if text.endswith("px"):
            text = text[:-2].strip()
        try:
            number = int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                as_float = math.nan
            number = int(as_float) if math.isfinite(as_float) and as_float.is_integer() else None
    else:
        number = None
    if number is None or number <= 0:
        row.add(field, "expected a positive integer (or a string like \"400px\")", value)
        return None
    return int(number)


# ---------------------------------------------------------------------------------------------------------
# label forms


def _label_multiclass(row: _Row, value: Any) -> str | None:
    if isinstance(value, list):
        row.add("label", "image-classification expects one class name (a string), got a list; "
                         "for several classes per image use the task image-classification-multilabel", value)
        return None
    if isinstance(value, dict):
        row.add("label", "image-classification expects one class name (a string), got an object", value)
        return None
    return _class_name(row, "label", value)


def _label_multilabel(row: _Row, value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        form = _type_name(value)
        example = f"; write {json.dumps([value])}" if isinstance(value, str) else ""
        row.add("label", f"image-classification-multilabel expects a list of class names, got {form}{example}",
                value)
        return None
    before = row.count
    names: list[str] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        name = _class_name(row, f"label[{i}]", item)
        if name is None:
            continue
        if name in seen:
            row.add(f"label[{i}]", f"duplicate class (also label[{seen[name]}])", item)
            continue
        seen[name] = i
        names.append(name)
    return tuple(names) if row.count == before else None


_box_fields = operator.itemgetter("label", "topX", "topY", "bottomX", "bottomY")
_PLAIN_CROWD = {0: False, 1: True}  # also maps False/True and 0.0/1.0 (equal keys), all accepted forms
_ABSENT = object()  # not a key of _PLAIN_CROWD


def _boxes_fast(value: list) -> tuple[ObjectLabel, ...] | None:
    """The boxes when every one has the plain well-formed shape, else None (then ``_box`` checks each one).

    Files written by tools are almost always in this shape; checking it in one expression per box is what makes
    parsing fast enough (tens of thousands of rows per second). No problem is ever reported from here.
    """
    out = []
    try:
        for item in value:
            if type(item) is not dict:
                return None
            name, top_x, top_y, bottom_x, bottom_y = _box_fields(item)  # KeyError: a field is missing
            # Five keys found: a sixth may only be isCrowd (a set comparison per box would cost more).
            size = len(item)
            if size == 6:
                crowd = _PLAIN_CROWD.get(item.get("isCrowd", _ABSENT))  # TypeError: an unhashable value
            elif size == 5:
                crowd = False
            else:
                return None
            if not (type(top_x) is float and type(top_y) is float and type(bottom_x) is float
                    and type(bottom_y) is float and 0.0 <= top_x < bottom_x <= 1.0
                    and 0.0 <= top_y < bottom_y <= 1.0 and type(name) is str and name and not name.isspace()
                    and crowd is not None):
                return None
            out.append(_new_object(name, top_x, top_y, bottom_x, bottom_y, crowd))
    except (KeyError, TypeError):
        return None
    return tuple(out)


def _objects(row: _Row, value: Any, task: ImageTask, parse_one) -> tuple[ObjectLabel, ...] | None:
    if isinstance(value, dict):  # a single box/instance instead of a list
        obj = parse_one(row, "label", value)
        return (obj,) if obj is not None else None
    if not isinstance(value, list):
        row.add("label", f"{task.value} expects {_EXPECTS[task]}, got {_type_name(value)}", value)
        return None
    before = row.count
    out = []
    for i, item in enumerate(value):
        obj = parse_one(row, f"label[{i}]", item)
        if obj is not None:
            out.append(obj)
    return tuple(out) if row.count == before else None


_EXPECTS = {
    ImageTask.IMAGE_OBJECT_DETECTION: "a list of boxes {label, topX, topY, bottomX, bottomY, isCrowd}",
    ImageTask.IMAGE_INSTANCE_SEGMENTATION: "a list of instances {label, isCrowd, polygon: [[x1, y1, ...]]}",
}

_DETECTION_HINTS = {"polygon": "; polygons belong to the task image-instance-segmentation"}


def _box(row: _Row, field: str, item: Any) -> ObjectLabel | None:
    if type(item) is not dict:
        row.add(field, f"expected a box object {{label, topX, topY, bottomX, bottomY}}, got {_type_name(item)}",
                item)
        return None
    before = row.count
    if not _BOX_SET.issuperset(item):
        _unknown_keys(row, item, _BOX_SET, BOX_KEYS, field + ".", _DETECTION_HINTS)
    name = _class_name(row, field + ".label", item.get("label"))
    coords = []
    for key in BOX_COORDS:
        value = item.get(key)
        if value is None:
            row.add(f"{field}.{key}", "missing")
            coords.append(None)
        else:
            coords.append(_coordinate(row, f"{field}.{key}", value))
    crowd = _is_crowd(row, field + ".isCrowd", item.get("isCrowd"))
    top_x, top_y, bottom_x, bottom_y = coords
    if top_x is not None and bottom_x is not None and top_x >= bottom_x:
        row.add(field, "topX must be less than bottomX", {"topX": item["topX"], "bottomX": item["bottomX"]},
                _box_hint("X", "width", top_x, bottom_x))
    if top_y is not None and bottom_y is not None and top_y >= bottom_y:
        row.add(field, "topY must be less than bottomY", {"topY": item["topY"], "bottomY": item["bottomY"]},
                _box_hint("Y", "height", top_y, bottom_y))
    if row.count != before:
        return None
    return ObjectLabel(name, top_x, top_y, bottom_x, bottom_y, crowd)


def _box_hint(axis: str, size: str, top: float, bottom: float) -> str:
    """How to fix a box whose corners are swapped or equal along one axis (the spec's own samples have both)."""
    if top == bottom:
        return (f"the box has zero {size}: drop it, or give it a {size} (bottom{axis} > top{axis}); skip_invalid: 1 "
                f"trains on the other rows")
    smaller = "xmin / width" if axis == "X" else "ymin / height"
    return (f"the corners look swapped: top{axis} is the smaller fraction (top{axis} = {smaller}), so swap "
            f"top{axis} and bottom{axis}; skip_invalid: 1 trains on the other rows")


def shoelace_area(segment: tuple[float, ...] | list[float]) -> float:
    """Signed area of a flat ``(x1, y1, ..., xn, yn)`` polygon (positive when counter-clockwise, y up)."""
    xs = segment[0::2]
    ys = segment[1::2]
    n = len(xs)
    total = 0.0
    for i in range(n):
        j = i + 1 if i + 1 < n else 0
        total += xs[i] * ys[j] - xs[j] * ys[i]
    return total / 2.0


def _segment(row: _Row, field: str, values: Any) -> tuple[float, ...] | None:
    if not isinstance(values, list):
        row.add(field, f"expected a list of numbers [x1, y1, x2, y2, ...], got {_type_name(values)}", values)
        return None
    if values and all(isinstance(v, list) and len(v) == 2 for v in values):
        row.add(field, "looks like a list of [x, y] points; write each segment as one flat list "
                       "[x1, y1, x2, y2, ...]", values)
        return None
    coords: list[float] = []
    bad_type = out_of_range = 0
    first_bad: tuple[int, Any] | None = None
    first_out: tuple[int, Any] | None = None
    for i, value in enumerate(values):
        if type(value) is float and 0.0 <= value <= 1.0:
            coords.append(value)
            continue
        number = _number(value)
        if number is None:
            bad_type += 1
            first_bad = first_bad or (i, value)
            continue
        if -COORD_SLACK <= number < 0.0:
            number = 0.0
        elif 1.0 < number <= 1.0 + COORD_SLACK:
            number = 1.0
        elif not 0.0 <= number <= 1.0:
            out_of_range += 1
            first_out = first_out or (i, value)
        coords.append(number)
    before = row.count
    if bad_type:
        more = f" (and {bad_type - 1} more)" if bad_type > 1 else ""
        row.add(f"{field}[{first_bad[0]}]", f"expected a number, got {_type_name(first_bad[1])}{more}",
                first_bad[1])
    if out_of_range:
        more = f" (and {out_of_range - 1} more)" if out_of_range > 1 else ""
        hint = "; coordinates are fractions of the image width/height" if _number(first_out[1]) > 1 else ""
        row.add(f"{field}[{first_out[0]}]", f"outside [0, 1]{more}{hint}", first_out[1])
    if len(values) % 2:
        row.add(field, f"odd number of values ({len(values)}); a segment is x1, y1, x2, y2, ...", values)
    elif len(values) < 6:
        row.add(field, f"fewer than 3 points ({len(values) // 2})", values)
    if row.count != before:
        return None
    area = shoelace_area(coords)
    if abs(area) < MIN_POLYGON_AREA:
        row.add(field, "zero area (points are collinear, or the outline crosses itself so that its parts "
                       "cancel out)", values)
        return None
    return tuple(coords)


def _instance(row: _Row, field: str, item: Any) -> ObjectLabel | None:
    if type(item) is not dict:
        row.add(field, f"expected an instance object {{label, isCrowd, polygon}}, got {_type_name(item)}", item)
        return None
    before = row.count
    if not _INSTANCE_SET.issuperset(item):
        _unknown_keys(row, item, _INSTANCE_SET, INSTANCE_KEYS, field + ".")
    name = _class_name(row, field + ".label", item.get("label"))
    crowd = _is_crowd(row, field + ".isCrowd", item.get("isCrowd"))
    polygon = item.get("polygon")
    segments: list[tuple[float, ...]] = []
    if polygon is None:
        row.add(field + ".polygon", "missing; image-instance-segmentation expects "
                                    "\"polygon\": [[x1, y1, x2, y2, ...], ...]")
    elif not isinstance(polygon, list):
        row.add(field + ".polygon", f"expected a list of segments [[x1, y1, ...], ...], got {_type_name(polygon)}",
                polygon)
    elif not polygon:
        row.add(field + ".polygon", "no segments", polygon)
    elif len(polygon) >= 3 and all(isinstance(v, list) and len(v) == 2 for v in polygon):
        row.add(field + ".polygon", "looks like a list of [x, y] points; write each segment as one flat list "
                                    "[x1, y1, x2, y2, ...]", polygon)
    elif not isinstance(polygon[0], list) and not (len(polygon) > 1 and isinstance(polygon[1], list)):
        segment = _segment(row, field + ".polygon", polygon)  # one flat list: one segment
        if segment is not None:
            segments.append(segment)
    else:
        for j, values in enumerate(polygon):
            segment = _segment(row, f"{field}.polygon[{j}]", values)
            if segment is not None:
                segments.append(segment)
    if row.count != before:
        return None
    return ObjectLabel.from_polygon(name, tuple(segments), crowd)


# ---------------------------------------------------------------------------------------------------------


def parse_record(obj: Any, task: ImageTask, *, source: str, line: int,
                 problems: list[Problem]) -> ImageRecord | None:
    """One decoded JSON value -> an ``ImageRecord`` (``path`` not resolved yet).

    Every problem found is appended to ``problems``; the row is returned only when it has none.

    Parameters
    ----------
    obj : the value ``json.loads`` returned for the line.
    task : which label form to expect.
    source, line : where the row came from (for the problems and the record's ``source``/``line``).
    problems : list the problems are appended to.
    """
    if type(task) is not ImageTask:
        task = ImageTask.parse(task)
    record = _parse_plain(obj, task, source, line)
    if record is not None:
        return record
    return _parse_checked(obj, task, source, line, problems)


def _multiclass_fast(value: Any) -> str | None:
    return value if type(value) is str and value and not value.isspace() else None


def _multilabel_fast(value: Any) -> tuple[str, ...] | None:
    if type(value) is not list:
        return None
    for name in value:
        if type(name) is not str or not name or name.isspace():
            return None
    names = tuple(value)
    return names if len(set(names)) == len(names) else None


def _segmentation_fast(value: Any) -> None:
    return None  # polygons need the area check: always the checking path


_FAST_LABEL = {
    ImageTask.IMAGE_CLASSIFICATION: _multiclass_fast,
    ImageTask.IMAGE_CLASSIFICATION_MULTILABEL: _multilabel_fast,
    ImageTask.IMAGE_OBJECT_DETECTION: lambda value: _boxes_fast(value) if type(value) is list else None,
    ImageTask.IMAGE_INSTANCE_SEGMENTATION: _segmentation_fast,
}


def _parse_plain(obj: Any, task: ImageTask, source: str, line: int) -> ImageRecord | None:
    """The record when the row has exactly the spec's plain form, else None (then every field is checked).

    Most rows of a real file are in this form; recognising them without building problem lists is what keeps
    parsing near the speed of ``json.loads``. It never reports anything: a None sends the row to
    ``_parse_checked``, which finds and names the problems, or accepts a looser form.
    """
    if type(obj) is not dict or not _TOP_SET.issuperset(obj):
        return None
    url = obj.get("image_url")
    if type(url) is not str or not url or url.isspace() or "label" not in obj:
        return None
    width = height = fmt = None
    details = obj.get("image_details")
    if details is not None:
        if type(details) is not dict or not _DETAIL_SET.issuperset(details):
            return None
        width = details.get("width")
        height = details.get("height")
        fmt = details.get("format")
        if not ((width is None or type(width) is int and width > 0)
                and (height is None or type(height) is int and height > 0)
                and (fmt is None or type(fmt) is str and fmt in _FORMAT_SET)):
            return None
    label = _FAST_LABEL[task](obj["label"])
    if label is None:
        return None
    return ImageRecord(url, label, width, height, fmt, None, source, line)


def _parse_checked(obj: Any, task: ImageTask, source: str, line: int, problems: list[Problem]
                   ) -> ImageRecord | None:
    row = _Row(source, line, problems)
    if type(obj) is not dict:
        row.add("row", f"expected a JSON object {{image_url, image_details, label}}, got {_type_name(obj)}", obj)
        return None
    if not _TOP_SET.issuperset(obj):
        _unknown_keys(row, obj, _TOP_SET, TOP_KEYS, "")

    url = obj.get("image_url")
    if url is None:
        row.add("image_url", "missing (required: where the image is)")
    elif type(url) is not str:
        row.add("image_url", f"expected a string, got {_type_name(url)}", url)
        url = None
    elif not url or url.isspace():
        row.add("image_url", "empty", url)
        url = None

    width = height = fmt = None
    details = obj.get("image_details")
    if details is not None:
        if type(details) is not dict:
            row.add("image_details", f"expected an object {{format, width, height}}, got {_type_name(details)}",
                    details)
        else:
            if not _DETAIL_SET.issuperset(details):
                _unknown_keys(row, details, _DETAIL_SET, DETAIL_KEYS, "image_details.")
            width = details.get("width")
            if width is not None and not (type(width) is int and width > 0):
                width = _dimension(row, "image_details.width", width)
            height = details.get("height")
            if height is not None and not (type(height) is int and height > 0):
                height = _dimension(row, "image_details.height", height)
            raw_format = details.get("format")
            if type(raw_format) is str and raw_format in _FORMAT_SET:
                fmt = raw_format
            elif raw_format is not None:
                text = raw_format.strip().lower().lstrip(".") if type(raw_format) is str else None
                if text in IMAGE_FORMATS:
                    fmt = text
                else:
                    row.add("image_details.format", f"expected one of {', '.join(IMAGE_FORMATS)}", raw_format)

    label: Any = None
    if "label" not in obj:
        row.add("label", f"missing (required; {task.value} expects {_LABEL_FORM[task]})")
    else:
        value = obj["label"]
        if task is ImageTask.IMAGE_OBJECT_DETECTION:
            label = _objects(row, value, task, _box)
        elif task is ImageTask.IMAGE_INSTANCE_SEGMENTATION:
            label = _objects(row, value, task, _instance)
        elif task is ImageTask.IMAGE_CLASSIFICATION:
            label = _label_multiclass(row, value)
        else:
            label = _label_multilabel(row, value)

    if row.count:
        return None
    return ImageRecord(url, label, width, height, fmt, None, source, line)


_LABEL_FORM = {
    ImageTask.IMAGE_CLASSIFICATION: "a class name (a string)",
    ImageTask.IMAGE_CLASSIFICATION_MULTILABEL: "a list of class names",
    **_EXPECTS,
}
