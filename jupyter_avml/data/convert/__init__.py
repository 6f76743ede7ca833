"""Converters to and from the JSONL contract (spec section 2): COCO, Pascal VOC, YOLO, class-per-folder
images and multi-label CSV in; COCO out.

``convert(fmt, src, out)`` reads a source, writes the JSONL (``image_url`` relative to the output file's
folder, ``image_details`` with the format and the size of each image) and returns a ``ConversionReport``.
Items that cannot be converted are never written as invalid rows: they are listed in the report's
``dropped``, each as ``SOURCE_FILE: what and why (value)``. The ``from_*`` readers return the records
themselves (``records, dropped = from_voc(...)``); ``to_coco``/``write_coco`` go the other way.

The rules each reader applies (folder names, clipping, VOC masks, YOLO task inference...) are in the
docstrings of ``coco``, ``voc``, ``yolo``, ``folder``, ``csv_multilabel`` and ``_common``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_avml.data.convert._common import CLIP_TOLERANCE_PX, IMAGE_FORMATS, Converted
from jupyter_avml.data.convert.coco import from_coco
from jupyter_avml.data.convert.csv_multilabel import from_csv
from jupyter_avml.data.convert.folder import from_folder
from jupyter_avml.data.convert.to_coco import to_coco, write_coco
from jupyter_avml.data.convert.voc import from_voc
from jupyter_avml.data.convert.yolo import from_yolo
from jupyter_avml.data.records import ImageRecord, sorted_classes
from jupyter_avml.errors import ConfigError, DataError
from jupyter_avml.tasks import ImageTask

__all__ = [
    "CLIP_TOLERANCE_PX", "FORMATS", "IMAGE_FORMATS", "ConversionReport", "Converted", "convert", "from_coco",
    "from_csv", "from_folder", "from_voc", "from_yolo", "to_coco", "write_coco",
]

# format name -> (reader, the keyword options it takes besides ``task``)
_READERS = {
    "coco": (from_coco, ("images_dir",)),
    "voc": (from_voc, ("images_dir", "annotations_dir", "masks_dir", "label")),
    "yolo": (from_yolo, ("split",)),
    "folder": (from_folder, ()),
    "csv": (from_csv, ("images_dir",)),
}
_FIXED_TASK = {"folder": ImageTask.IMAGE_CLASSIFICATION, "csv": ImageTask.IMAGE_CLASSIFICATION_MULTILABEL}
FORMATS = tuple(_READERS) + ("jsonl",)
"""Names ``convert`` accepts: the source formats, and ``jsonl`` (a JSONL file to a COCO json)."""

_SHOWN_DROPPED = 50


@dataclass
class ConversionReport:
    """What ``convert`` wrote and what it left out.

    ``written``: rows (images) written; ``objects``: boxes/instances in them; ``dropped``: one
    ``SOURCE_FILE: what and why (value)`` per item left out; ``classes``: the classes of the rows written
    (sorted, the order models train with); ``notes``: remarks that are not losses (a CSV header taken...).
    """

    output: Path
    task: ImageTask
    written: int
    dropped: list[str]
    classes: list[str]
    objects: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for a person: what was written where, the classes, how many items were dropped."""
        what = f"{self.written} image(s)"
        if self.task.has_boxes:
            what += f" with {self.objects} object(s)"
        shown = ", ".join(self.classes[:30]) + (" ..." if len(self.classes) > 30 else "")
        lines = [f"wrote {what} for {self.task.value} to {self.output}",
                 f"{len(self.classes)} class(es): {shown or '(none)'}"]
        lines += [f"note: {note}" for note in self.notes]
        lines.append(f"dropped {len(self.dropped)} item(s)" + (" (listed below)" if self.dropped else ""))
        return "\n".join(lines)

    def dropped_lines(self, limit: int = _SHOWN_DROPPED) -> list[str]:
        """The first ``limit`` dropped items, and a line saying how many more there are."""
        lines = list(self.dropped[:limit])
        if len(self.dropped) > limit:
            lines.append(f"... and {len(self.dropped) - limit} more")
        return lines


