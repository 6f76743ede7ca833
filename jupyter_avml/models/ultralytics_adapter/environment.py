"""Keep ultralytics inside the workspace and off the network (part of ``models.ultralytics_adapter``).

At import, ultralytics creates a settings file in the user's config folder (``~/.config/Ultralytics``),
resolves DNS names to decide whether it is online, and later may send usage events, upload to its
platform, check PyPI for updates or start experiment-tracker integrations. ``prepare_ultralytics`` must
run before the first ``import ultralytics`` of the process; it points all of that at
``<workspace>/cache/ultralytics`` and switches it off:

- ``YOLO_CONFIG_DIR`` -> ``<workspace>/cache/ultralytics`` (the settings file lives in its ``Ultralytics/``);
- ``YOLO_OFFLINE=1``: ultralytics' online check answers False without touching the network, which gates its
  usage events, update checks and error reporting;
- ``YOLO_VERBOSE`` from the argument (ultralytics' console logging); ``YOLO_AUTOINSTALL=False`` (no pip installs);
- settings: ``sync`` and every integration flag (ClearML, Comet, DVC, MLflow, Ray Tune, TensorBoard, W&B,
  the VS Code and OpenVINO hints) False, no platform API key, and its datasets/weights/runs folders inside
  the workspace. They are written into the settings file before the import (ultralytics derives its
  folder constants at import) and applied again through ``SETTINGS.update`` after it.

ultralytics' process-wide ``PIL.Image.open`` patch (HEIF support installed on demand) is undone, so PIL
keeps reporting non-image files with its own errors (see ``_restore_pil_open``).

Explicit downloads stay possible: ``build_yolo(pretrained=True)`` fetches its weights itself when the host is
reachable (``YOLO_OFFLINE`` only silences ultralytics' own traffic).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from jupyter_avml.fileio import atomic_write_json, read_json_object
from jupyter_avml.workspace import Workspace

# Settings flags written before import. After import, every boolean setting of the installed version is
# turned off (this list only needs to cover what is read at import time or before the first update).
_OFF_BEFORE_IMPORT = ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb",
                      "vscode_msg", "openvino_msg")


@dataclass(frozen=True)
class UltralyticsDirs:
    """Where ultralytics keeps its files inside a workspace."""

    root: Path

    @classmethod
    def of(cls, workspace_dir: str | os.PathLike | Workspace | None) -> UltralyticsDirs:
        return cls(Workspace.resolve(workspace_dir).cache_dir / "ultralytics")

    @property
    def config_dir(self) -> Path:
        """``YOLO_CONFIG_DIR``; ultralytics adds ``Ultralytics/`` below it."""
        return self.root

    @property
    def settings_file(self) -> Path:
        return self.root / "Ultralytics" / "settings.json"

    @property
    def weights_dir(self) -> Path:
        return self.root / "weights"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def models_dir(self) -> Path:
        """Model YAML files written by ``build_yolo``."""
        return self.root / "models"

    def folder_settings(self) -> dict[str, str]:
        return {"datasets_dir": str(self.datasets_dir), "weights_dir": str(self.weights_dir),
                "runs_dir": str(self.runs_dir)}


def prepare_ultralytics(workspace_dir: str | os.PathLike | Workspace | None, *, verbose: bool = False) -> None:
    """Confine ultralytics to ``workspace_dir`` and keep it offline; safe to call many times.

    Call it before the first ``import ultralytics`` in the process (``build_yolo`` does). Called after an
    import made elsewhere, it still re-points the settings file into this workspace and switches the flags
    off, but folders that ultralytics computed at its import (e.g. for fonts) stay where they were.

    Parameters
    ----------
    workspace_dir
        The workspace (see ``Workspace.resolve``); files go to ``<workspace>/cache/ultralytics``.
    verbose
        ultralytics' console output (``YOLO_VERBOSE``; INFO when True, errors only otherwise).
    """
    dirs = UltralyticsDirs.of(workspace_dir)
    os.environ["YOLO_CONFIG_DIR"] = str(dirs.config_dir)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_VERBOSE"] = "True" if verbose else "False"
    os.environ["YOLO_AUTOINSTALL"] = "False"  # never pip-install missing packages (read at import)
    # A platform key in the environment would make ultralytics' trainer upload runs.
    os.environ.pop("ULTRALYTICS_API_KEY", None)
    folders = dirs.folder_settings()
    if "ultralytics.utils" not in sys.modules:
        _write_settings_before_import(dirs.settings_file, {**folders, **dict.fromkeys(_OFF_BEFORE_IMPORT, False),
                                                           "api_key": ""})

    from ultralytics import utils as ultralytics_utils

    settings = ultralytics_utils.SETTINGS
    if Path(settings.file_path).resolve() != dirs.settings_file.resolve():
        # ultralytics was imported earlier (another workspace, or by the user): write here from now on.
        settings.file_path = dirs.settings_file
        settings.file = dirs.settings_file
    flags_off = {key: False for key, default in settings.defaults.items() if isinstance(default, bool)}
    wanted = {**flags_off, **folders, "api_key": ""}
    # update() refuses unknown keys: keep to those this ultralytics version defines.
    settings.update({key: value for key, value in wanted.items() if key in settings.defaults})
    ultralytics_utils.LOGGER.setLevel(logging.INFO if verbose else logging.ERROR)
    _restore_pil_open()


def _restore_pil_open() -> None:
    """Undo ultralytics' process-wide ``PIL.Image.open`` patch.

    At import, ``ultralytics.utils.patches`` replaces ``PIL.Image.open`` with a wrapper that, for a file PIL cannot
    identify, tries to install pi-heif and then raises ``ModuleNotFoundError``: after that, every decoder of
    ``jupyter_avml.data.images`` would report a non-image file with that error instead of its own message.
    """
    from PIL import Image
    from ultralytics.utils import patches

    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is getattr(patches, "image_open", None):
        Image.open = original


def _write_settings_before_import(file: Path, values: dict) -> None:
    """Merge ``values`` into the settings file ultralytics will read at import.

    A first file holds only these keys; ultralytics completes it at import, keeping them.
    """
    try:
        current = read_json_object(file) or {}
    except (OSError, ValueError):
        current = {}  # a damaged file is rewritten
    if all(current.get(k) == v for k, v in values.items()):
        return
    atomic_write_json(file, {**current, **values}, indent=2)
