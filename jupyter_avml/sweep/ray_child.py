"""What runs on a Ray node for one child: a storage check, then the same training as a local worker.

``run_child`` is the body of a child's Ray task (``ray_executor.RayExecutor`` submits it). It

1. checks that this node sees the experiment's files as the driver does (``storage_problems``): a child
   writes its run (events, checkpoints, model) into the workspace and the driver follows it there, so the
   workspace must be shared storage mounted at the same path on every node. A folder that merely exists at
   that path is not enough (each machine may have its own ``./avml-workspace``): the node must read the
   driver's own ``driver.json`` there (same pid, host and session start). A tracking store given as a path
   (a SQLite file, a ``file:`` folder) must exist on the node too. When something is missing the child
   fails at once with an error naming the node, the path and the fix;
2. trains or resumes the child with ``worker.run_assignment`` (what a local worker runs), its output going
   to ``children/<id>.log``, and records its Ray node in ``children/<id>.json``;
3. watches ``children/<id>.order`` (``ExperimentFolder.order_child_stop``): the driver's stop order, the
   Ray counterpart of the ``{"cmd": "stop"}`` line a local worker reads on its stdin. Once the run exists
   the run's own ``STOP`` file works as well.

Ray reuses its worker processes for CPU tasks: a node's second child starts with torch already imported.
Nothing here changes process-wide state for longer than the task, except torch's thread count (set by every
child) and the modules imported.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path
from typing import Any

from jupyter_avml.sweep.folder import ExperimentFolder

__all__ = ["run_child", "check_node", "storage_problems", "storage_error", "node_info"]

ORDER_POLL_SECONDS = 0.5
DRIVER_IDENTITY = ("pid", "host", "started")


def node_info() -> dict[str, Any]:
    """This Ray node: ``node_id``, ``node_ip`` and ``hostname`` (outside Ray: the host only)."""
    info: dict[str, Any] = {"hostname": socket.gethostname()}
    try:
        import ray

        if ray.is_initialized():
            context = ray.get_runtime_context()
            info["node_id"] = context.get_node_id()
            info["node_ip"] = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - the description is only for messages
        pass
    return info


def describe_node(info: dict[str, Any]) -> str:
    """``Ray node 10.0.0.7 (host gpu-3, node id 1a2b3c4d5e6f)``."""
    node_id = str(info.get("node_id") or "?")[:12]
    return f"Ray node {info.get('node_ip', '?')} (host {info.get('hostname', '?')}, node id {node_id})"


def storage_problems(probe: dict[str, Any]) -> list[str]:
    """What of the driver's storage this node does not see (an empty list when it sees everything).

    ``probe`` (``ray_executor.storage_probe``): ``folder`` (the experiment folder), ``driver`` (the identity
    the driver wrote in its ``driver.json``) and ``paths`` (other paths that must exist: a SQLite store...).
    """
    problems = []
    folder = ExperimentFolder(probe["folder"])
    if not folder.path.is_dir():
        problems.append(f"the experiment folder {folder.path} does not exist there")
    else:
        record = folder.read_driver_record()
        expected = probe.get("driver") or {}
        if any(record.get(key) != expected.get(key) for key in DRIVER_IDENTITY):
            problems.append(f"{folder.path} there is another folder than the driver's (its driver.json names "
                            f"another driver: a local folder of that machine, not shared storage)")
    for path in probe.get("paths") or []:
        if not Path(path).exists():
            problems.append(f"{path} does not exist there")
    return problems


def storage_error(problems: list[str], node: dict[str, Any], workspace: str) -> str:
    """The one-paragraph error of a node that does not share the driver's storage."""
    return (f"{describe_node(node)} does not see the experiment's storage: {'; '.join(problems)}. Children write "
            f"their runs (events, checkpoints, models) to the workspace {workspace}, so with executor: ray it must "
            f"be shared storage mounted at the same path on every node (NFS, a mounted bucket): set workspace (or "
            f"$AVML_WORKSPACE) to such a path, and tracking_uri to an MLflow server or a path on it")


def check_node(probe: dict[str, Any]) -> dict[str, Any]:
    """The preflight task run on every node before the first child: this node and its storage problems."""
    return {"node": node_info(), "problems": storage_problems(probe)}


def _watch_orders(folder: ExperimentFolder, child_id: int, stop_signal, done: threading.Event) -> None:
    """Turn the driver's stop order into a clean stop (as a local worker does with ``{"cmd": "stop"}``)."""
    while not done.wait(ORDER_POLL_SECONDS):
        order = folder.child_stop_order(child_id)
        if order is not None:
            status, reason = order
            stop_signal.request(reason, status)
            return


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set environment variables for the task only (a Ray worker process runs several tasks)."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_child(assignment: dict[str, Any], probe: dict[str, Any]) -> dict[str, Any]:
    """Train one child on this node; returns ``{"code": exit status, "node": ..., "error": ...}``.

    The run's events reach the driver through the shared workspace (it follows ``events.jsonl``), exactly as
    a local worker's do; the return value only says how the task ended.
    """
    from jupyter_avml.runs.events import StopSignal
    from jupyter_avml.sweep.worker import run_assignment

    node = node_info()
    problems = storage_problems(probe)
    if problems:
        return {"code": 1, "node": node, "error": storage_error(problems, node, assignment["workspace"])}
    folder = ExperimentFolder(assignment["folder"])
    child_id = int(assignment["child"])
    stop_signal = StopSignal()
    done = threading.Event()
    watcher = threading.Thread(target=_watch_orders, args=(folder, child_id, stop_signal, done),
                               name=f"child-{child_id}-orders", daemon=True)
    log_path = folder.child_log(child_id)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    info = {"executor": "ray", **{key: node[key] for key in ("node_id", "node_ip", "hostname") if key in node}}
    environment = dict(probe.get("environment") or {})
    with open(log_path, "a", encoding="utf-8", buffering=1) as out, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(out), _environment(environment):
        print(f"Ray task of child {child_id} on {describe_node(node)}, pid {os.getpid()}", flush=True)
        watcher.start()
        try:
            code = run_assignment(assignment, stop_signal, info=info)
        finally:
            done.set()
    return {"code": code, "node": node}
