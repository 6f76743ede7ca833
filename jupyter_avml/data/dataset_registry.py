"""The dataset registry: named, numbered, content-addressed versions of JSONL datasets in the workspace.

Layout (``Workspace.datasets_dir``)::

    datasets/NAME/index.json        every version of NAME (written atomically: tmp file + os.replace)
    datasets/NAME/.lock             fcntl lock taken while a version number is assigned
    datasets/NAME/vN/data.jsonl     the snapshot: the rows in canonical form, image_url = absolute path
    datasets/NAME/vN/images.json    {absolute image path: sha256 of its bytes} at registration

Registration validates the file first (``jupyter_avml.data.validate.validate_jsonl``, every image decoded)
and refuses data with any problem, with the validator's report as the message.

Content hash
------------
``sha256`` over ``"jupyter_avml-dataset/1\\n" + task + "\\n"`` followed by one line per row: the row's
canonical JSON (``ImageRecord.to_json``, keys sorted, no spaces) with ``image_url`` replaced by
``"sha256:<hash of the image file bytes>"``. So the hash does not depend on where the files are, nor on
loose spellings (``"0.26"`` and ``0.26`` are the same), but changes with any image byte, any label, the
order of the rows or the task. Registering content whose hash a version of NAME already has returns that
version unchanged (even from a copy in another folder, and whatever the description).

Images are not copied: a version pins its images by hash. ``get_dataset(..., verify=True)`` re-hashes
them and raises ``DataError`` naming every image that changed or disappeared since registration.

References: configs name a registered dataset as ``dataset:NAME`` (latest) or ``dataset:NAME:VERSION``;
``resolve_dataset_reference`` turns one into the snapshot's path.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from jupyter_avml.data.records import ImageRecord, sorted_classes
from jupyter_avml.data.validate import read_dataset, validate_jsonl
from jupyter_avml.data.writer import write_jsonl
from jupyter_avml.errors import ConfigError, DataError, NotFoundError
from jupyter_avml.fileio import atomic_write, exclusive_lock
from jupyter_avml.tasks import ImageTask
from jupyter_avml.workspace import Workspace

NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
REFERENCE_PREFIX = "dataset:"
HASH_HEADER = "jupyter_avml-dataset/1"
INDEX_NAME = "index.json"
SNAPSHOT_NAME = "data.jsonl"
IMAGES_NAME = "images.json"
MAX_PROBLEMS_SHOWN = 20

__all__ = ["DatasetVersion", "check_name", "dataset_from_reference", "get_dataset", "is_dataset_reference",
           "list_datasets", "register_dataset", "register_dataset_ex", "resolve_dataset_reference",
           "verify_dataset"]


@dataclass(frozen=True)
class DatasetVersion:
    """One registered version of a dataset.

    path: the snapshot JSONL (image URLs are absolute paths); source: the file it was registered from;
    content_hash: see the module docstring; rows: JSONL rows; images: distinct image files;
    classes: sorted class names; created: ISO 8601 time (UTC).
    """

    name: str
    version: int
    task: str
    path: Path
    source: str
    content_hash: str
    rows: int
    images: int
    classes: list[str] = field(default_factory=list)
    created: str = ""
    description: str = ""

    @property
    def reference(self) -> str:
        """``dataset:NAME:VERSION``, the form configs use."""
        return f"{REFERENCE_PREFIX}{self.name}:{self.version}"

    def records(self) -> list[ImageRecord]:
        """The snapshot's records, with ``path`` set to each image file (images are not opened here)."""
        return read_dataset(self.path, self.task, check_images=False).records


# ------------------------------------------------------------------------------------------ public API

def register_dataset(name: str, path: str | os.PathLike, *, task: ImageTask | str,
                     workspace: str | os.PathLike | Workspace | None = None, description: str = "",
                     prefix_map: Mapping[str, str | os.PathLike] | None = None) -> DatasetVersion:
    """Register the JSONL at ``path`` as the next version of ``name`` (or return the identical one).

    The file is validated first (``jupyter_avml.data.validate.validate_jsonl`` with ``check_images``):
    image URLs are resolved relative to the JSONL's folder, through ``prefix_map`` (URL prefix -> local
    folder), remote ones are downloaded into the workspace cache, and every image is decoded. Data with any
    problem is refused. Identical duplicate rows are dropped by the validator; ``rows`` counts the rows kept.

    Raises
    ------
    ConfigError : a bad name or task.
    DataError : the file cannot be read or has problems (the message is the validation report).
    """
    version, _created = register_dataset_ex(name, path, task=task, workspace=workspace,
                                            description=description, prefix_map=prefix_map)
    return version


