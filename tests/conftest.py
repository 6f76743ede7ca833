"""Hermetic test settings: no network, no writes outside tmp folders, tiny everything."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Before anything imports ultralytics, fiftyone or mlflow: keep them offline and inside tmp.
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("YOLO_OFFLINE", "1")
# ultralytics writes its settings file at import: keep it out of HOME (prepare_ultralytics moves it into the
# workspace for real runs; this covers tests that import ultralytics directly).
if "YOLO_CONFIG_DIR" not in os.environ:
    os.environ["YOLO_CONFIG_DIR"] = _YOLO_CONFIG_DIR = tempfile.mkdtemp(prefix="avml-yolo-config-")
    atexit.register(shutil.rmtree, _YOLO_CONFIG_DIR, ignore_errors=True)
os.environ.pop("AVML_WORKSPACE", None)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def empty_tracking_db(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its schema created once per session.

    Creating the schema runs every MLflow migration (several seconds); copying the file into each test's
    workspace gives every test a fresh, empty store without paying that again.
    """
    from jupyter_avml.tracking.store import Tracker

    root = tmp_path_factory.mktemp("tracking-template")
    Tracker(root)
    return root / "mlflow.db"


@pytest.fixture
def workspace(tmp_path, monkeypatch, empty_tracking_db) -> Path:
    """A fresh workspace folder (with an empty tracking store), also exported as $AVML_WORKSPACE."""
    root = tmp_path / "ws"
    root.mkdir()
    shutil.copyfile(empty_tracking_db, root / "mlflow.db")
    monkeypatch.setenv("AVML_WORKSPACE", str(root))
    return root


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (development datasets); tests using it skip when a clone has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present (development data lives beside the repository)")
    return SHARED_DATA
