"""Write records as the spec's JSONL."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from jupyter_avml.data.records import ImageRecord
from jupyter_avml.tasks import ImageTask


def write_jsonl(records: Iterable[ImageRecord], path: str | os.PathLike, task: ImageTask | str) -> Path:
    """Write one JSON object per record (``ImageRecord.to_json``); returns the path written.

    The file is written to a temporary name and renamed, so a reader never sees half a file.
    """
    from jupyter_avml.fileio import atomic_write

    task = ImageTask.parse(task)

    def write(handle) -> None:
        for record in records:
            handle.write(json.dumps(record.to_json(task), separators=(",", ":")) + "\n")

    return atomic_write(path, write, binary=False)


def relative_url(image: Path, jsonl_dir: Path) -> str:
    """The ``image_url`` that resolves to ``image`` from a JSONL file in ``jsonl_dir`` (POSIX separators)."""
    try:
        return Path(os.path.relpath(Path(image).resolve(), Path(jsonl_dir).resolve())).as_posix()
    except ValueError:  # another drive on Windows: keep it absolute
        return Path(image).resolve().as_posix()
