"""Fixes made in FiftyOne back to the registry: a new dataset version, the original never changed.

``export(dataset)`` walks the samples in their row order and writes what is kept as a JSONL file in the workspace
(``fiftyone/exports/``), then registers it (``register_dataset_ex``) as the next version of the dataset (a check
dataset registers under its file's stem). What is kept:

* a sample tagged with one of ``drop_tags`` (default ``exclude``) is left out; so is a sample tagged
  ``mislabeled`` whose label was not changed (a label edited in the App, or in Python, is the fix: the row is
  kept with it);
* an object (detection, segmentation) with a ``drop_tags`` label tag is left out of its row;
* rows the QA pass found unreadable are left out (registration refuses them);
* every other row keeps its label as FiftyOne has it now (``labels.label_to_record``: untouched objects exactly
  as written).

Exporting with no change returns the version it came from (registration finds identical content). ``ExportResult``
prints what changed and the one line that trains on the new version.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_avml.errors import DataError
from jupyter_avml.qa.labels import GROUND_TRUTH, label_to_record
from jupyter_avml.tasks import ImageTask
from jupyter_avml.workspace import Workspace

EXCLUDE_TAG, MISLABELED_TAG = "exclude", "mislabeled"
MAX_LISTED = 20


@dataclass
class ExportResult:
    """A new (or identical) dataset version made from a FiftyOne dataset, and what changed."""

    version: object  # DatasetVersion
    created: bool
    path: Path | None  # the JSONL registered (None: nothing new was registered)
    kept: int
    excluded: list[str] = field(default_factory=list)   # "FILE:LINE: why"
    relabeled: list[str] = field(default_factory=list)  # "FILE:LINE: before -> after"
    objects_dropped: int = 0
    origin: str = ""

    @property
    def reference(self) -> str:
        return self.version.reference

    def to_json(self) -> dict:
        return {"reference": self.reference, "created": self.created, "path": self.path and str(self.path),
                "kept": self.kept,
                "excluded": self.excluded, "relabeled": self.relabeled, "objects_dropped": self.objects_dropped,
                "origin": self.origin}

    def __repr__(self) -> str:
        version = self.version
        head = (f"registered {version.name} version {version.version}" if self.created else
                f"no change: {version.name} version {version.version} already has this content")
        lines = [f"{head} ({self.kept} rows; from {self.origin})",
                 f"  excluded: {len(self.excluded)} rows; relabeled: {len(self.relabeled)} rows"
                 + (f"; objects removed: {self.objects_dropped}" if self.objects_dropped else "")]
        for title, items in (("excluded", self.excluded), ("relabeled", self.relabeled)):
            for item in items[:MAX_LISTED]:
                lines.append(f"    {title}: {item}")
            if len(items) > MAX_LISTED:
                lines.append(f"    ... and {len(items) - MAX_LISTED} more {title}")
        lines.append(f"train on it: training_data: {self.reference}   (avml train CONFIG.yaml --set "
                     f"training_data={self.reference})")
        return "\n".join(lines)


def export(dataset, *, name: str | None = None, drop_tags=(EXCLUDE_TAG,), description: str = "",
           workspace: str | os.PathLike | Workspace | None = None) -> ExportResult:
    """Register what the FiftyOne ``dataset`` holds now as a new dataset version (module docstring).

    ``name`` defaults to the registered dataset it came from (a check dataset: its file's stem).

    Raises
    ------
    DataError : a kept row has no valid label (e.g. a multi-class sample whose class was deleted), the file a
        check dataset came from changed since, or the registry refuses the result.
    """
    from jupyter_avml.data.dataset_registry import register_dataset_ex
    from jupyter_avml.data.records import ImageRecord
    from jupyter_avml.data.writer import write_jsonl
    from jupyter_avml.qa._fo import fiftyone

    ws = Workspace.resolve(workspace)
    fo = fiftyone(ws)
    info = dataset.info.get("avml") or {}
    task = ImageTask.parse(info.get("task", ""))
    originals, origin = _originals(info, ws)
    name = name or info.get("name") or info.get("registry_name")
    drop = set(drop_tags)
    kept: list[ImageRecord] = []
    excluded, relabeled, problems = [], [], []
    objects_dropped = 0
    view = dataset.select_fields([GROUND_TRUTH, "metadata", "avml_row", "jsonl_file", "jsonl_line"])
    rows = sorted(zip(view.values("avml_row"), view.values("jsonl_line"), view.values("jsonl_file"),
                      view.values("tags"), view.values(GROUND_TRUTH), view.values("metadata.width"),
                      view.values("metadata.height"), strict=True), key=lambda item: (item[0] < 0, item[0], item[1]))
    for row, line, file, tags, label, width, height in rows:
        where = f"{file}:{line}"
        original = originals.get(row if info.get("kind") == "registered" else line) if row >= 0 else None
        if original is None:  # an unreadable row of a check dataset (row -1)
            excluded.append(f"{where}: unreadable image")
            continue
        hit = sorted(drop & set(tags))
        if hit:
            excluded.append(f"{where}: tagged {', '.join(hit)}")
            continue
        if label is not None and task.has_boxes:
            before = len(label.detections)
            label = label.copy()
            label.detections = [d for d in label.detections if not drop & set(d.tags or ())]
            objects_dropped += before - len(label.detections)
        try:
            new = label_to_record(fo, label, task, int(width), int(height), original.label)
        except ValueError as exc:
            problems.append(f"{where}: label: {exc}; give it a label or tag it {EXCLUDE_TAG}")
            continue
        if new != original.label:
            relabeled.append(f"{where}: {_short(original.label)} -> {_short(new)}")
        elif MISLABELED_TAG in tags:
            excluded.append(f"{where}: tagged {MISLABELED_TAG} and not relabeled")
            continue
        kept.append(ImageRecord(str(original.path), new, original.width, original.height, original.format))
    if problems:
        raise DataError(f"FiftyOne dataset {dataset.name!r} cannot be exported: {len(problems)} rows without a "
                        f"valid label:\n  " + "\n  ".join(problems[:MAX_LISTED]), problems)
    if not kept:
        raise DataError(f"FiftyOne dataset {dataset.name!r}: every row is excluded; nothing to register")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = write_jsonl(kept, ws.ensure("fiftyone", "exports") / f"{name}-{stamp}.jsonl", task)
    text = description or f"QA export of {origin}: {len(excluded)} excluded, {len(relabeled)} relabeled"
    version, created = register_dataset_ex(name, path, task=task, workspace=ws, description=text)
    if not created:  # identical content: the registry keeps the version it has; this file would be litter
        Path(path).unlink(missing_ok=True)
    return ExportResult(version, created, Path(path) if created else None, len(kept), excluded, relabeled,
                        objects_dropped, origin)


def _originals(info: dict, ws: Workspace) -> tuple[dict, str]:
    """``({row or line: original record}, where they come from)``: the snapshot, or the checked file."""
    if info.get("kind") == "registered":
        from jupyter_avml.data.dataset_registry import get_dataset

        version = get_dataset(info["name"], info["version"], workspace=ws)
        return dict(enumerate(version.records())), version.reference
    if info.get("kind") == "check":
        from jupyter_avml.data.validate import read_dataset
        from jupyter_avml.qa.check import _file_sha256

        source = Path(info["source"])
        if not source.is_file() or _file_sha256(source) != info.get("file_sha256"):
            raise DataError(f"{source}: changed (or gone) since its QA check: run the check again "
                            f"(`avml qa check {source} --task {info.get('task')}`) and redo the fixes there")
        records = read_dataset(source, info["task"], check_images=False, skip_invalid=True).records
        return {r.line: r for r in records}, str(source)
    raise DataError("this FiftyOne dataset was not made by jupyter_avml (no origin in its info); import the data "
                    "with to_fiftyone / `avml qa import`")


def _short(label) -> str:
    if isinstance(label, str):
        return label
    names = [item if isinstance(item, str) else item.label for item in label]
    return "[" + ", ".join(names) + "]"
