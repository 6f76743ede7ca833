"""Deployments: model services running in the background, recorded in ``<workspace>/deployments/<name>/``.

``deploy`` starts a service as a detached process (its own session, like a sweep driver: it survives the
notebook kernel or the terminal that started it), waits until it answers, sends it one real request (the
snippet it then shows, run as written) and returns a ``Deployment``. ``stop_deployment`` ends it;
``list_deployments`` reads every record.

The folder (this module is the only one that knows these names):

==================  ========================================================================================
``launch.json``     what to serve and how (``model``, ``source``, ``host``, ``port``, ``device``, ``limits``,
                    ``key_required``) and the process started (``pid``, ``create_time``, ``host_name``,
                    ``time``). Written by the launcher (``deploy``), once per start.
``service.json``    the service process: ``pid``, ``create_time``, ``url`` once it accepts requests,
                    ``started``, ``ended`` and ``error`` (when it could not start). Written by the service.
``service.lock``    ``flock``-ed by the service for its whole life: one service per deployment name.
``service.log``     the service's output: a line per request, errors with their reason.
``key``             the bearer key (mode 0600). The service reads it at start; it never goes on a command line.
==================  ========================================================================================
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_avml.errors import AvmlError, ConfigError, NotFoundError
from jupyter_avml.fileio import atomic_write_json, atomic_write_text, lock_is_held, read_json_object

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
LAUNCH_FILE, SERVICE_FILE, LOCK_FILE, LOG_FILE, KEY_FILE = ("launch.json", "service.json", "service.lock",
                                                            "service.log", "key")
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0

STARTING, SERVING, STOPPED, FAILED = "starting", "serving", "stopped", "failed"


class DeploymentError(AvmlError, RuntimeError):
    """A deployment could not start (the message says why, with the last lines of its log) or stop."""


def check_deployment_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(f"a deployment name is 1-100 letters, digits, '.', '_' or '-' (starting with a letter or "
                          f"digit), got {name!r}", field="name", value=name)
    return name


class DeploymentFolder:
    """The files of one deployment (see the module docstring)."""

    def __init__(self, workspace_root: str | os.PathLike, name: str):
        self.name = check_deployment_name(name)
        self.path = Path(workspace_root) / "deployments" / name

    launch_file = property(lambda self: self.path / LAUNCH_FILE)
    service_file = property(lambda self: self.path / SERVICE_FILE)
    lock_file = property(lambda self: self.path / LOCK_FILE)
    log_file = property(lambda self: self.path / LOG_FILE)
    key_file = property(lambda self: self.path / KEY_FILE)

    def read(self, path: Path) -> dict[str, Any]:
        """A record, ``{}`` when missing or damaged (the lock and the process are the truth)."""
        try:
            return read_json_object(path) or {}
        except (OSError, ValueError):
            return {}

    def write_key(self, key: str | None) -> None:
        if key is None:
            self.key_file.unlink(missing_ok=True)
            return
        atomic_write_text(self.key_file, key)
        os.chmod(self.key_file, 0o600)

    def read_key(self) -> str | None:
        try:
            return self.key_file.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def alive(self) -> bool:
        return lock_is_held(self.lock_file)


@dataclass
class Deployment:
    """A deployment as read from its folder (``status``: starting, serving, stopped or failed)."""

    name: str
    status: str
    model: str = ""
    url: str | None = None
    pid: int | None = None
    key: str | None = None
    started: float | None = None
    error: str | None = None
    folder: Path | None = None
    key_required: bool = False
    tested: dict[str, Any] = field(default_factory=dict)

    @property
    def score_url(self) -> str | None:
        return f"{self.url}/score" if self.url else None

    def snippet(self, image: str = "IMAGE.png") -> str:
        """A Python request that scores ``image`` (what ``deploy`` ran before showing it)."""
        from jupyter_avml.serving.client import python_snippet

        return python_snippet(self.score_url or "URL/score", self.key, image)

    def curl(self, image: str = "IMAGE.png") -> str:
        from jupyter_avml.serving.client import curl_snippet

        return curl_snippet(self.score_url or "URL/score", self.key, image)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "model": self.model, "url": self.url, "pid": self.pid,
                "started": self.started, "error": self.error, "folder": str(self.folder) if self.folder else None,
                "key_required": self.key_required, "tested": self.tested or None}


def read_deployment(workspace_root: str | os.PathLike, name: str, *, with_key: bool = False) -> Deployment:
    """The deployment ``name`` as its folder and its process say; ``NotFoundError`` when there is none."""
    folder = DeploymentFolder(workspace_root, name)
    launch = folder.read(folder.launch_file)
    if not launch:
        raise NotFoundError(f"no deployment {name!r} in {folder.path.parent} (see `avml deployments`)")
    service = folder.read(folder.service_file)
    if service.get("ended"):
        status = FAILED if service.get("error") else STOPPED
    elif folder.alive():
        status = SERVING if service.get("url") else STARTING
    elif _process_alive(launch) and time.time() - float(launch.get("time", 0)) < START_TIMEOUT_S:
        status = STARTING  # started, not yet holding its lock
    else:
        status = FAILED if service.get("error") or not service.get("url") else STOPPED
    error = service.get("error")
    if status == FAILED and not error:
        error = f"the service ended before it served; see {folder.log_file}"
    return Deployment(name=name, status=status, model=str(launch.get("model", "")),
                      url=service.get("url") if status in (SERVING, STARTING) else None,
                      pid=service.get("pid") or launch.get("pid"), started=service.get("started"), error=error,
                      key=folder.read_key() if with_key else None, folder=folder.path,
                      key_required=bool(launch.get("key_required")))


def list_deployments(workspace=None) -> list[Deployment]:
    """Every deployment of the workspace, by name."""
    from jupyter_avml.workspace import Workspace

    root = Workspace.resolve(workspace).root
    base = Path(root) / "deployments"
    if not base.is_dir():
        return []
    return [read_deployment(root, path.name) for path in sorted(base.iterdir())
            if path.is_dir() and NAME_RE.match(path.name) and (path / LAUNCH_FILE).exists()]


def default_name(reference: str) -> str:
    """A deployment name from MODEL: the registered model's name, else the last part of the path or run id."""
    text = reference.strip().rstrip("/")
    if text.startswith("models:/"):
        text = text[len("models:/"):].split("/")[0]
    else:
        path = Path(text)
        parts = [p for p in path.parts if p not in ("outputs", "model.pt", "onnx")]
        text = parts[-1] if parts else "model"
        text = text[:-3] if text.endswith(".pt") else text
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text).strip("-._")[:100]
    return cleaned or "model"


