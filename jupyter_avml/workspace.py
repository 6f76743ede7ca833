"""The workspace: one folder that holds everything jupyter_avml writes.

Resolution order: an explicit argument, then ``$AVML_WORKSPACE``, then ``./avml-workspace``.
Nothing is created until something is written (no settings file at import).

``Workspace.resolve`` checks the path once, before anything is read or written, and raises
``WorkspaceError`` naming the path and the problem: it is a file (or lies under one), it is inside a system
pseudo-filesystem (``/proc``, ``/sys``), or it cannot be written (a read-only file system, or no write
permission on the folder that would hold it). Every command goes through ``resolve``, so a bad workspace is
one clear message everywhere instead of tracebacks or an empty "no runs yet".
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from jupyter_avml.errors import ConfigError

ENV_VAR = "AVML_WORKSPACE"
DEFAULT_DIRNAME = "avml-workspace"
PSEUDO_FILESYSTEMS = ("/proc", "/sys")


class WorkspaceError(ConfigError):
    """The workspace path cannot hold a workspace (the message names the path and why)."""


@dataclass(frozen=True)
class Workspace:
    """Paths inside one workspace folder; ``ensure()`` creates them on demand."""

    root: Path

    @classmethod
    def resolve(cls, path: str | os.PathLike | Workspace | None = None) -> Workspace:
        """The workspace at ``path`` (default ``$AVML_WORKSPACE``, else ``./avml-workspace``), checked.

        Raises
        ------
        WorkspaceError
            the path is a file or under one, under ``/proc`` or ``/sys``, or not writable.
        """
        if isinstance(path, Workspace):
            return path
        origin = "workspace"
        if path is None:
            env = os.environ.get(ENV_VAR)
            path, origin = (env, f"workspace (${ENV_VAR})") if env else (DEFAULT_DIRNAME, "default workspace")
        try:
            root = Path(path).expanduser().resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
            raise WorkspaceError(f"{origin} {path}: cannot be resolved: {exc}", field="workspace",
                                 value=str(path)) from None
        check_workspace_path(root, origin)
        return cls(root)

    def ensure(self, *parts: str) -> Path:
        """Return ``root/parts...``, creating the folder if needed.

        Raises
        ------
        WorkspaceError
            the folder cannot be created (the message names it and the reason).
        DiskFullError
            the disk is full.
        """
        folder = self.root.joinpath(*parts)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from jupyter_avml.fileio import DiskFullError, is_disk_full

            if is_disk_full(exc):
                raise DiskFullError(folder) from None
            raise WorkspaceError(f"workspace {self.root}: cannot create {folder}: {exc.strerror or exc}",
                                 field="workspace", value=str(self.root)) from None
        return folder

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def experiments_dir(self) -> Path:
        return self.root / "experiments"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def tracking_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "mlartifacts"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def __fspath__(self) -> str:
        return str(self.root)


def check_workspace_path(root: Path, origin: str = "workspace") -> None:
    """Raise ``WorkspaceError`` unless ``root`` is (or can become) a writable folder; creates nothing.

    ``root`` is absolute. When it does not exist yet, the nearest existing folder above it is checked, since
    that is where it would be created.
    """
    def fail(problem: str) -> WorkspaceError:
        return WorkspaceError(f"{origin} {root}: {problem}", field="workspace", value=str(root))

    for pseudo in PSEUDO_FILESYSTEMS:
        if root == Path(pseudo) or Path(pseudo) in root.parents:
            raise fail(f"is inside {pseudo}, a system pseudo-filesystem; choose a folder of your own "
                       f"(--workspace or ${ENV_VAR})")
    existing = root
    while True:
        try:
            info = os.stat(existing)
            break
        except (FileNotFoundError, NotADirectoryError):
            if existing.parent == existing:
                raise fail("no existing folder above it") from None
            existing = existing.parent
        except OSError as exc:
            raise fail(f"cannot be checked: {existing}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        if existing == root:
            raise fail("is a file, not a folder; a workspace is a folder (give another path)")
        raise fail(f"cannot be created: {existing} is a file, not a folder")
    problem = _not_writable(existing)
    if problem:
        where = "" if existing == root else f" ({existing}, where it would be created)"
        raise fail(f"is not writable{where}: {problem}")


def _not_writable(folder: Path) -> str | None:
    """Why nothing can be created in the existing ``folder``, or None."""
    statvfs = getattr(os, "statvfs", None)
    if statvfs is not None:
        try:
            if statvfs(folder).f_flag & os.ST_RDONLY:
                return "read-only file system"
        except OSError:
            pass  # no answer from the file system: the permission check below still applies
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    return None
