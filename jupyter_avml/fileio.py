"""Files that other processes read while we write them: atomic replacement, locks, a full disk.

Every file jupyter_avml writes that another process may read at any moment (run and experiment records,
checkpoints, models, caches, registries) is written with ``atomic_write`` (or one of its typed forms): the
content goes to a uniquely named temporary file in the same folder, which is renamed over the target, so a
reader sees the old file or the new one and never half of one, two writers never share a temporary file, and
a write that fails (a kill excepted) removes its temporary file.

A full disk (``ENOSPC``, ``EDQUOT``) raises ``DiskFullError`` naming the path, once, at the write that hit it.

Locks are ``flock`` locks on a lock file (released by the OS when the holder dies, however it dies):
``exclusive_lock`` waits for one; ``try_lock`` takes one if free and keeps it until its handle is closed;
``lock_is_held`` asks without keeping it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from jupyter_avml.errors import AvmlError

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(AvmlError, OSError):
    """No space left on the device that holds ``path``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        super().__init__(f"no space left on device: {self.path}")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a full disk or quota."""
    while exc is not None:
        if isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in _DISK_FULL):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def atomic_write(path: str | os.PathLike, write: Callable[[IO], Any], *, binary: bool = True,
                 fsync: bool = False) -> Path:
    """Create or replace ``path`` with what ``write(file)`` writes, atomically (see the module docstring).

    ``fsync`` flushes the content to the disk before the rename, for records that must survive a power cut
    (the dataset registry's index).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            write(handle)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(path) from exc
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text), binary=False)


def atomic_write_json(path: str | os.PathLike, data: Any, *, indent: int | None = None,
                      default: Callable[[Any], Any] | None = str) -> Path:
    """``data`` as JSON (values JSON cannot hold go through ``default``, ``str`` unless told otherwise)."""
    return atomic_write_text(path, json.dumps(data, indent=indent, default=default))


class DamagedFileError(ValueError):
    """A file that exists but does not hold what it should: ``path`` and, in a few words, ``reason``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path} is damaged ({reason})")
        self.path = Path(path)
        self.reason = reason


def read_json_object(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when the file is missing. Raises ``DamagedFileError`` (a
    ``ValueError``) when it is damaged (not JSON, or not an object), so callers can say which file and why."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise DamagedFileError(path, f"not UTF-8 text: {exc.reason}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DamagedFileError(path, f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DamagedFileError(path, f"a JSON {type(data).__name__}, not an object")
    return data


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on the lock file ``path`` for the block, waiting for it if another process has it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def try_lock(path: str | os.PathLike) -> IO | None:
    """Take the lock on ``path`` if no process holds it: the open handle (the lock lasts until it is closed or
    the process ends), else None."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def lock_is_held(path: str | os.PathLike) -> bool:
    """Whether some process holds the lock on ``path`` (a missing file is a free lock)."""
    if not Path(path).exists():
        return False
    handle = try_lock(path)
    if handle is None:
        return True
    handle.close()
    return False