def deploy(model: str, *, name: str | None = None, host: str = "127.0.0.1", port: int = 0, key: str | bool = True,
           workspace=None, device: str = "auto", limits: dict[str, Any] | None = None, test_image: str | None = None,
           start_timeout_s: float = START_TIMEOUT_S) -> Deployment:
    """Start serving ``model`` in the background; returns once it answered a real request.

    Parameters
    ----------
    model:
        MODEL as ``serving.model_source`` resolves it (a registered name, ``models:/NAME/VERSION``, a run id or
        a path).
    name:
        The deployment's name (default: from ``model``, see ``default_name``).
    host, port:
        Where it listens (default: this machine only, a free port).
    key:
        ``True``: a new random key; a string: that key; ``False``: no key.
    test_image:
        The image of the test request (default: a generated one).

    An already serving deployment of the same name and model is returned as it is (with its key); one of
    another model is an error (stop it first).
    """
    from jupyter_avml.serving.model_source import resolve_model_reference
    from jupyter_avml.workspace import Workspace

    ws = Workspace.resolve(workspace)
    source = resolve_model_reference(model, ws)
    name = check_deployment_name(name or default_name(source if model.startswith("models:/") or "/" in model
                                                       else model))
    folder = DeploymentFolder(ws.root, name)
    if folder.alive():
        current = read_deployment(ws.root, name, with_key=True)
        if current.model != str(model):
            raise DeploymentError(f"deployment {name!r} already serves {current.model} at {current.url}; stop it "
                                  f"first (avml deploy --stop {name}) or choose another --name")
        return _tested(current, test_image)
    secret = secrets.token_urlsafe(24) if key is True else (key or None)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.write_key(secret)
    folder.service_file.unlink(missing_ok=True)
    record = {"name": name, "model": str(model), "source": source, "host": host, "port": int(port),
              "device": device, "limits": dict(limits or {}), "key_required": secret is not None,
              "workspace": str(ws.root)}
    atomic_write_json(folder.launch_file, record)
    command = [sys.executable, "-m", "jupyter_avml.serving.service_process", str(ws.root), name]
    with open(folder.log_file, "ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} deploy {model}: {' '.join(command)}\n".encode())
        out.flush()
        # A new session: a notebook kernel restart (or Ctrl-C in a terminal) leaves the service running.
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    atomic_write_json(folder.launch_file, {**record, **_identity(process.pid), "time": time.time()})
    deployment = _wait_until_serving(folder, process, start_timeout_s)
    deployment.key = secret
    return _tested(deployment, test_image)


