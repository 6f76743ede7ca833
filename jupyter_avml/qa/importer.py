"""A registered dataset (or a JSONL file, registered on the way) as a persistent FiftyOne dataset.

One FiftyOne dataset per registered version, named ``avml-NAME-vVERSION-HASH8`` (``dataset_name``: the hash keeps
two workspaces' ``shapes`` version 1 apart in one database).
Running again reuses it; a changed file registers as a new version and so gets a new FiftyOne dataset, never a
stale view of the old one.

Each sample has
  * ``filepath``: the image (absolute, as pinned by the registry), ``metadata``: width and height in pixels as
    the image is seen (after EXIF orientation);
  * ``ground_truth``: the label (``labels.record_to_label``; crowd objects keep ``iscrowd``);
  * a tag ``train`` or ``validation``: the split training makes with ``split_ratio`` and ``seed``
    (``data.split.split_records``), recorded in ``dataset.info["avml"]``;
  * ``jsonl_file``, ``jsonl_line``: the row it came from (the file given, or the registry's snapshot when a
    registered dataset was given), and ``avml_row``: its 0-based row in the snapshot (what export works from);
  * ``image_sha256``: the hash the registry pinned; a sample whose image has the same bytes as an earlier
    sample's is tagged ``duplicate`` and names it in ``duplicate_of`` (exact duplicates, found at import).

The dataset is built under a temporary, non-persistent name and renamed (and made persistent) only once it is
complete: an interrupted import leaves no half-built dataset under the real name (FiftyOne deletes
non-persistent datasets itself once no process uses them; an exception deletes it at once). A lock file in the
workspace keeps two processes from building the same dataset at the same time.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_avml.errors import ConfigError, DataError, NotFoundError
from jupyter_avml.qa._progress import Progress, reporter
from jupyter_avml.qa.labels import GROUND_TRUTH, record_to_label
from jupyter_avml.tasks import ImageTask
from jupyter_avml.workspace import Workspace

DATASET_PREFIX = "avml-"
TRAIN_TAG, VALIDATION_TAG, DUPLICATE_TAG = "train", "validation", "duplicate"
DEFAULT_SPLIT_RATIO, DEFAULT_SEED = 0.2, 0  # the configuration's defaults (config/params.py)
BATCH = 1000  # samples per insert: large enough to amortise a round trip, small enough to show progress


def to_fiftyone(source, *, task: ImageTask | str | None = None, name: str | None = None,
                workspace: str | os.PathLike | Workspace | None = None, split_ratio: float = DEFAULT_SPLIT_RATIO,
                seed: int = DEFAULT_SEED, progress: bool | Progress = True):
    """The persistent FiftyOne dataset of ``source`` (built once, then reused).

    Parameters
    ----------
    source : a registered dataset (``"NAME"``, ``"dataset:NAME[:VERSION]"``, a ``DatasetVersion``), or a JSONL
        file, which is registered first (as ``name``, default: the file's stem) so that it has a version.
    task : the task of a JSONL file (a registered dataset knows its own).
    split_ratio, seed : the train/validation split the ``train``/``validation`` tags show (training's rule).
    progress : show a progress bar (True), nothing (False), or call ``progress(done, total)``.

    Returns
    -------
    fiftyone.core.dataset.Dataset

    Raises
    ------
    NotFoundError : no such dataset. DataError : the data has problems, or its images are not where they were
    registered (moved). ConfigError : a JSONL file without ``task``. FiftyOneError : FiftyOne cannot start.
    """
    from jupyter_avml.fileio import exclusive_lock
    from jupyter_avml.qa._fo import fiftyone

    ws = Workspace.resolve(workspace)
    version, lines = resolve_source(source, task=task, name=name, workspace=ws)
    fo = fiftyone(ws)
    records = version.records()
    check_images_present(version, records)
    final = dataset_name(version)
    with exclusive_lock(ws.ensure("fiftyone", "locks") / f"{final}.lock"):
        if fo.dataset_exists(final):
            dataset = fo.load_dataset(final)
            if (dataset.info.get("avml") or {}).get("complete"):
                _retag_split(dataset, version, records, split_ratio, seed)
                return dataset
            dataset.delete()  # a dataset of that name that is not ours, or not finished: build it again
        return _build(fo, final, version, records, lines, ws, split_ratio, seed, progress)


def open_dataset(source, *, task: ImageTask | str | None = None,
                 workspace: str | os.PathLike | Workspace | None = None, progress: bool | Progress = True):
    """A FiftyOne dataset of jupyter_avml: ``source`` itself, its name (``avml-...``, as ``avml qa import`` prints
    it), or anything ``to_fiftyone`` takes (imported, or reused, on the way)."""
    if hasattr(source, "info") and hasattr(source, "values"):
        return source
    if isinstance(source, str) and source.startswith(DATASET_PREFIX):
        from jupyter_avml.qa._fo import fiftyone

        fo = fiftyone(workspace)
        if fo.dataset_exists(source):
            return fo.load_dataset(source)
    return to_fiftyone(source, task=task, workspace=workspace, progress=progress)


def dataset_name(version) -> str:
    """``avml-NAME-vVERSION-HASH8``: the FiftyOne dataset of a registered version.

    ``HASH8`` hashes the version's content hash with its snapshot's path: the same content registered in two
    workspaces (a copied project, two test folders) has its images in two places, so two FiftyOne datasets.
    """
    digest = hashlib.sha256(f"{version.content_hash}\n{version.path}".encode()).hexdigest()
    return f"{DATASET_PREFIX}{version.name}-v{version.version}-{digest[:8]}"


def resolve_source(source, *, task=None, name: str | None = None, workspace: Workspace
                   ) -> tuple[Any, dict[int, tuple[str, int]] | None]:
    """``(DatasetVersion, {snapshot row: (file, line)} or None)`` of what ``to_fiftyone`` was given.

    A JSONL file is registered (identical content returns its existing version); the mapping then gives the
    line of each row in that file. For a registered dataset the mapping is None (the snapshot is the file).
    """
    from jupyter_avml.data.dataset_registry import (
        DatasetVersion,
        check_name,
        dataset_from_reference,
        get_dataset,
        is_dataset_reference,
        register_dataset_ex,
    )

    if isinstance(source, DatasetVersion):
        return source, None
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(f"expected a registered dataset name, 'dataset:NAME[:VERSION]' or a JSONL file, got "
                          f"{type(source).__name__}", field="source", value=repr(source))
    text = os.fspath(source)
    if is_dataset_reference(text):
        return dataset_from_reference(text, workspace), None
    path = Path(text).expanduser()
    if path.suffix.lower() in (".jsonl", ".json") or path.is_file():
        if not path.is_file():
            raise DataError(f"{path}: no such file (the JSONL to look at in FiftyOne)")
        if task is None:
            raise ConfigError(f"{path}: give the task of this JSONL file (task=... or --task)", field="task")
        task = ImageTask.parse(task)
        registered_as = check_name(name) if name else registry_name(path)
        try:
            version, _created = register_dataset_ex(registered_as, path, task=task, workspace=workspace)
        except DataError as exc:
            raise DataError(f"{exc}\n(to look at these problems in FiftyOne first: `avml qa check {path} --task "
                            f"{task.value}`)", exc.problems) from None
        if version.task != task.value:
            raise ConfigError(f"{path}: dataset {registered_as!r} is registered for {version.task}, not "
                              f"{task.value}; give another name", field="task", value=task.value)
        return version, _source_lines(path, version, task)
    try:
        return get_dataset(text, workspace=workspace), None
    except ConfigError:  # not a valid dataset name either
        raise NotFoundError(f"{text!r} is neither a registered dataset nor a JSONL file (see `avml datasets "
                            f"list`)") from None


def registry_name(path: Path) -> str:
    """The registry name a JSONL file is registered under by default: its stem, made a valid name."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip(".-") or "dataset"
    return stem[:128]


def check_images_present(version, records: Sequence) -> None:
    """``DataError`` when images of ``version`` are not where they were registered (a moved dataset)."""
    missing = [r for r in records if not r.path.is_file()]
    if not missing:
        return
    first = missing[0]
    raise DataError(f"{version.path}:{first.line}: image_url: {len(missing)} of {len(records)} images of dataset "
                    f"{version.name!r} version {version.version} are not where they were registered (first: "
                    f"{first.path}); if the data moved, register it again from its new place "
                    f"(`avml datasets register {version.name} NEW.jsonl --task {version.task}`)", [])


# -- building --------------------------------------------------------------------------------------------------
@dataclass
class SampleRow:
    """What one sample is made of: the record, the image size, where the row came from and its extras."""

    record: Any
    width: int
    height: int
    file: str
    line: int
    row: int
    sha256: str = ""
    tags: list[str] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)


def _build(fo, final: str, version, records: list, lines, ws: Workspace, split_ratio: float, seed: int, progress):
    task = ImageTask.parse(version.task)
    hashes = _pinned_hashes(version)
    sizes = image_sizes(records)
    split, split_note = _split(records, task, split_ratio, seed)
    rows = []
    for row, record in enumerate(records):
        file, line = lines[row] if lines else (str(version.path), record.line)
        rows.append(SampleRow(record, *sizes[row], file, line, row, hashes.get(str(record.path), ""),
                              [split.get(row, TRAIN_TAG)]))
    info = {"kind": "registered", "name": version.name, "version": version.version, "reference": version.reference,
            "content_hash": version.content_hash, "task": task.value, "snapshot": str(version.path),
            "source": version.source, "classes": list(version.classes), "workspace": str(ws.root),
            "split_ratio": split_ratio, "seed": seed, "split_note": split_note}
    return build_dataset(fo, final, task, rows, info, progress, f"importing {version.reference} into FiftyOne")


def build_dataset(fo, final: str, task: ImageTask, rows: Sequence[SampleRow], info: dict, progress, what: str):
    """Build the dataset ``final`` from ``rows`` under a temporary name; rename and persist it once complete.

    Samples whose image has the bytes of an earlier sample's are tagged ``duplicate`` (``duplicate_of``: the
    earlier image). ``info`` goes to ``dataset.info["avml"]`` with ``complete: True``.
    """
    building = fo.Dataset(f"{final}.building-{uuid.uuid4().hex[:8]}")  # not persistent until complete
    try:
        building.add_sample_field("avml_row", fo.IntField)
        first_of_hash: dict[str, str] = {}
        report = reporter(progress, len(rows), what)
        for start in range(0, len(rows), BATCH):
            samples = []
            for item in rows[start:start + BATCH]:
                path = str(item.record.path)
                tags, extra = list(item.tags), dict(item.fields)
                earlier = first_of_hash.setdefault(item.sha256, path) if item.sha256 else path
                if earlier != path:
                    tags.append(DUPLICATE_TAG)
                    extra["duplicate_of"] = earlier
                label = record_to_label(fo, item.record.label, task, item.width, item.height) \
                    if item.record.label is not None else None
                samples.append(fo.Sample(
                    filepath=path, tags=tags, metadata=fo.ImageMetadata(width=item.width, height=item.height),
                    jsonl_file=item.file, jsonl_line=item.line, avml_row=item.row, image_sha256=item.sha256,
                    **{GROUND_TRUTH: label}, **extra))
            building.add_samples(samples, progress=False)
            report(min(start + BATCH, len(rows)))
        building.info = {"avml": {**info, "complete": True}}
        building.default_classes = list(info.get("classes") or [])
        building.save()
        building.name = final
        building.persistent = True
    except BaseException:
        if fo.dataset_exists(building.name):
            building.delete()
        raise
    return building


def _pinned_hashes(version) -> dict[str, str]:
    """``{image path: sha256}`` as the registry pinned them at registration."""
    from jupyter_avml.fileio import read_json_object

    try:
        pinned = read_json_object(version.path.parent / "images.json") or {}
        return {str(k): str(v) for k, v in pinned.items()}
    except (OSError, ValueError) as exc:
        raise DataError(f"{version.path.parent / 'images.json'}: cannot read the image hashes of dataset "
                        f"{version.name!r} version {version.version}: {exc}") from None


def image_sizes(records: Sequence) -> list[tuple[int, int]]:
    """``(width, height)`` of each record: from ``image_details`` when given, else the file's header."""
    from jupyter_avml.data.images import image_size

    def size(record) -> tuple[int, int]:
        if record.width and record.height:
            return int(record.width), int(record.height)
        return image_size(record.path)

    todo = [r for r in records if not (r.width and r.height)]
    if len(todo) < 64:
        return [size(r) for r in records]
    with ThreadPoolExecutor(min(16, (os.cpu_count() or 2) * 2)) as pool:
        return list(pool.map(size, records, chunksize=64))


def _split(records: list, task: ImageTask, ratio: float, seed: int) -> tuple[dict[int, str], str]:
    """``({row: tag}, note)``; data too small to split is all ``train`` and the note says why."""
    from jupyter_avml.data.split import split_records

    try:
        _train, valid = split_records(records, task, ratio, seed)
    except DataError as exc:
        return {}, f"not split: {exc}"
    chosen = {id(r) for r in valid}
    return {row: (VALIDATION_TAG if id(r) in chosen else TRAIN_TAG) for row, r in enumerate(records)}, ""


def _retag_split(dataset, version, records: list, ratio: float, seed: int) -> None:
    """Re-tag ``train``/``validation`` when the split asked for differs from the one the dataset shows."""
    info = dict(dataset.info.get("avml") or {})
    if info.get("split_ratio") == ratio and info.get("seed") == seed:
        return
    split, note = _split(records, ImageTask.parse(version.task), ratio, seed)
    rows = dataset.values("avml_row")
    tags = dataset.values("tags")
    new_tags = [[t for t in old if t not in (TRAIN_TAG, VALIDATION_TAG)] + [split.get(row, TRAIN_TAG)]
                for row, old in zip(rows, tags, strict=True)]
    dataset.set_values("tags", new_tags)
    info.update(split_ratio=ratio, seed=seed, split_note=note)
    dataset.info = {**dataset.info, "avml": info}
    dataset.save()


def _source_lines(path: Path, version, task: ImageTask) -> dict[int, tuple[str, int]] | None:
    """``{snapshot row: (the JSONL given, its line)}``, matched by image path."""
    from jupyter_avml.data.validate import read_dataset

    try:
        given = read_dataset(path, task, check_images=False).records
    except DataError:
        return None
    by_path = {str(Path(r.path).resolve()): r.line for r in given}
    out = {}
    for row, record in enumerate(version.records()):
        line = by_path.get(str(record.path))
        out[row] = (str(path.resolve()), line) if line is not None else (str(version.path), record.line)
    return out
