"""``RayExecutor``: each child of a sweep is a Ray task, placed on a cluster by Ray's scheduler.

The driver is the same as with local workers (``driver.py``): the sampler, the policies, the budget and
``state.json`` stay with it; only where a child runs changes (``executor: ray``, ``executor_config.py``).

* Joining the cluster (``connect``): ``ray.init(address=ray_address)`` from the driver process, after a
  bounded check that something answers at that address, so a wrong address fails in seconds with a clear
  error instead of Ray's endless retries. A resumed driver joins again the same way: a driver (and so the
  sweep) does not depend on the notebook kernel that submitted it.
* Slots (``plan_ray_slots``): ``max_concurrent_iterations`` children at once when given, else as many as
  the cluster's nodes hold with ``cpus_per_child`` / ``gpus_per_child`` each (at least one; more than that
  wait in Ray's queue, e.g. for an autoscaler to add nodes).
* Storage: children write their runs to the workspace, which the driver follows (events) and readers use
  (models, checkpoints). Before the first child a probe task runs on every node (``ray_child.check_node``):
  a node that does not see the driver's experiment folder fails the experiment with an error naming the
  node, the path and the fix. Each child checks again (nodes may join later).
* A child: ``ray_child.run_child`` as a task with ``num_cpus=cpus_per_child``, ``num_gpus=gpus_per_child``
  and no retry by Ray itself (``max_retries=0``: a retry decided here resumes the run instead of starting a
  new one). The executor learns its run id from ``children/<id>.json`` and its events by following
  ``runs/<run_id>/events.jsonl``, as the process executor does.
* Faults: a task whose Ray worker or node died (``WorkerCrashedError``, ``NodeDiedError``...) fails only its
  child, or, with ``child_retries: 1``, runs once more, resuming its run from its last epoch checkpoint.
* Stops: a stop order file the task watches (``children/<id>.order``) and, once the run exists, the run's
  ``STOP`` file; the run ends after its current batch. ``kill`` is ``ray.cancel(force=True)``; ``close``
  and ``abort`` cancel what is left and leave the cluster (the job's tasks end with it).

Why one module of about 510 lines: joining, slots, the storage probe, faults and stops are one executor's
answers to the driver (``executor.Executor``); the code that runs on the nodes is ``ray_child``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from jupyter_avml.errors import AvmlError
from jupyter_avml.sweep.executor import Assignment, ChildExited, Report
from jupyter_avml.sweep.folder import ExperimentFolder
from jupyter_avml.sweep.following import FollowedChild, FollowingExecutor
from jupyter_avml.sweep.slots import Slot

log = logging.getLogger("jupyter_avml.sweep.ray_executor")

__all__ = ["RayExecutor", "RayClusterError", "connect", "plan_ray_slots", "child_resources", "storage_probe",
           "check_cluster_storage"]

CONNECT_CHECK_SECONDS = 10.0
PROBE_SECONDS = 60.0
NAMESPACE = "jupyter_avml"


class RayClusterError(AvmlError):
    """The Ray cluster cannot be joined or cannot run the sweep's children (address, resources, storage)."""


# -- the cluster -------------------------------------------------------------------------------------------
def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayClusterError("executor: ray needs Ray installed where the driver runs: "
                              "pip install 'jupyter_avml[ray]'") from None
    return ray


def _bootstrap_address(address: str) -> str | None:
    """``HOST:PORT`` that ``address`` (``auto``, ``HOST:PORT``) stands for, or None when Ray finds none."""
    if address != "auto":
        return address
    try:  # Ray's own reading of $RAY_ADDRESS and of the address file ``ray start`` leaves on this machine
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address("auto")
    except Exception:  # noqa: BLE001 - a private helper: without it ray.init resolves (and reports) it
        return os.environ.get("RAY_ADDRESS") or None