def _wait_until_serving(folder: DeploymentFolder, process: subprocess.Popen, timeout_s: float) -> Deployment:
    from jupyter_avml.sweep.folder import tail_lines

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        service = folder.read(folder.service_file)
        if service.get("url") and folder.alive():
            return read_deployment(folder.path.parent.parent, folder.name)
        code = process.poll()
        if code is not None:
            error = service.get("error") or f"the service process exited (status {code})"
            raise DeploymentError(f"deployment {folder.name!r} did not start: {error}\n"
                                  f"last lines of {folder.log_file}:\n{tail_lines(folder.log_file, 8)}")
        time.sleep(0.1)
    _terminate(process.pid)
    raise DeploymentError(f"deployment {folder.name!r} did not answer within {timeout_s:g} s and was stopped; "
                          f"see {folder.log_file}")


def _tested(deployment: Deployment, test_image: str | None) -> Deployment:
    """Run the deployment's request snippet against it (with ``test_image`` or a generated image)."""
    from jupyter_avml.serving.client import run_snippet

    deployment.tested = run_snippet(deployment.snippet(test_image or "IMAGE.png"), image=test_image)
    return deployment


def stop_deployment(name: str | None = None, workspace=None) -> Deployment:
    """Stop deployment ``name`` (SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``); without a name, the only one
    serving. Returns it as it is afterwards."""
    from jupyter_avml.workspace import Workspace

    root = Workspace.resolve(workspace).root
    if name is None:
        live = [d for d in list_deployments(root) if d.status in (SERVING, STARTING)]
        if len(live) != 1:
            names = ", ".join(d.name for d in live) or "none"
            raise ConfigError(f"name the deployment to stop (serving: {names})", field="name")
        name = live[0].name
    deployment = read_deployment(root, name)
    folder = DeploymentFolder(root, name)
    if deployment.status in (SERVING, STARTING):
        service = folder.read(folder.service_file) or folder.read(folder.launch_file)
        if _process_alive(service):
            _terminate(int(service["pid"]))
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while (folder.alive() or _process_alive(service)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _process_alive(service):
            os.kill(int(service["pid"]), signal.SIGKILL)
    return read_deployment(root, name)


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _identity(pid: int) -> dict[str, Any]:
    import psutil

    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = None
    return {"pid": pid, "create_time": created, "host_name": socket.gethostname()}


def _process_alive(record: dict[str, Any]) -> bool:
    """Whether the process a record names runs (pid reuse and zombies excluded)."""
    import psutil

    try:
        process = psutil.Process(int(record["pid"]))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = record.get("create_time")
        return created is None or abs(process.create_time() - float(created)) < 0.05
    except (psutil.Error, ValueError, TypeError, KeyError):
        return False