def register_dataset_ex(name: str, path: str | os.PathLike, *, task: ImageTask | str,
                        workspace: str | os.PathLike | Workspace | None = None, description: str = "",
                        prefix_map: Mapping[str, str | os.PathLike] | None = None
                        ) -> tuple[DatasetVersion, bool]:
    """As ``register_dataset``; also says whether a new version was created (False: identical content)."""
    name = check_name(name)
    task = ImageTask.parse(task)
    ws = Workspace.resolve(workspace)
    source = Path(path).expanduser().resolve()
    if not source.is_file():
        raise DataError(f"{source}: no such file (the JSONL to register as dataset {name!r})")
    report = validate_jsonl(source, task, check_images=True, prefix_map=prefix_map, cache_dir=ws.cache_dir)
    if not report.ok:
        raise DataError(f"dataset {name!r} not registered: the data has problems\n{report.format()}",
                        report.problems)
    records = report.records
    for record in records:
        record.path = Path(record.path).resolve()  # the snapshot and the pinned hashes use canonical paths
    image_hashes = _hash_images(records)
    content_hash = _content_hash(records, task, image_hashes)

    folder = ws.datasets_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(folder / ".lock"):
        entries = _load_index(folder, name)
        for entry in entries:
            if entry["content_hash"] == content_hash:
                return _from_entry(folder, name, entry), False
        number = max((entry["version"] for entry in entries), default=0) + 1
        vdir = folder / f"v{number}"
        vdir.mkdir(parents=True, exist_ok=True)
        snapshot = [ImageRecord(str(r.path), r.label, r.width, r.height, r.format) for r in records]
        write_jsonl(snapshot, vdir / SNAPSHOT_NAME, task)
        _write_json(vdir / IMAGES_NAME, {str(p): h for p, h in sorted(image_hashes.items())})
        entry = {
            "version": number,
            "task": task.value,
            "path": f"v{number}/{SNAPSHOT_NAME}",
            "source": str(source),
            "content_hash": content_hash,
            "rows": len(records),
            "images": len(image_hashes),
            "classes": sorted_classes(records),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "description": str(description or ""),
        }
        _write_json(folder / INDEX_NAME, {"name": name, "versions": entries + [entry]})
    return _from_entry(folder, name, entry), True


def get_dataset(name: str, version: int | str | None = None, *,
                workspace: str | os.PathLike | Workspace | None = None, verify: bool = False) -> DatasetVersion:
    """Version ``version`` of ``name`` (the latest when None).

    With ``verify=True`` the images are re-hashed; ``DataError`` names each one that changed or is gone.

    Raises
    ------
    NotFoundError : no such name or version (the message lists the known ones).
    """
    name = check_name(name)
    ws = Workspace.resolve(workspace)
    folder = ws.datasets_dir / name
    entries = _load_index(folder, name)
    if not entries:
        known = _known_names(ws)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(known) if known else "none registered"
        raise NotFoundError(f"no dataset named {name!r} in workspace {ws.root} (known: {listing}){hint}")
    if version is None or (isinstance(version, str) and version.strip().lower() == "latest"):
        entry = max(entries, key=lambda e: e["version"])
    else:
        number = _version_number(version)
        found = [e for e in entries if e["version"] == number]
        if not found:
            versions = ", ".join(str(e["version"]) for e in entries)
            raise NotFoundError(f"dataset {name!r} has no version {version!r} (versions: {versions})")
        entry = found[0]
    result = _from_entry(folder, name, entry)
    if verify:
        verify_dataset(result)
    return result


def list_datasets(workspace: str | os.PathLike | Workspace | None = None) -> list[DatasetVersion]:
    """Every version of every dataset, by name then version."""
    ws = Workspace.resolve(workspace)
    out = []
    for name in _known_names(ws):
        folder = ws.datasets_dir / name
        out.extend(_from_entry(folder, name, entry)
                   for entry in sorted(_load_index(folder, name), key=lambda e: e["version"]))
    return out


