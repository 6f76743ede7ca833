"""Hermetic test settings: no network, no writes outside tmp folders, tiny everything."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
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


class Recorder:
    """A callback that keeps every event it is given."""

    def __init__(self):
        self.events = []

    def on_event(self, event):
        self.events.append(event)


@pytest.fixture
def no_network(monkeypatch) -> list:
    """A machine whose resolver and connections fail; returns the attempts made, in order."""
    attempts: list = []

    def no_resolver(host, *args, **kwargs):
        attempts.append(("getaddrinfo", host))
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def no_connect(self, address):
        attempts.append(("connect", address))
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "getaddrinfo", no_resolver)
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    return attempts


# The first lines of a script run in a subprocess that must not touch the network: every connection and name
# lookup fails and is recorded in ``attempts`` (the script reports them).
BLOCK_NETWORK_SCRIPT = """\
import json, socket, sys
attempts = []

def refuse(kind):
    def blocked(*args, **kwargs):
        attempts.append([kind, repr(args[1] if kind == "connect" else args[0])])
        raise OSError(101, "blocked by the test")
    return blocked

socket.socket.connect = refuse("connect")
socket.socket.connect_ex = refuse("connect")
socket.getaddrinfo = refuse("getaddrinfo")
"""