def _reachable(host_port: str, timeout: float) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _stay_on_loopback(ray) -> None:
    """Let this process join a cluster that listens on 127.0.0.1 only (a local test cluster).

    Ray replaces a loopback address by the machine's network address before connecting, unless its
    "clusters disabled" switch is on (read from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` when ray is imported,
    so it is set on the loaded module as well); a cluster started with ``--node-ip-address 127.0.0.1`` would
    otherwise never answer and ``ray.init`` would retry for minutes.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    except (ImportError, AttributeError):  # a Ray without the switch: nothing to do
        pass


def connect(address: str = "auto") -> None:
    """Join the Ray cluster at ``address`` (once per process).

    Raises
    ------
    RayClusterError
        Ray is missing, nothing answers at the address, or ``ray.init`` fails (its error is quoted).
    """
    ray = _import_ray()
    if ray.is_initialized():
        return
    target = address
    if not address.startswith("ray://"):
        target = _bootstrap_address(address)
        if target is None:
            raise RayClusterError("ray_address is auto but no Ray cluster was found ($RAY_ADDRESS is not set and no "
                                  "`ray start --head` ran on this machine): start one, or set ray_address to its "
                                  "HOST:PORT")
        if target.rpartition(":")[0].strip("[]") in ("127.0.0.1", "localhost", "::1"):
            _stay_on_loopback(ray)
        if not _reachable(target, CONNECT_CHECK_SECONDS):
            raise RayClusterError(f"no Ray cluster answers at {target} (ray_address: {address}): start it "
                                  f"(ray start --head) or fix ray_address")
    try:
        ray.init(address=target, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING,
                 configure_logging=True)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError...: the message says which
        raise RayClusterError(f"cannot join the Ray cluster at {target}: {type(exc).__name__}: {exc}") from None
    log.info("joined the Ray cluster at %s: %s", target, _describe_cluster(ray))


def _alive_nodes(ray) -> list[dict[str, Any]]:
    return [node for node in ray.nodes() if node.get("Alive")]


def _describe_cluster(ray) -> str:
    nodes = _alive_nodes(ray)
    cpus = sum(node["Resources"].get("CPU", 0) for node in nodes)
    gpus = sum(node["Resources"].get("GPU", 0) for node in nodes)
    return f"{len(nodes)} node(s), {cpus:g} CPU(s), {gpus:g} GPU(s)"


def child_resources(spec) -> tuple[float, float]:
    """``(num_cpus, num_gpus)`` one child reserves: the settings, or 1 CPU and (on a cluster with GPUs, unless
    ``device`` is ``cpu``) 1 GPU."""
    settings = spec.executor
    cpus = 1 if settings.cpus_per_child is None else settings.cpus_per_child
    gpus = settings.gpus_per_child
    if gpus is None:
        ray = _import_ray()
        has_gpus = any(node["Resources"].get("GPU", 0) > 0 for node in _alive_nodes(ray))
        gpus = 1 if has_gpus and str(spec.fixed.get("device") or "auto").lower() != "cpu" else 0
    return cpus, gpus


def _capacity(ray, cpus: float, gpus: float) -> int:
    """How many children the alive nodes hold at once."""
    total = 0
    for node in _alive_nodes(ray):
        resources = node["Resources"]
        fits = int(resources.get("CPU", 0) // cpus) if cpus else 1_000_000
        if gpus:
            fits = min(fits, int(resources.get("GPU", 0) // gpus))
        total += max(0, fits)
    return total


def plan_ray_slots(spec) -> list[Slot]:
    """The sweep's slots on the cluster (joining it first): one per child that may run at once."""
    ray = _import_ray()
    connect(spec.executor.ray_address)
    cpus, gpus = child_resources(spec)
    capacity = _capacity(ray, cpus, gpus)
    if capacity == 0:
        log.warning("no node of the cluster (%s) has %g CPU(s) and %g GPU(s) for a child: children wait for "
                    "one (an autoscaler may add it)", _describe_cluster(ray), cpus, gpus)
    count = spec.max_concurrent_iterations or max(1, min(capacity, spec.iterations))
    kind = "gpu" if gpus else "cpu"
    return [Slot(index, kind, None, max(1, int(cpus))) for index in range(count)]


# -- storage ----------------------------------------------------------------------------------------------
def storage_probe(folder: ExperimentFolder, workspace, spec) -> dict[str, Any]:
    """What a node must see as the driver does (``ray_child.storage_problems``), and the environment a child
    needs from the driver's (``MLFLOW_TRACKING_URI`` when it names the store)."""
    from jupyter_avml.tracking.store import resolve_tracking_uri

    record = folder.read_driver_record()
    uri = resolve_tracking_uri(workspace, spec.fixed.get("tracking_uri"))
    paths = []
    if uri.startswith("sqlite:///"):
        paths.append(uri[len("sqlite:///"):])
    elif uri.startswith("file:"):
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        paths.append(url2pathname(urlparse(uri).path))
    elif "://" not in uri:
        paths.append(uri)  # a plain folder is MLflow's file store
    environment = {}
    if not spec.fixed.get("tracking_uri") and os.environ.get("MLFLOW_TRACKING_URI"):
        environment["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_TRACKING_URI"]
    return {"folder": str(folder.path), "driver": {key: record.get(key) for key in ("pid", "host", "started")},
            "paths": paths, "environment": environment}


