"""A multi-label CSV -> multi-label records.

Forms
-----
- ``path,label1 label2``: the labels of an image separated by spaces in the second column; an empty (or
  missing) second column is an image with no class present.
- one-hot: a header ``path,cat,dog,...`` with more than two columns and 0/1 (also true/false, yes/no) below
  each class.

Paths are relative to ``images_dir`` when given, else to the CSV's folder (absolute paths are kept); a path
without an image extension is looked up by stem (Kaggle-style ``train_0``).

Header: the first row is a header when its first cell names no image (none found, and no image extension);
the notes say when a header was taken. A one-hot CSV needs its header.

Rows naming a missing image, an image listed again, or with the wrong number of columns are reported as
``FILE:LINE`` and left out. A class repeated in one row is kept once.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from jupyter_avml.data.convert._common import (
    Converted,
    Skip,
    image_format,
    make_record,
    probe_image,
    require_dir,
    require_file,
)
from jupyter_avml.errors import DataError
from jupyter_avml.tasks import ImageTask

_TRUE = frozenset({"1", "1.0", "true", "yes", "y"})
_FALSE = frozenset({"0", "0.0", "false", "no", "n", ""})


def from_csv(csv_path: str | os.PathLike, *, images_dir: str | os.PathLike | None = None) -> Converted:
    """Read a multi-label CSV (see the module docstring).

    Returns a ``Converted`` (unpacks as ``records, dropped``) for ``image-classification-multilabel``.
    """
    csv_path = require_file(csv_path, "CSV file")
    base = require_dir(images_dir, "images folder") if images_dir is not None else csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            rows = [(number, row) for number, row in enumerate(csv.reader(handle), 1)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: not a UTF-8 CSV file: {exc}") from None
    rows = [(n, [cell.strip() for cell in row]) for n, row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise DataError(f"{csv_path}: empty CSV file")
    name = str(csv_path)
    dropped: list[str] = []
    notes: list[str] = []
    header = None
    find = _Finder(base)
    first_line, first = rows[0]
    if first and image_format(first[0]) is None and find(first[0]) is None:
        header = first
        rows = rows[1:]
        notes.append(f"{name}:{first_line}: taken as a header row ({','.join(first)[:80]})")
    one_hot = header is not None and len(header) > 2
    classes: list[str] = list(header[1:]) if one_hot else []
    records = []
    seen: dict[Path, int] = {}
    for number, row in rows:
        where = f"{name}:{number}"
        try:
            labels = _one_hot(row, header) if one_hot else _spaced(row)
            path = find(row[0])
            if path is None:
                raise Skip(f"image not found in {base} ({row[0]!r})")
            key = path.resolve()
            if key in seen:
                raise Skip(f"image listed again, first at line {seen[key]} ({row[0]!r})")
            size = probe_image(path)
        except Skip as exc:
            dropped.append(f"{where}: {exc}")
            continue
        seen[key] = number
        for label in labels:
            if label not in classes:
                classes.append(label)
        records.append(make_record(path, labels, size, csv_path, number))
    return Converted(records, dropped, ImageTask.IMAGE_CLASSIFICATION_MULTILABEL, classes, notes)


def _spaced(row: list[str]) -> tuple[str, ...]:
    if len(row) > 2:
        raise Skip(f"expected 2 columns (path, labels separated by spaces), got {len(row)} "
                   f"({','.join(row)[:60]!r}); quote the labels or separate them with spaces")
    text = row[1] if len(row) > 1 else ""
    return tuple(dict.fromkeys(text.split()))


def _one_hot(row: list[str], header: list[str]) -> tuple[str, ...]:
    if len(row) != len(header):
        raise Skip(f"expected {len(header)} columns as in the header, got {len(row)}")
    labels = []
    for cls, cell in zip(header[1:], row[1:], strict=True):
        value = cell.lower()
        if value in _TRUE:
            labels.append(cls)
        elif value not in _FALSE:
            raise Skip(f"column {cls!r}: expected 0 or 1 ({cell!r})")
    return tuple(dict.fromkeys(labels))


class _Finder:
    """Looks paths up under ``base``; names without an image extension by stem (one index per folder)."""

    def __init__(self, base: Path):
        self.base = base
        self._stems: dict[Path, dict[str, list[Path]]] = {}

    def __call__(self, text: str) -> Path | None:
        if not text:
            return None
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.base / path
        if path.is_file():
            return path
        if image_format(path) is None:
            matches = self._stem_index(path.parent).get(path.name, [])
            if len(matches) == 1:
                return matches[0]
        return None

    def _stem_index(self, folder: Path) -> dict[str, list[Path]]:
        index = self._stems.get(folder)
        if index is None:
            index = {}
            if folder.is_dir():
                for child in sorted(folder.iterdir()):
                    if image_format(child) and child.is_file():
                        index.setdefault(child.stem, []).append(child)
            self._stems[folder] = index
        return index
