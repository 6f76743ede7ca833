"""What every converter shares: image lookup, pixel -> fraction conversion with the clipping rule, messages.

Clipping rule (all formats)
---------------------------
Annotations are converted in the pixel frame they were drawn in (the ``<size>`` of a VOC xml, the
``width``/``height`` of a COCO image, the image itself for YOLO). A coordinate at most ``CLIP_TOLERANCE_PX``
(one pixel) outside the image is clamped to the border: annotation tools round, and some write the 1-based
VOC convention as ``xmax = width + 1``. Anything further out is reported and the object dropped, never clipped:
a box that far out is a wrong annotation (or coordinates of another image), and clipping it would hide that.
A box with zero width or height after clamping is degenerate and dropped.

An image whose every object was dropped is dropped as well: writing it with an empty label list would tell
the model that the image shows no object at all.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_avml.data.records import ImageRecord, Polygon
from jupyter_avml.errors import DataError
from jupyter_avml.tasks import ImageTask

IMAGE_FORMATS = ("jpg", "jpeg", "png", "jpe", "jfif", "bmp", "tif", "tiff")
"""The image formats of the spec (``image_details.format``); other files are not images to the converters."""

CLIP_TOLERANCE_PX = 1.0
"""How far (pixels) outside the image a coordinate may be and still be clamped to the border."""

MIN_SEGMENT_AREA = 1e-10
"""Smallest |area| of a polygon segment in squared fractions; the JSONL reader rejects smaller ones."""

ASPECT_TOLERANCE = 0.01
"""Relative difference of aspect ratios between the annotated size and the image file beyond which the
annotation was made on another image (or a rotated one) and fractions would be wrong."""


class Skip(Exception):
    """An item cannot be converted; ``str(self)`` says what and why, with the value."""


@dataclass
class Converted:
    """What a ``from_*`` reader returns.

    Unpacks as ``records, dropped = from_voc(...)``; ``task`` is the task the records are labelled for
    (inferred by readers that can), ``classes`` the class names the source declares (in its order, possibly
    more than the records use), ``notes`` remarks that are not dropped items (a header row detected...).
    ``image_url`` of every record is the absolute path of the image; ``convert`` makes it relative to the
    output file.
    """

    records: list[ImageRecord]
    dropped: list[str]
    task: ImageTask
    classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator:
        yield self.records
        yield self.dropped


def image_format(path: str | os.PathLike) -> str | None:
    """The spec's format name of a file from its extension (lower case, no dot), or None."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in IMAGE_FORMATS else None


