"""Shared hostile fixtures: servers that misbehave and workspaces that cannot be one, all bounded in time.

Every fixture here cleans up after itself and can never make a test hang: servers stop their handlers
through one event at teardown, and each handler also gives up on its own after ``HANDLER_MAX_S``.
"""

from __future__ import annotations

import http.server
import os
import threading
import time
from pathlib import Path

import pytest

HANDLER_MAX_S = 20.0  # no handler of a hostile server lives longer than this, whatever the client does


class HostileServer:
    """A loopback HTTP server whose paths misbehave on purpose.

    Paths (``url(path)`` gives the full URL):

    - ``/file/NAME``: the bytes registered with ``serve(NAME, data)`` (404 when none);
    - ``/status/CODE``: an empty answer with that HTTP status;
    - ``/silent``: accepts the connection, reads the request, never answers;
    - ``/trickle?every=S&size=N``: announces N bytes (default 1000), then sends one byte every S seconds
      (default 0.2);
    - ``/huge?size=N``: announces N bytes (default 300 MB) and sends zeros as fast as the client reads;
    - ``/endless``: no length announced, zeros until the client hangs up.

    ``requests`` lists the paths asked, in order. Everything stops at teardown.
    """

    def __init__(self):
        self.requests: list[str] = []
        self.files: dict[str, bytes] = {}
        self.stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's naming)
                server.requests.append(self.path)
                path, _, query = self.path.partition("?")
                params = dict(p.partition("=")[::2] for p in query.split("&") if p)
                try:
                    server._answer(self, path, params)
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    pass  # the client gave up: that is what hostile tests expect

            def log_message(self, *args):  # keep test output quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, name: str, data: bytes) -> str:
        """Register ``data`` at ``/file/NAME``; returns its URL."""
        self.files[name] = data
        return self.url(f"/file/{name}")

    def _answer(self, handler, path: str, params: dict[str, str]) -> None:
        deadline = time.monotonic() + HANDLER_MAX_S
        if path.startswith("/file/"):
            data = self.files.get(path[len("/file/"):])
            if data is None:
                return self._status(handler, 404)
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        elif path.startswith("/status/"):
            self._status(handler, int(path[len("/status/"):]))
        elif path == "/silent":
            self.stop.wait(HANDLER_MAX_S)
        elif path == "/trickle":
            every, size = float(params.get("every", 0.2)), int(params.get("size", 1000))
            handler.send_response(200)
            handler.send_header("Content-Length", str(size))
            handler.end_headers()
            for _ in range(size):
                if self.stop.wait(every) or time.monotonic() > deadline:
                    return
                handler.wfile.write(b"\0")
                handler.wfile.flush()
        elif path in ("/huge", "/endless"):
            handler.send_response(200)
            if path == "/huge":
                handler.send_header("Content-Length", str(int(params.get("size", 300_000_000))))
            else:
                handler.send_header("Connection", "close")
            handler.end_headers()
            chunk = b"\0" * 65536
            while not self.stop.is_set() and time.monotonic() < deadline:
                handler.wfile.write(chunk)
        else:
            self._status(handler, 404)

    @staticmethod
    def _status(handler, code: int) -> None:
        handler.send_response(code)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def hostile_server():
    """A running ``HostileServer`` on 127.0.0.1 (stopped at teardown)."""
    with HostileServer() as server:
        yield server


@pytest.fixture
def workspace_is_a_file(tmp_path, monkeypatch) -> Path:
    """$AVML_WORKSPACE naming a regular file."""
    path = tmp_path / "workspace.txt"
    path.write_text("not a folder\n")
    monkeypatch.setenv("AVML_WORKSPACE", str(path))
    return path


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    """A folder nobody may write into (skipped where permissions do not bind, e.g. as root)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except PermissionError:
        pass
    else:
        (folder / "probe").unlink()
        folder.chmod(0o755)
        pytest.skip("permissions do not bind here (running as root?): a read-only folder cannot be made")
    try:
        yield folder
    finally:
        folder.chmod(0o755)


@pytest.fixture
def char_device() -> Path:
    """``/dev/zero``: endless bytes with no newline (skipped where it does not exist)."""
    path = Path("/dev/zero")
    if not path.exists() or os.name == "nt":
        pytest.skip("no /dev/zero here")
    return path


class _Quick:
    """Fails the test when its block takes longer than ``seconds`` (``elapsed`` is kept for messages)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.elapsed = 0.0

    def __enter__(self) -> _Quick:
        self.start = time.monotonic()
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.elapsed = time.monotonic() - self.start
        if kind is None:
            assert self.elapsed < self.seconds, f"took {self.elapsed:.1f} s (bound: {self.seconds} s)"


@pytest.fixture
def assert_quick():
    """``with assert_quick(5): ...`` fails the test when the block takes 5 s or more."""
    return _Quick
