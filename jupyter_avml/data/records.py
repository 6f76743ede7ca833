"""Typed records of the JSONL data contract (spec section 2).

Coordinate convention, used everywhere in jupyter_avml.data:
boxes and polygons are FRACTIONS of the image width/height in [0, 1], origin at the top-left corner:
``top_x = xmin / width``, ``top_y = ymin / height``, ``bottom_x = xmax / width``, ``bottom_y = ymax / height``.
A polygon segment is a flat tuple ``(x1, y1, x2, y2, ..., xn, yn)`` of such fractions; an instance may have
several segments. Pixel coordinates appear only inside the training pipeline, after the image is decoded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_avml.tasks import ImageTask

Polygon = tuple[tuple[float, ...], ...]


@dataclass(frozen=True, slots=True)
class ObjectLabel:
    """One object of a detection or segmentation image (fractions, see the module docstring)."""

    label: str
    top_x: float
    top_y: float
    bottom_x: float
    bottom_y: float
    is_crowd: bool = False
    polygon: Polygon = ()

    @classmethod
    def from_polygon(cls, label: str, polygon: Polygon, is_crowd: bool = False) -> ObjectLabel:
        """An instance whose box is the extent of its polygon segments."""
        xs = [v for seg in polygon for v in seg[0::2]]
        ys = [v for seg in polygon for v in seg[1::2]]
        if not xs:
            raise ValueError("polygon has no points")
        return cls(label, min(xs), min(ys), max(xs), max(ys), is_crowd, polygon)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.top_x, self.top_y, self.bottom_x, self.bottom_y)

    def to_json(self, task: ImageTask) -> dict:
        """The spec's JSON form: boxes for detection, polygons for segmentation."""
        if task is ImageTask.IMAGE_INSTANCE_SEGMENTATION:
            return {"label": self.label, "isCrowd": int(self.is_crowd),
                    "polygon": [list(seg) for seg in self.polygon]}
        return {"label": self.label, "topX": self.top_x, "topY": self.top_y,
                "bottomX": self.bottom_x, "bottomY": self.bottom_y, "isCrowd": int(self.is_crowd)}


Label = str | tuple[str, ...] | tuple[ObjectLabel, ...]
"""multi-class: ``str``; multi-label: ``tuple[str, ...]``; detection/segmentation: ``tuple[ObjectLabel, ...]``."""


class ImageRecord:
    """One line of a JSONL file.

    ``image_url`` is kept as written; ``path`` is the local file it resolved to (None until resolved).
    ``source``/``line`` say where the record came from, for error messages (line numbers start at 1).

    ``path`` always reads as a ``Path`` (or None). It may be set to a ``str``, which becomes a ``Path`` when
    first read: validation resolves hundreds of thousands of rows, and building each ``Path`` on demand
    instead (pathlib parses every path it builds) is a fifth of the time of validating a plain row, and two
    fewer objects per row for the garbage collector to scan. Otherwise a plain data class: keyword or
    positional construction, ``==`` over every field, a readable ``repr``.
    """

    __slots__ = ("image_url", "label", "width", "height", "format", "_path", "source", "line")
    _FIELDS = ("image_url", "label", "width", "height", "format", "path", "source", "line")

    def __init__(self, image_url: str, label: Label, width: int | None = None, height: int | None = None,
                 format: str | None = None, path: Path | str | None = None, source: str | None = None,
                 line: int = 0):
        self.image_url = image_url
        self.label = label
        self.width = width
        self.height = height
        self.format = format
        self._path = path
        self.source = source
        self.line = line

    @property
    def path(self) -> Path | None:
        path = self._path
        if type(path) is str:
            path = self._path = Path(path)
        return path

    @path.setter
    def path(self, value: Path | str | None) -> None:
        self._path = value

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._FIELDS)

    __hash__ = None  # mutable, compared by value (as a dataclass with eq=True)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"ImageRecord({shown})"

    def class_names(self) -> list[str]:
        """The classes this record mentions, in order of appearance (duplicates kept)."""
        if isinstance(self.label, str):
            return [self.label]
        return [item if isinstance(item, str) else item.label for item in self.label]

    def to_json(self, task: ImageTask) -> dict:
        """The spec's JSON object for this record (``image_details`` only when something is known)."""
        out: dict = {"image_url": self.image_url}
        details = {}
        if self.format:
            details["format"] = self.format
        if self.width:
            details["width"] = self.width
        if self.height:
            details["height"] = self.height
        if details:
            out["image_details"] = details
        if task is ImageTask.IMAGE_CLASSIFICATION:
            out["label"] = self.label
        elif task is ImageTask.IMAGE_CLASSIFICATION_MULTILABEL:
            out["label"] = list(self.label)
        else:
            out["label"] = [obj.to_json(task) for obj in self.label]
        return out

    @property
    def where(self) -> str:
        """``FILE:LINE`` of this record, for messages."""
        return f"{self.source or '<memory>'}:{self.line}"


@dataclass
class ImageDataset:
    """A list of records of one task, with the class names in a stable order."""

    task: ImageTask
    records: list[ImageRecord]
    source: Path | None = None
    classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.classes:
            self.classes = sorted_classes(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)


def sorted_classes(records: Iterable[ImageRecord]) -> list[str]:
    """All class names of the records, sorted (the index order models are trained with)."""
    names: set[str] = set()
    for record in records:
        names.update(record.class_names())
    return sorted(names)