def show(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """How a file is named in messages: relative to ``root`` when it lies inside, else as given."""
    path = Path(path)
    if root is not None:
        try:
            return path.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def require_dir(path: str | os.PathLike, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if not path.is_dir():
        raise DataError(f"{path}: {what} must be a folder, this is a file")
    return path


def require_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` when it is a regular file; else a ``DataError`` naming it (a device or a pipe would never end)."""
    path = Path(path).expanduser()
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: {what} must be a file, this is a folder")
    if not stat.S_ISREG(mode):
        from jupyter_avml.config.loader import describe_file_kind

        raise DataError(f"{path}: {what} must be a regular file, this is {describe_file_kind(mode)}")
    return path


def find_child_dir(root: Path, names: Sequence[str]) -> Path | None:
    """The first sub-folder of ``root`` whose name matches one of ``names`` (case-insensitive, in that order)."""
    try:
        children = {child.name.lower(): child for child in sorted(root.iterdir()) if child.is_dir()}
    except OSError:
        return None
    for name in names:
        if name.lower() in children:
            return children[name.lower()]
    return None


class ImageIndex:
    """The image files of one folder (recursive), looked up by relative name or by stem.

    The folder is listed once, on the first name that is not an exact path.
    """

    def __init__(self, root: Path):
        self.root = root
        self._by_lower: dict[str, Path] | None = None
        self._by_stem: dict[str, list[Path]] = {}

    def _listing(self) -> dict[str, Path]:
        if self._by_lower is None:
            self._by_lower = {}
            for path in sorted(self.root.rglob("*")):
                if path.is_file() and image_format(path) and not path.name.startswith("."):
                    rel = path.relative_to(self.root).as_posix()
                    self._by_lower.setdefault(rel.lower(), path)
                    self._by_stem.setdefault(path.stem, []).append(path)
        return self._by_lower

    def find(self, name: str) -> Path | None:
        """``name`` inside the folder: exact, else case-insensitive; a name without an image extension is
        looked up by stem (a unique match only)."""
        name = name.strip().replace("\\", "/")
        exact = self.root / name
        if exact.is_file():
            return exact
        hit = self._listing().get(name.lower())
        if hit is not None:
            return hit
        if image_format(name) is None:
            matches = self._by_stem.get(Path(name).name, [])
            if len(matches) == 1:
                return matches[0]
        return None


def probe_image(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image as the models will see it (header only); ``Skip`` when unusable."""
    from jupyter_avml.data.images import image_size

    if image_format(path) is None:
        raise Skip(f"image {path.name}: format {path.suffix or '(no extension)'} is not one of "
                   f"{', '.join(IMAGE_FORMATS)}")
    try:
        return image_size(path)
    except DataError as exc:
        reason = str(exc)
        prefix = f"{path}: "
        raise Skip(f"image {path}: {reason[len(prefix):] if reason.startswith(prefix) else reason}") from None


def check_aspect(annotated: tuple[float, float], actual: tuple[int, int]) -> None:
    """Annotations drawn on a ``annotated`` (w, h) frame may be used on an image of size ``actual`` when the
    aspect ratios agree (a proportional resize keeps fractions valid); otherwise ``Skip``."""
    aw, ah = annotated
    iw, ih = actual
    if abs((aw / ah) / (iw / ih) - 1.0) > ASPECT_TOLERANCE:
        raise Skip(f"annotated image size {_num(aw)}x{_num(ah)} does not match the image file's {iw}x{ih} "
                   f"(another image, or rotated by its EXIF orientation)")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def to_fraction_box(xmin: float, ymin: float, xmax: float, ymax: float, width: float, height: float, *,
                    normalized: bool = False) -> tuple[float, float, float, float]:
    """A box (corners) -> fractions ``(top_x, top_y, bottom_x, bottom_y)`` under the clipping rule.

    The corners are pixels of a ``width`` x ``height`` frame, or fractions already when ``normalized`` (YOLO);
    messages show them as given.
    """
    values = (xmin, ymin, xmax, ymax)
    if not all(math.isfinite(v) for v in values):
        raise Skip(f"box coordinates are not finite numbers ({values})")
    shown = ", ".join(f"{k}={_num(v)}" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), values, strict=True))
    if xmax < xmin or ymax < ymin:
        raise Skip(f"box corners are swapped: xmax < xmin or ymax < ymin ({shown})")
    if not normalized:
        xmin, ymin, xmax, ymax = xmin / width, ymin / height, xmax / width, ymax / height
    tol_x, tol_y = CLIP_TOLERANCE_PX / width, CLIP_TOLERANCE_PX / height
    if xmin < -tol_x or ymin < -tol_y or xmax > 1 + tol_x or ymax > 1 + tol_y:
        raise Skip(f"box outside the image {_num(width)}x{_num(height)} by more than "
                   f"{_num(CLIP_TOLERANCE_PX)} px ({shown})")
    x0, x1 = min(max(xmin, 0.0), 1.0), min(max(xmax, 0.0), 1.0)
    y0, y1 = min(max(ymin, 0.0), 1.0), min(max(ymax, 0.0), 1.0)
    if x1 <= x0 or y1 <= y0:
        raise Skip(f"degenerate box: zero {'width' if x1 <= x0 else 'height'} ({shown})")
    return (x0, y0, x1, y1)


def to_fraction_polygon(segments: Iterable[Sequence[float]], width: float, height: float,
                        notes: list[str] | None = None, *, normalized: bool = False) -> Polygon:
    """Polygon segments (pixels of a ``width`` x ``height`` frame, or fractions when ``normalized``) -> a
    fraction ``Polygon`` under the clipping rule.

    Segments with fewer than 3 points or zero area are left out (said in ``notes`` when given); a segment with
    an odd number of values or a point far outside the image makes the whole instance unusable (``Skip``).
    """
    from jupyter_avml.data.masks import polygon_area

    tol_x, tol_y = CLIP_TOLERANCE_PX / width, CLIP_TOLERANCE_PX / height
    sx, sy = (1.0, 1.0) if normalized else (1.0 / width, 1.0 / height)
    out = []
    for index, seg in enumerate(segments, 1):
        try:
            values = [float(v) for v in seg]
        except (TypeError, ValueError):
            raise Skip(f"polygon segment {index} holds a value that is not a number ({_short(seg)})") from None
        if len(values) % 2:
            raise Skip(f"polygon segment {index} has an odd number of values ({len(values)})")
        if not all(math.isfinite(v) for v in values):
            raise Skip(f"polygon segment {index} holds a value that is not finite ({_short(seg)})")
        xs, ys = [x * sx for x in values[0::2]], [y * sy for y in values[1::2]]
        if xs and (min(xs) < -tol_x or max(xs) > 1 + tol_x or min(ys) < -tol_y or max(ys) > 1 + tol_y):
            raw_x, raw_y = values[0::2], values[1::2]
            raise Skip(f"polygon segment {index} lies outside the image {_num(width)}x{_num(height)} by more "
                       f"than {_num(CLIP_TOLERANCE_PX)} px (x {min(raw_x):g}..{max(raw_x):g}, "
                       f"y {min(raw_y):g}..{max(raw_y):g})")
        if len(values) < 6:
            if notes is not None:
                notes.append(f"polygon segment {index} has fewer than 3 points, left out ({_short(seg)})")
            continue
        flat = [min(max(v, 0.0), 1.0) for pair in zip(xs, ys, strict=True) for v in pair]
        if abs(polygon_area(flat)) < MIN_SEGMENT_AREA:
            if notes is not None:
                notes.append(f"polygon segment {index} has zero area, left out ({_short(seg)})")
            continue
        out.append(tuple(flat))
    if not out:
        raise Skip("no polygon segment with at least 3 points and a non-zero area")
    return tuple(out)


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def make_record(path: Path, label, size: tuple[int, int] | None, source: Path | str, line: int = 0) -> ImageRecord:
    """A record whose ``image_url`` is the absolute image path (``convert`` rewrites it relative to the output)."""
    path = Path(path).resolve()
    width, height = size if size else (None, None)
    return ImageRecord(image_url=str(path), label=label, width=width, height=height, format=image_format(path),
                       path=path, source=str(source), line=line)
