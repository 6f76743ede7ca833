"""Hermetic test settings: no network, no writes outside tmp folders, tiny everything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports ultralytics, fiftyone or mlflow: keep them offline and inside tmp.
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.pop("AVML_WORKSPACE", None)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """A fresh workspace folder, also exported as $AVML_WORKSPACE."""
    root = tmp_path / "ws"
    monkeypatch.setenv("AVML_WORKSPACE", str(root))
    return root


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (development datasets); tests using it skip when a clone has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present (development data lives beside the repository)")
    return SHARED_DATA