def read_source(fmt: str, src: str | os.PathLike, *, task: ImageTask | str | None = None,
                **options) -> Converted:
    """Read ``src`` in format ``fmt`` (``coco``, ``voc``, ``yolo``, ``folder``, ``csv``) into records.

    ``options`` are the reader's keyword arguments (``images_dir``, ``annotations_dir``, ``masks_dir``,
    ``label``, ``split``); an option the format does not take is an error, not ignored.
    """
    key = str(fmt).strip().lower()
    if key not in _READERS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}", field="format", value=fmt)
    reader, accepted = _READERS[key]
    extra = sorted(set(options) - set(accepted))
    if extra:
        takes = ", ".join(accepted) if accepted else "no options"
        raise ConfigError(f"format {key} does not take {', '.join(extra)} (it takes: {takes})",
                          field=extra[0], value=options[extra[0]])
    if key in _FIXED_TASK:
        if task is not None and ImageTask.parse(task) is not _FIXED_TASK[key]:
            raise ConfigError(f"format {key} gives {_FIXED_TASK[key].value} data, not {ImageTask.parse(task).value}",
                              field="task", value=str(task))
        return reader(src, **options)
    return reader(src, task=task, **options)


def convert(fmt: str, src: str | os.PathLike, out: str | os.PathLike, *, task: ImageTask | str | None = None,
            output_format: str = "jsonl", **options) -> ConversionReport:
    """Convert ``src`` (format ``fmt``) into the JSONL file ``out`` (or a COCO json with ``output_format="coco"``).

    ``fmt`` is one of ``FORMATS``. ``jsonl`` reads a JSONL file (``task`` required) and writes COCO json.
    ``task`` defaults to what the format gives: object detection for COCO/VOC (instance segmentation for VOC
    with ``masks_dir``), inferred from the lines for YOLO, multi-class for ``folder``, multi-label for ``csv``.

    Raises
    ------
    DataError
        the source is unusable (missing folder, not a COCO json...), or nothing could be converted (the
        error's ``problems`` list every dropped item); nothing is written then.
    ConfigError
        an unknown format, an option the format does not take, a task the format cannot give.
    """
    out = Path(out).expanduser()
    if out.is_dir():
        raise DataError(f"{out}: the output must be a file path, this is a folder")
    if output_format not in ("jsonl", "coco"):
        raise ConfigError(f"output_format must be 'jsonl' or 'coco', got {output_format!r}",
                          field="output_format", value=output_format)
    fmt = str(fmt).strip().lower()
    if fmt == "jsonl":
        converted = _read_jsonl(src, task, options)
        output_format = "coco"
    else:
        converted = read_source(fmt, src, task=task, **options)
    records = converted.records
    if not records:
        raise DataError(f"{src}: nothing could be converted ({len(converted.dropped)} item(s) dropped"
                        + (f", first: {converted.dropped[0]}" if converted.dropped else "") + ")",
                        problems=converted.dropped)
    if output_format == "coco":
        write_coco(records, out, converted.task, sorted_classes(records))
    else:
        from jupyter_avml.data.writer import relative_url, write_jsonl

        folder = out.parent
        rows = [_relative(record, relative_url(record.path, folder)) for record in records]
        write_jsonl(rows, out, converted.task)
    classes = sorted_classes(records)
    notes = list(converted.notes)
    unused = [c for c in converted.classes if c not in set(classes)]
    if unused and fmt != "coco":  # the COCO reader already notes its unused categories
        notes.append(f"{len(unused)} declared class(es) with no example: {', '.join(unused[:20])}"
                     + (" ..." if len(unused) > 20 else ""))
    objects = sum(len(r.label) for r in records) if converted.task.has_boxes else 0
    return ConversionReport(out, converted.task, len(records), list(converted.dropped), classes, objects, notes)


def _relative(record: ImageRecord, url: str) -> ImageRecord:
    return ImageRecord(url, record.label, record.width, record.height, record.format, record.path,
                       record.source, record.line)


def _read_jsonl(src, task, options) -> Converted:
    if options:
        raise ConfigError(f"format jsonl takes no options (got {', '.join(sorted(options))})",
                          field=sorted(options)[0], value=options[sorted(options)[0]])
    if task is None:
        raise ConfigError("converting a JSONL file needs its task (task=..., --task)", field="task", value=None)
    from jupyter_avml.data.validate import read_dataset

    dataset = read_dataset(src, ImageTask.parse(task), check_images=False)
    records = list(dataset.records)
    for record in records:
        if record.path is None:  # resolve relative urls from the JSONL's folder so file_name can be rewritten
            record.path = _resolved(record, Path(src).parent)
    return Converted(records, [], ImageTask.parse(task), list(dataset.classes))


def _resolved(record: ImageRecord, base: Path) -> Path | None:
    from jupyter_avml.data.urls import resolve_image_url

    try:
        return resolve_image_url(record.image_url, base)
    except DataError:
        return None