def check_cluster_storage(probe: dict[str, Any], workspace: str, timeout: float = PROBE_SECONDS) -> int:
    """Run the storage probe on every alive node; returns how many answered.

    Raises
    ------
    RayClusterError
        One or more nodes do not see the experiment's storage (each is named with what it lacks).
    """
    ray = _import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from jupyter_avml.sweep.ray_child import check_node, storage_error

    task = ray.remote(check_node)
    refs = [task.options(num_cpus=0, max_retries=0, name="avml-storage-probe",
                         scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(probe)
            for node in _alive_nodes(ray)]
    ready, waiting = ray.wait(refs, num_returns=len(refs), timeout=timeout)
    for ref in waiting:
        ray.cancel(ref, force=True)
    if waiting:
        log.warning("%d node(s) did not answer the storage probe within %.0f s; their children check it themselves",
                    len(waiting), timeout)
    errors = []
    for ref in ready:
        try:
            answer = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - a node that died meanwhile: its children check for themselves
            log.warning("a node failed the storage probe: %s", exc)
            continue
        if answer["problems"]:
            errors.append(storage_error(answer["problems"], answer["node"], workspace))
    if errors:
        raise RayClusterError(" | ".join(errors))
    return len(ready)


# -- the executor -----------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class _RayChild(FollowedChild):
    """A child handed to Ray."""

    message: dict[str, Any]
    ref: Any
    attempts: int = 1
    started: float = field(default_factory=time.time)


@dataclass
class _Outcome:
    code: int
    what: str
    error: str | None = None
    lost: bool = False        # the infrastructure failed (worker or node), not the child


class RayExecutor(FollowingExecutor):
    """Children as Ray tasks (see the module docstring).

    Parameters
    ----------
    folder, workspace, spec:
        The experiment's folder, the ``Workspace`` and the ``ExperimentConfig`` (its ``executor`` settings).
    slots:
        ``plan_ray_slots(spec)`` (the driver keeps the first ``concurrency`` of them).
    check_storage:
        Probe every node's view of the storage before the first child is handed out (``free_slots``).
    """

    def __init__(self, folder: ExperimentFolder, workspace, spec, slots: list[Slot], *, check_storage: bool = True):
        self.ray = _import_ray()
        connect(spec.executor.ray_address)
        from jupyter_avml.sweep.ray_child import run_child

        self.folder, self.workspace, self.spec = folder, workspace, spec
        self.slots = list(slots)
        self.cpus, self.gpus = child_resources(spec)
        self.retries = spec.executor.child_retries
        self.probe = storage_probe(folder, workspace, spec)
        self.storage_checked = not check_storage
        self.task = self.ray.remote(run_child)
        self.active: dict[int, _RayChild] = {}
        self.finishing: list[_RayChild] = []

    # -- handing out ------------------------------------------------------------------------------------
    def free_slots(self) -> list[Slot]:
        if not self.storage_checked:
            # Before the first child, once the driver has opened the tracking store (the probe looks for it).
            nodes = check_cluster_storage(self.probe, str(self.workspace.root))
            log.info("%d node(s) see the experiment's storage", nodes)
            self.storage_checked = True
        busy = {c.slot.index for c in self.active.values()}
        return [slot for slot in self.slots if slot.index not in busy]

    def _message(self, assignment: Assignment, slot: Slot) -> dict[str, Any]:
        message = assignment.for_slot(slot)
        config = message.get("config")
        if config is not None:
            device = str(config.get("device") or "auto").lower()
            if not self.gpus and device == "auto":
                config["device"] = "cpu"  # a task without GPUs must not look for one
            if self.gpus > 1:
                config.setdefault("distributed", 1)  # one DDP process per GPU of the task
        return message

    def _submit(self, message: dict[str, Any]):
        name = f"{self.folder.name}/child-{message['child']}"
        return self.task.options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0, retry_exceptions=False,
                                 name=name).remote(message, self.probe)

    def submit(self, assignment: Assignment, slot: Slot) -> None:
        self.folder.clear_child_info(assignment.child)
        self.folder.clear_child_order(assignment.child)
        message = self._message(assignment, slot)
        child = _RayChild(assignment=assignment, slot=slot, message=message, ref=self._submit(message),
                          run_id=assignment.resume_run_id)
        self.active[assignment.child] = child
        log.info("child %d -> Ray task (%g CPU, %g GPU)%s", assignment.child, self.cpus, self.gpus,
                 f" resuming run {assignment.resume_run_id}" if assignment.resume_run_id else "")

    def _retry(self, child: _RayChild, outcome: _Outcome) -> None:
        """Run a child whose worker or node died once more: its run resumes from its last checkpoint."""
        child_id = child.assignment.child
        message = dict(child.message)
        if child.run_id and self.workspace.run_dir(child.run_id).is_dir():
            message.update(resume_run_id=child.run_id, config=None)
        log.warning("child %d: %s; running it again (child_retries: %d)%s", child_id, outcome.what, self.retries,
                    f", resuming run {child.run_id}" if message.get("resume_run_id") else "")
        self.folder.clear_child_info(child_id)
        child.message, child.reported, child.attempts = message, False, child.attempts + 1
        child.ref = self._submit(message)
        if child.stop is not None:
            self.folder.order_child_stop(child_id, *child.stop)

    # -- following --------------------------------------------------------------------------------------
    def _done(self, children: list[_RayChild]) -> set:
        refs = [c.ref for c in children]
        if not refs:
            return set()
        try:
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        except Exception as exc:  # noqa: BLE001 - the head node or the connection to it is gone
            raise RayClusterError(f"lost the Ray cluster at {self.spec.executor.ray_address} ({type(exc).__name__}: "
                                  f"{_first_line(exc)}); its running children are lost: resume the experiment once "
                                  f"the cluster is back") from None
        return set(ready)

    def poll(self) -> list[Report]:
        reports: list[Report] = []
        done = self._done(list(self.active.values()))
        for child_id, child in list(self.active.items()):
            self._follow(child, reports)
            if child.ref not in done:
                continue
            self._follow(child, reports)  # what it wrote before its task ended
            outcome = self._outcome(child)
            if child.run_ended:  # its run ended and then its task, within one poll: as if released
                del self.active[child_id]
                self._log_late_exit(child, outcome)
                continue
            if outcome.lost and child.attempts <= self.retries:
                self._retry(child, outcome)
                continue
            del self.active[child_id]
            error = self._end_error(child, outcome.what, outcome.error)
            reports.append(ChildExited(child_id, outcome.code, outcome.what, error))
        finished = self._done(self.finishing)
        for child in [c for c in self.finishing if c.ref in finished]:
            self.finishing.remove(child)
            self._log_late_exit(child, self._outcome(child))
        return reports

    @staticmethod
    def _log_late_exit(child: _RayChild, outcome: _Outcome) -> None:
        """A task that fails after its run ended loses nothing, but is worth a line in the log."""
        if outcome.code != 0:
            log.warning("child %d: %s after its run ended", child.assignment.child, outcome.what)

    def _outcome(self, child: _RayChild) -> _Outcome:
        """How a finished task ended: its exit status, or the Ray error that ended it."""
        from ray import exceptions as rx

        try:
            result = self.ray.get(child.ref, timeout=10)
        except rx.TaskCancelledError:
            return _Outcome(-9, "Ray task cancelled (killed)")
        except rx.NodeDiedError as exc:
            return _Outcome(-9, f"its Ray node died ({_first_line(exc)})", lost=True)
        except rx.OutOfMemoryError as exc:
            return _Outcome(-9, f"Ray killed its worker for lack of memory ({_first_line(exc)})", lost=True)
        except rx.WorkerCrashedError as exc:
            return _Outcome(-9, f"its Ray worker process died ({_first_line(exc)})", lost=True)
        except rx.RayTaskError as exc:  # the task itself raised (jupyter_avml missing on the node...)
            return _Outcome(1, "Ray task failed", error=f"{type(exc.cause).__name__}: {exc.cause}"
                            if getattr(exc, "cause", None) is not None else str(exc))
        except rx.RayError as exc:  # lost objects, a dead owner...: the infrastructure, not the child
            return _Outcome(-9, f"Ray lost the task ({type(exc).__name__}: {_first_line(exc)})", lost=True)
        code = int(result.get("code", 1))
        what = "Ray task exited with code 0" if code == 0 else f"Ray task exited with code {code}"
        return _Outcome(code, what, error=result.get("error"))

    # -- stopping ---------------------------------------------------------------------------------------
    def _order_stop(self, child: _RayChild, status: str, reason: str) -> None:
        self.folder.order_child_stop(child.assignment.child, status, reason)

    def kill(self, child: int) -> None:
        running = self.active.get(child)
        if running is not None:
            self.ray.cancel(running.ref, force=True)

    def release(self, child: int) -> None:
        running = self.active.pop(child, None)
        if running is not None:
            self.finishing.append(running)

    def close(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        while self.finishing and time.monotonic() < deadline:
            self.poll()
            time.sleep(0.1)
        for child in self.finishing:
            log.warning("child %d: its Ray task is still uploading after %.0f s; cancelling it",
                        child.assignment.child, grace)
        self._cancel_all()

    def abort(self) -> None:
        self._cancel_all()

    def _cancel_all(self) -> None:
        for child in [*self.active.values(), *self.finishing]:
            try:
                self.ray.cancel(child.ref, force=True)
            except Exception as exc:  # noqa: BLE001 - leaving the cluster below ends the job's tasks anyway
                log.warning("could not cancel the task of child %d: %s", child.assignment.child, exc)
        self.active.clear()
        self.finishing.clear()
        if self.ray.is_initialized():
            self.ray.shutdown()

    def live_run_ids(self) -> set[str]:
        return {c.run_id for c in [*self.active.values(), *self.finishing] if c.run_id}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
