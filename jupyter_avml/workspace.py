"""The workspace: one folder that holds everything jupyter_avml writes.

Resolution order: an explicit argument, then ``$AVML_WORKSPACE``, then ``./avml-workspace``.
Nothing is created until something is written (no settings file at import).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "AVML_WORKSPACE"
DEFAULT_DIRNAME = "avml-workspace"


@dataclass(frozen=True)
class Workspace:
    """Paths inside one workspace folder; ``ensure()`` creates them on demand."""

    root: Path

    @classmethod
    def resolve(cls, path: str | os.PathLike | Workspace | None = None) -> Workspace:
        if isinstance(path, Workspace):
            return path
        if path is None:
            path = os.environ.get(ENV_VAR) or DEFAULT_DIRNAME
        return cls(Path(path).expanduser().resolve())

    def ensure(self, *parts: str) -> Path:
        """Return ``root/parts...``, creating the folder if needed."""
        folder = self.root.joinpath(*parts)
        folder.mkdir(parents=True, exist_ok=True)
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
