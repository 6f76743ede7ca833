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


def _own_cores_per_test_process() -> None:
    """Under pytest-xdist, give each test process its own share of the cores, before torch is imported.

    Otherwise each process's torch (and each sweep worker it starts) sizes its thread pool to the whole machine,
    the processes oversubscribe the cores, and OpenMP's spinning threads slow all of them several-fold: the
    Faster R-CNN learning test took 97 s alone and 335 s beside another module's training. With the affinity
    set here, torch's default thread count, ``sweep.slots.cpu_count`` and every subprocess follow the share.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= count:
        os.sched_setaffinity(0, cores[int(worker[2:]) % count::count])


_own_cores_per_test_process()

REPO = Path(__file__).resolve().parents[1]


# -- the network guard: a test that opens a non-loopback connection fails --------------------------------------
class _NetworkGuard:
    """Refuses (OSError) and records every connection or name lookup of this process that leaves the machine.

    Loopback (127.0.0.0/8, ::1, ``localhost``) and Unix sockets stay allowed: local servers, MongoDB, JupyterLab
    and the browser talk over them. Subprocesses are not covered; the hermetic subprocess tests block the network
    themselves (``BLOCK_NETWORK_SCRIPT``).
    """

    def __init__(self):
        self.attempts: list[str] = []
        self._connect = socket.socket.connect
        self._connect_ex = socket.socket.connect_ex
        self._getaddrinfo = socket.getaddrinfo

    @staticmethod
    def _loopback(host) -> bool:
        import ipaddress

        if not isinstance(host, str) or host in ("localhost", "localhost.localdomain", ""):
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False

    def _check(self, what: str, host) -> None:
        if not self._loopback(host):
            self.attempts.append(f"{what} {host!r}")
            raise OSError(101, f"network access from a test ({what} {host!r}): tests stay on this machine")

    def install(self) -> None:
        guard = self

        def connect(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                guard._check("connect", address[0])
            return guard._connect(sock, address)

        def connect_ex(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                guard._check("connect", address[0])
            return guard._connect_ex(sock, address)

        def getaddrinfo(host, *args, **kwargs):
            guard._check("name lookup", host.decode() if isinstance(host, bytes) else host)
            return guard._getaddrinfo(host, *args, **kwargs)

        socket.socket.connect = connect
        socket.socket.connect_ex = connect_ex
        socket.getaddrinfo = getaddrinfo


NETWORK_GUARD = _NetworkGuard()
NETWORK_GUARD.install()


@pytest.fixture(autouse=True)
def _fail_on_network_access():
    """Fails the test if it tried to leave the machine (even when the code under test swallowed the error)."""
    before = len(NETWORK_GUARD.attempts)
    yield
    attempts = NETWORK_GUARD.attempts[before:]
    NETWORK_GUARD.attempts[before:] = []
    if attempts:
        pytest.fail("the test tried to reach the network: " + "; ".join(attempts), pytrace=False)


#: What an unmarked test is counted as (seconds), so that a module of many quick tests goes before a small one.
UNMARKED_TEST_SECONDS = 0.3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The costliest modules first: pytest-xdist (``--dist loadscope --no-loadscope-reorder``, the Makefile's test
    command) hands modules to its processes in this order, and a long module handed out last would run alone on
    one core while the other process idles. A module's cost is the sum of its tests' ``slow(seconds=N)`` marks
    (2 for a plain ``slow``, ``UNMARKED_TEST_SECONDS`` for a test without the mark); the sort is stable, so equal
    modules keep their collection order."""
    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    cost: dict[str, float] = {}
    for item in items:
        marker = item.get_closest_marker("slow")
        seconds = UNMARKED_TEST_SECONDS if marker is None else marker.kwargs.get("seconds", 2)
        cost[module(item)] = cost.get(module(item), 0) + seconds
    items.sort(key=lambda item: -cost[module(item)])


SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request) -> Path:
    """A folder for what one module's tests share (a workspace, a trained run), removed after the module
    unless one of its tests failed.

    ``tmp_path_retention_policy = "failed"`` (pyproject) removes each passing test's ``tmp_path``, but not the
    folders module fixtures make with ``tmp_path_factory``: kept, a full run left about 20 GB of runs,
    checkpoints and tracking stores in /tmp, enough to fill a CI machine's disk.
    """
    folder = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    failed_before = request.session.testsfailed
    yield folder
    if request.session.testsfailed == failed_before:
        shutil.rmtree(folder, ignore_errors=True)


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
