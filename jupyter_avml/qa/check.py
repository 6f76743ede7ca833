"""A QA pass on the data alone, before any training: what ``avml validate`` finds, in FiftyOne.

``check_data(FILE, task=...)`` validates the file exactly as ``avml validate`` does (``data.validate.validate_jsonl``
with the images decoded: the same report, the same numbers) and builds a FiftyOne dataset
``avml-check-STEM-HASH8`` (the hash of the file's bytes: a changed file gets a new dataset) where the numbers
can be looked at:

* every valid row is a sample (as ``to_fiftyone`` makes them: ground truth, ``jsonl_file``/``jsonl_line``);
* a row rejected only for its image (missing, empty, truncated, not an image) is a sample too, tagged
  ``unreadable``, with its ``problems``: the App shows what cannot be opened;
* exact duplicate images (same bytes) are tagged ``duplicate`` (``duplicate_of`` names the first);
* objects get label tags ``tiny`` (a side under ``tiny_px`` pixels) or ``degenerate`` (a side under one
  pixel: valid fractions that cover no pixel), and the sample the same tag; per-object ``width_px`` and
  ``height_px`` give the sizes to sort and filter by.

``DataCheck`` holds the validation report (``report``, whose ``format()`` is ``avml validate``'s text) and the
counts; its text is that report followed by the FiftyOne numbers. Such a dataset is not registered: fix the data
(tag ``exclude``, edit labels), then ``export`` registers what is kept as a dataset version to train on.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_avml.errors import ConfigError, DataError
from jupyter_avml.qa.importer import SampleRow, build_dataset, image_sizes, registry_name
from jupyter_avml.tasks import ImageTask
from jupyter_avml.workspace import Workspace

CHECK_PREFIX = "avml-check-"
TINY_TAG, DEGENERATE_TAG, UNREADABLE_TAG = "tiny", "degenerate", "unreadable"
DEFAULT_TINY_PX = 4.0


@dataclass
class DataCheck:
    """The QA pass of one file: the validation report, the FiftyOne dataset and what was tagged."""

    report: object  # data.validate.ValidationReport
    dataset: object
    duplicates: int = 0
    unreadable: int = 0
    tiny: int = 0
    degenerate: int = 0
    object_sides_px: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict:
        """The numbers, as ``avml validate --json`` names them, plus the FiftyOne tags."""
        report = self.report
        return {"rows": report.rows, "valid": len(report.records), "rejected": len(report.rejected),
                "identical_duplicates_dropped": report.duplicates_dropped, "problems": len(report.problems),
                "class_counts": {k: list(v) for k, v in report.class_counts().items()},
                "duplicate_images": self.duplicates, "unreadable_images": self.unreadable,
                "tiny_objects": self.tiny, "degenerate_objects": self.degenerate,
                "object_sides_px": dict(self.object_sides_px), "dataset": self.dataset.name}

    def __repr__(self) -> str:
        lines = [self.report.format(), "", f"FiftyOne dataset {self.dataset.name}: {len(self.dataset)} samples"]
        lines.append(f"  exact duplicate images (same bytes): {self.duplicates}  (tag {'duplicate'})")
        lines.append(f"  unreadable images: {self.unreadable}  (tag {UNREADABLE_TAG})")
        if self.report.task.has_boxes:
            lines.append(f"  tiny objects: {self.tiny}  (label tag {TINY_TAG}); degenerate objects: {self.degenerate}"
                         f"  (label tag {DEGENERATE_TAG})")
            if self.object_sides_px:
                sides = self.object_sides_px
                lines.append(f"  object sides min/median/max: {sides['min']:.1f}/{sides['median']:.1f}/"
                             f"{sides['max']:.1f} px")
        return "\n".join(lines)


def check_data(path: str | os.PathLike, *, task: ImageTask | str,
               workspace: str | os.PathLike | Workspace | None = None, tiny_px: float = DEFAULT_TINY_PX,
               progress=True) -> DataCheck:
    """Validate ``path`` as ``avml validate`` does and show it in FiftyOne (module docstring).

    Raises
    ------
    DataError : the file itself cannot be read (missing, a folder, not JSON Lines).
    """
    from jupyter_avml.data.validate import validate_jsonl
    from jupyter_avml.fileio import exclusive_lock
    from jupyter_avml.qa._fo import fiftyone

    task = ImageTask.parse(task)
    if isinstance(tiny_px, bool) or not isinstance(tiny_px, (int, float)) or tiny_px < 0:
        raise ConfigError(f"tiny_px must be a number of pixels >= 0, got {tiny_px!r}", field="tiny_px", value=tiny_px)
    ws = Workspace.resolve(workspace)
    path = Path(path).expanduser().resolve()
    report = validate_jsonl(path, task, check_images=True, cache_dir=ws.cache_dir)
    if report.file_problems:
        raise DataError(report.format(), report.problems)
    fo = fiftyone(ws)
    file_hash = _file_sha256(path)
    name = f"{CHECK_PREFIX}{registry_name(path)}-{file_hash[:8]}"
    with exclusive_lock(ws.ensure("fiftyone", "locks") / f"{name}.lock"):
        if fo.dataset_exists(name) and (fo.load_dataset(name).info.get("avml") or {}).get("complete"):
            dataset = fo.load_dataset(name)
        else:
            if fo.dataset_exists(name):
                fo.delete_dataset(name)
            rows = _rows(report, path, task)
            info = {"kind": "check", "task": task.value, "source": str(path), "file_sha256": file_hash,
                    "classes": list(report.classes), "workspace": str(ws.root), "registry_name": registry_name(path)}
            dataset = build_dataset(fo, name, task, rows, info, progress, f"importing {path.name} into FiftyOne")
            _tag_objects(dataset, task, tiny_px)
    return _summary(report, dataset, task)


def _rows(report, path: Path, task: ImageTask) -> list[SampleRow]:
    records = list(report.records)
    sizes = image_sizes(records)
    rows = [SampleRow(r, *size, str(path), r.line, k, _file_sha256(r.path)) for k, (r, size)
            in enumerate(zip(records, sizes, strict=True))]
    for record, problems in _unreadable(report, path, task):
        rows.append(SampleRow(record, 1, 1, str(path), record.line, -1, "", [UNREADABLE_TAG],
                              {"problems": problems}))
    return rows


def _unreadable(report, path: Path, task: ImageTask):
    """``(record, [problem texts])`` of the rows rejected only because their image cannot be read."""
    from jupyter_avml.data.jsonl import parse_record
    from jupyter_avml.data.urls import resolve_image_url

    for rejected in report.rejected:
        if not rejected.problems or not all(p.field == "image_url" and p.message.startswith("image ")
                                            for p in rejected.problems):
            continue
        try:
            record = parse_record(json.loads(rejected.text), task, source=str(path), line=rejected.line, problems=[])
            if record is None:
                continue
            record.path = resolve_image_url(record.image_url, path.parent)
        except (ValueError, DataError):
            continue
        record.label = None  # the App shows the file and its problems; the label is in the row
        yield record, [str(p) for p in rejected.problems]


def _tag_objects(dataset, task: ImageTask, tiny_px: float) -> None:
    """Per-object sizes in pixels, and ``tiny``/``degenerate`` label and sample tags."""
    if not task.has_boxes:
        return
    from jupyter_avml.qa.labels import GROUND_TRUTH

    for sample in dataset.select_fields([GROUND_TRUTH, "metadata"]).iter_samples(autosave=True, batch_size=500):
        if sample[GROUND_TRUTH] is None:
            continue
        width, height = sample.metadata.width, sample.metadata.height
        tags = set(sample.tags)
        for detection in sample[GROUND_TRUTH].detections:
            x, y, w, h = detection.bounding_box
            detection["width_px"], detection["height_px"] = w * width, h * height
            side = min(w * width, h * height)
            kind = DEGENERATE_TAG if side < 1.0 else TINY_TAG if side < tiny_px else None
            if kind:
                detection.tags = sorted(set(detection.tags) | {kind})
                tags.add(kind)
        sample.tags = sorted(tags)


def _summary(report, dataset, task: ImageTask) -> DataCheck:
    from jupyter_avml.qa.importer import DUPLICATE_TAG
    from jupyter_avml.qa.labels import GROUND_TRUTH

    tags = dataset.count_sample_tags()
    check = DataCheck(report, dataset, duplicates=tags.get(DUPLICATE_TAG, 0), unreadable=tags.get(UNREADABLE_TAG, 0))
    if task.has_boxes:
        label_tags = dataset.count_label_tags(GROUND_TRUTH)
        check.tiny, check.degenerate = label_tags.get(TINY_TAG, 0), label_tags.get(DEGENERATE_TAG, 0)
        widths = [v for values in dataset.values(f"{GROUND_TRUTH}.detections.width_px") for v in (values or ())]
        heights = [v for values in dataset.values(f"{GROUND_TRUTH}.detections.height_px") for v in (values or ())]
        sides = [min(w, h) for w, h in zip(widths, heights, strict=True)]
        if sides:
            check.object_sides_px = {"min": min(sides), "median": statistics.median(sides), "max": max(sides)}
    return check


def _file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