def verify_dataset(version: DatasetVersion) -> None:
    """Re-hash the images of ``version``; ``DataError`` lists each one changed or missing since registration."""
    vdir = version.path.parent
    try:
        pinned = json.loads((vdir / IMAGES_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{vdir / IMAGES_NAME}: cannot read the image hashes of dataset "
                        f"{version.name!r} version {version.version}: {exc}") from None
    problems = []
    current: dict[Path, str] = {}
    for image, expected in pinned.items():
        path = Path(image)
        if not path.is_file():
            problems.append(f"{image}: missing (registered with sha256 {expected[:12]})")
            continue
        digest = _file_sha256(path)
        current[path] = digest
        if digest != expected:
            problems.append(f"{image}: changed since registration (sha256 {expected[:12]}, now {digest[:12]})")
    if problems:
        raise DataError(_problem_message(
            f"dataset {version.name!r} version {version.version}: {len(problems)} image(s) changed since it "
            f"was registered; register the data again for a new version", problems), problems)
    task = ImageTask.parse(version.task)
    records = version.records()
    try:
        recomputed = _content_hash(records, task, current)
    except KeyError:  # the snapshot names an image that was not registered
        recomputed = None
    if recomputed != version.content_hash:
        raise DataError(f"{version.path}: the snapshot of dataset {version.name!r} version {version.version} "
                        f"was edited after registration (its content hash no longer matches)")


def is_dataset_reference(value: object) -> bool:
    """True for strings of the form ``dataset:NAME`` or ``dataset:NAME:VERSION``."""
    return isinstance(value, str) and value.startswith(REFERENCE_PREFIX)


def resolve_dataset_reference(reference: str,
                              workspace: str | os.PathLike | Workspace | None = None) -> Path:
    """``dataset:NAME`` (latest) or ``dataset:NAME:VERSION`` -> the snapshot JSONL of that version."""
    return dataset_from_reference(reference, workspace).path


def dataset_from_reference(reference: str,
                           workspace: str | os.PathLike | Workspace | None = None) -> DatasetVersion:
    """The ``DatasetVersion`` a ``dataset:NAME[:VERSION]`` reference names."""
    if not is_dataset_reference(reference):
        raise ConfigError(f"expected a dataset reference 'dataset:NAME' or 'dataset:NAME:VERSION', "
                          f"got {reference!r}", value=reference)
    rest = reference[len(REFERENCE_PREFIX):]
    name, sep, version = rest.partition(":")
    if not name or (sep and not version):
        raise ConfigError(f"expected a dataset reference 'dataset:NAME' or 'dataset:NAME:VERSION', "
                          f"got {reference!r}", value=reference)
    return get_dataset(name, version if sep else None, workspace=workspace)


def check_name(name: object) -> str:
    """``name`` when it is a valid dataset name; ``ConfigError`` otherwise."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"dataset name must be 1-128 characters among letters, digits, '_', '.' and '-', "
                          f"not starting with '.' or '-'; got {name!r}", field="name", value=name)
    return name


# ------------------------------------------------------------------------------------------ messages

def _problem_message(head: str, lines: list[str]) -> str:
    shown = lines[:MAX_PROBLEMS_SHOWN]
    more = len(lines) - len(shown)
    return head + ":\n  " + "\n  ".join(shown) + (f"\n  ... and {more} more" if more > 0 else "")


# ------------------------------------------------------------------------------------------ hashing

def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_images(records: list[ImageRecord]) -> dict[Path, str]:
    """``{image path: sha256}``, each file read once however many rows name it."""
    out: dict[Path, str] = {}
    for record in records:
        if record.path not in out:
            out[record.path] = _file_sha256(record.path)
    return out


def _content_hash(records: list[ImageRecord], task: ImageTask, image_hashes: Mapping[Path, str]) -> str:
    digest = hashlib.sha256(f"{HASH_HEADER}\n{task.value}\n".encode())
    for record in records:
        row = record.to_json(task)
        row["image_url"] = "sha256:" + image_hashes[record.path]
        digest.update(json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ index

def _load_index(folder: Path, name: str) -> list[dict]:
    index = folder / INDEX_NAME
    if not index.is_file():
        return []
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        entries = list(data["versions"])
        for entry in entries:
            entry["version"] = int(entry["version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{index}: the registry index of dataset {name!r} is unreadable ({exc}); "
                        f"restore it or remove the folder {folder}") from None
    return entries


def _from_entry(folder: Path, name: str, entry: dict) -> DatasetVersion:
    return DatasetVersion(
        name=name, version=int(entry["version"]), task=str(entry["task"]), path=folder / entry["path"],
        source=str(entry.get("source", "")), content_hash=str(entry["content_hash"]),
        rows=int(entry.get("rows", 0)), images=int(entry.get("images", 0)),
        classes=list(entry.get("classes", [])), created=str(entry.get("created", "")),
        description=str(entry.get("description", "")))


def _known_names(ws: Workspace) -> list[str]:
    root = ws.datasets_dir
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / INDEX_NAME).is_file() and NAME_PATTERN.fullmatch(p.name))


def _version_number(version: int | str) -> int:
    text = str(version).strip()
    if text[:1] in ("v", "V"):
        text = text[1:]
    if isinstance(version, bool) or not text.isdigit() or int(text) < 1:
        raise ConfigError(f"a dataset version is a positive integer (or 'latest'), got {version!r}",
                          field="version", value=version)
    return int(text)


def _write_json(path: Path, data) -> None:
    """Write ``data`` atomically and durably: a reader sees the old file or the new one, never half of one."""

    def write(handle) -> None:
        json.dump(data, handle, indent=1, ensure_ascii=False)
        handle.write("\n")

    atomic_write(path, write, binary=False, fsync=True)
