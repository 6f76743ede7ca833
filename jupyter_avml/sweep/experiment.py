"""Experiments from Python: submit a sweep, follow it, stop it, resume it, get its best child.

::

    from jupyter_avml.sweep import Experiment, choice, uniform

    handle = Experiment("shapes-lr").submit({
        "task": "image-classification", "training_data": "data/train.jsonl", "model_name": "resnet18",
        "search_space": {"learning_rate": uniform(0.001, 0.05)}, "sampling": "random", "iterations": 8,
        "early_termination_policy": {"type": "bandit", "slack_factor": 0.2},
    })
    handle.children            # a DataFrame, read fresh from state.json
    handle.wait()
    best = handle.get_best_child()
    handle.register_model("shapes")   # -> 1

``submit`` validates the configuration, writes ``experiments/<name>/experiment.yaml`` and an initial
``state.json``, starts the driver (``driver.py``) as a detached process and returns at once: the sweep goes
on if the notebook kernel restarts, and ``attach(name)`` finds it again. Every property of a handle reads the
files (``state.py``), so any number of handles, in any process, see the same experiment.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from jupyter_avml.errors import AvmlError, ConfigError, NotFoundError
from jupyter_avml.sweep.state import ExperimentState, experiment_dir, read_state, write_state
from jupyter_avml.workspace import Workspace

__all__ = ["Experiment", "ExperimentHandle", "BestChild", "attach", "list_experiments", "driver_alive",
           "default_experiment_name"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
FINISHED_WITH_MODEL = ("completed", "early_terminated", "stopped")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(f"experiment name must be 1-100 letters, digits, '.', '_' or '-' (starting with a letter "
                          f"or digit), got {name!r}", field="name", value=name)
    return name


@dataclass
class BestChild:
    """The child with the best primary metric among those that finished with a model."""

    child_id: int
    run_id: str
    model_name: str
    params: dict[str, Any]
    primary_metric: str
    primary_metric_value: float
    metrics: dict[str, float] = field(default_factory=dict)
    model_path: str = ""
    output_dir: str = ""
    status: str = "completed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Experiment:
    """A named experiment (sweep) of a workspace, before it is submitted.

    Parameters
    ----------
    name:
        1-100 letters, digits, ``.``, ``_``, ``-``; the folder ``experiments/<name>`` and the MLflow experiment.
    workspace:
        The workspace folder (default: ``$AVML_WORKSPACE`` or ``./avml-workspace``).
    """

    def __init__(self, name: str, workspace: str | os.PathLike | Workspace | None = None):
        self.name = _check_name(name)
        self.workspace = Workspace.resolve(workspace)

    def submit(self, config: Mapping[str, Any] | str | os.PathLike | Any, *, resume: bool = False
               ) -> ExperimentHandle:
        """Validate ``config``, start the sweep in the background and return its handle (in a second or two).

        ``config`` is a mapping (run settings + sweep settings, see ``sweep.config``), a YAML file path or an
        ``ExperimentConfig``. With ``resume=True`` an existing experiment of this name is resumed instead
        (``config`` is then ignored).

        Raises
        ------
        ConfigError
            The configuration is invalid (file, line, key, value), or the name is taken.
        """
        if resume:
            return attach(self.name, self.workspace).resume()
        from jupyter_avml.sweep.config import parse_experiment

        spec = parse_experiment(config)
        folder = experiment_dir(self.workspace.root, self.name)
        if (folder / "experiment.yaml").exists() or (folder / "state.json").exists():
            raise ConfigError(f"experiment {self.name!r} already exists in {folder}; choose another name, or resume "
                              f"it (Experiment(name).submit(..., resume=True), avml sweep --resume {self.name})",
                              field="name", value=self.name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "experiment.yaml").write_text(spec.to_yaml(), encoding="utf-8")
        write_state(folder, ExperimentState(
            name=self.name, task=spec.task, primary_metric=spec.primary_metric, status="queued",
            sampling=spec.sampling, iterations=spec.iterations,
            max_concurrent_iterations=spec.max_concurrent_iterations or spec.iterations,
            early_termination_policy=spec.policy_config, budget_seconds=spec.budget_seconds, created=time.time()))
        process = start_driver(self.workspace, self.name, resume=False)
        return ExperimentHandle(self.name, self.workspace, _process=process)

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, workspace={str(self.workspace.root)!r})"


def start_driver(workspace: Workspace, name: str, *, resume: bool) -> subprocess.Popen:
    """Start the driver detached (own session, output to ``driver.log``) and record it in ``driver.json``."""
    from jupyter_avml.sweep.driver import DRIVER_FILE, process_identity, read_json, session_seconds, write_json_atomic

    folder = experiment_dir(workspace.root, name)
    previous = session_seconds(read_json(folder / DRIVER_FILE)) if resume else 0.0
    command = [sys.executable, "-m", "jupyter_avml.sweep.driver", str(workspace.root), name]
    if resume:
        command.append("--resume")
    with open(folder / "driver.log", "ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {'resume' if resume else 'submit'}: "
                  f"{' '.join(command)}\n".encode())
        out.flush()
        # spawn/exec in a new session: a notebook kernel restart (or Ctrl-C in a terminal) leaves it running.
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        identity = process_identity(process.pid)
    except Exception:  # noqa: BLE001 - it exited already; driver_alive will say so
        identity = {"pid": process.pid, "create_time": None, "host": socket.gethostname()}
    write_json_atomic(folder / DRIVER_FILE, {**identity, "started": time.time(), "previous_seconds": previous})
    return process


def driver_alive(name: str, workspace: str | os.PathLike | Workspace | None = None) -> bool:
    """Whether the driver of experiment ``name`` is running (its lock is held, or its recorded process lives).

    The process check compares the pid's creation time with ``driver.json``, so a reused pid does not count;
    a zombie (exited, not yet reaped) does not count either. On another host only the lock can tell.
    """
    from jupyter_avml.sweep.driver import DRIVER_FILE, lock_held, read_json

    folder = experiment_dir(Workspace.resolve(workspace).root, name)
    if lock_held(folder):
        return True
    info = read_json(folder / DRIVER_FILE)
    if not info or info.get("ended") or not info.get("pid"):
        return False
    if info.get("host") and info["host"] != socket.gethostname():
        state = read_state(folder)
        return bool(state and not state.finished)
    import psutil

    try:
        process = psutil.Process(int(info["pid"]))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = info.get("create_time")
        return created is None or abs(process.create_time() - float(created)) < 0.05
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


class ExperimentHandle:
    """A submitted experiment. Every property reads the experiment's files afresh."""

    def __init__(self, name: str, workspace: str | os.PathLike | Workspace | None = None, *,
                 _process: subprocess.Popen | None = None):
        self.name = _check_name(name)
        self.workspace = Workspace.resolve(workspace)
        self._process = _process

    @property
    def folder(self) -> Path:
        return experiment_dir(self.workspace.root, self.name)

    # -- reading ----------------------------------------------------------------------------------------
    @property
    def state(self) -> ExperimentState:
        """The experiment's ``ExperimentState``, read from ``state.json``."""
        self._reap()
        state = read_state(self.folder)
        if state is None:
            raise NotFoundError(f"experiment {self.name!r} has no state in {self.folder}")
        return state

    @property
    def status(self) -> str:
        """The state's status; ``interrupted`` when it is not final but no driver runs it (resume it)."""
        state = self.state
        if not state.finished and not self.driver_alive:
            state = self.state  # the driver may have finished between the two reads
            if not state.finished:
                return "interrupted"
        return state.status

    @property
    def driver_alive(self) -> bool:
        self._reap()
        return driver_alive(self.name, self.workspace)

    @property
    def children(self):
        """One row per child: id, run_id, model_name, status, the sampled parameters, best_value, best_epoch,
        epoch, the primary metric per evaluated epoch (a list, column named after the metric), reason, error."""
        import pandas as pd

        state = self.state
        metric = state.primary_metric or "metric"
        params = []
        for child in state.children:
            for key in child.params:
                if key not in params and key != "model_name":
                    params.append(key)
        columns = ["id", "run_id", "model_name", "status", *params, "best_value", "best_epoch", "epoch", metric,
                   "reason", "error"]
        rows = []
        for child in state.children:
            row = {"id": child.id, "run_id": child.run_id, "model_name": child.model_name, "status": child.status}
            row.update({key: child.params.get(key) for key in params})
            row.update({"best_value": child.best_value, "best_epoch": child.best_epoch, "epoch": child.epoch,
                        metric: [value for _, value in child.metric_history], "reason": child.reason,
                        "error": child.error})
            rows.append(row)
        return pd.DataFrame(rows, columns=columns)

    def get_best_child(self) -> BestChild:
        """The best child among those that finished (completed, early terminated or stopped) with a model.

        Raises ``NotFoundError`` when there is none yet.
        """
        state = self.state
        candidates = []
        for child in state.children:
            if child.status not in FINISHED_WITH_MODEL or child.best_value is None or not child.run_id:
                continue
            run_dir = self.workspace.run_dir(child.run_id)
            model_path = Path(child.model_path) if child.model_path else run_dir / "outputs" / "model.pt"
            if model_path.is_file():
                candidates.append((child, model_path, run_dir))
        if not candidates:
            counts = ", ".join(f"{v} {k}" for k, v in sorted(state.counts().items())) or "no children"
            raise NotFoundError(f"experiment {self.name!r} has no child that finished with a model yet ({counts})")
        child, model_path, run_dir = max(candidates, key=lambda item: (item[0].best_value, -item[0].id))
        metrics: dict[str, float] = {}
        try:
            metrics = dict(json.loads((run_dir / "outputs" / "metrics.json").read_text(encoding="utf-8"))
                           .get("final") or {})
        except (OSError, ValueError):
            pass
        return BestChild(child_id=child.id, run_id=child.run_id, model_name=child.model_name,
                         params=dict(child.params), primary_metric=state.primary_metric,
                         primary_metric_value=child.best_value, metrics=metrics, model_path=str(model_path),
                         output_dir=str(run_dir / "outputs"), status=child.status)

    # -- acting -----------------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None, poll: float = 0.5) -> ExperimentState:
        """Block until the experiment ends; returns its final state.

        Raises ``TimeoutError`` after ``timeout`` seconds, and ``AvmlError`` when the driver is gone without
        finishing (the experiment can then be resumed).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.state
            if state.finished:
                return state
            if not self.driver_alive:
                state = self.state
                if state.finished:
                    return state
                raise AvmlError(self._driver_gone_message())
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"experiment {self.name!r} is still {state.status} after {timeout:g} s")
            time.sleep(poll)

    def stop(self, reason: str = "stopped by user") -> bool:
        """Ask the driver to stop every child cleanly and end the experiment as ``stopped``.

        Returns at once (``wait()`` to see the end): ``False`` when the experiment had already ended. When no
        driver runs it, the state is closed here.
        """
        from jupyter_avml.sweep.driver import STOP_FILE, write_json_atomic

        state = self.state
        if state.finished:
            return False
        write_json_atomic(self.folder / STOP_FILE, {"reason": reason, "time": time.time()})
        if not self.driver_alive:
            state = self.state
            if state.finished:
                return True
            now = time.time()
            for child in state.children:
                if not child.finished:
                    child.status, child.reason, child.ended = "stopped", reason, now
            state.status, state.reason, state.ended = "stopped", reason, now
            write_state(self.folder, state)
        return True

    def stop_child(self, child_id: int, reason: str = "stopped by user") -> bool:
        """Ask the driver to stop one child cleanly (status ``stopped``); the sweep goes on.

        Returns ``False`` when the child had already ended.
        """
        from jupyter_avml.sweep.driver import write_json_atomic

        state = self.state
        try:
            child = state.child(int(child_id))
        except KeyError:
            ids = ", ".join(str(c.id) for c in state.children) or "none yet"
            raise NotFoundError(f"experiment {self.name!r} has no child {child_id} (children: {ids})") from None
        if child.finished:
            return False
        if not self.driver_alive:
            raise AvmlError(self._driver_gone_message())
        (self.folder / "children").mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.folder / "children" / f"{child.id}.stop", {"reason": reason, "time": time.time()})
        return True

    def resume(self) -> ExperimentHandle:
        """Start a new driver for an interrupted, stopped, timed-out or failed experiment.

        Finished children are kept; unfinished ones run again (from their last epoch checkpoint when they
        have one), then sampling continues up to ``iterations``. Refused while a driver is alive.
        """
        from jupyter_avml.sweep.driver import STOP_FILE

        state = self.state
        if self.driver_alive:
            raise AvmlError(f"experiment {self.name!r} is running (its driver is alive); stop it first "
                            f"(avml stop {self.name})")
        if state.status == "completed":
            raise AvmlError(f"experiment {self.name!r} is completed: nothing to resume")
        (self.folder / STOP_FILE).unlink(missing_ok=True)
        self._process = start_driver(self.workspace, self.name, resume=True)
        return self

    def register_model(self, model_name: str) -> int:
        """Register the best child's model in the MLflow Model Registry as ``model_name``; returns the version."""
        from jupyter_avml.tracking.registry import register_model

        return register_model(self, model_name, workspace=self.workspace)

    # -- helpers ----------------------------------------------------------------------------------------
    def _reap(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            self._process = None  # reaped: no zombie left behind by the process that submitted

    def _driver_gone_message(self) -> str:
        from jupyter_avml.sweep.driver import tail_lines

        log = self.folder / "driver.log"
        tail = tail_lines(log, 8)
        return (f"the driver of experiment {self.name!r} is not running and the experiment did not finish "
                f"(status {self.state.status}); resume it with attach({self.name!r}).resume() or "
                f"`avml sweep --resume {self.name}`" + (f"; end of {log}:\n{tail}" if tail else ""))

    def __repr__(self) -> str:
        try:
            state = self.state
        except NotFoundError:
            return f"ExperimentHandle({self.name!r}, not found)"
        counts = ", ".join(f"{v} {k}" for k, v in sorted(state.counts().items()))
        return f"ExperimentHandle({self.name!r}, {state.status}{', ' + counts if counts else ''})"


def attach(name: str, workspace: str | os.PathLike | Workspace | None = None) -> ExperimentHandle:
    """The handle of an existing experiment (e.g. after a kernel restart).

    Raises ``NotFoundError`` listing the experiments of the workspace.
    """
    ws = Workspace.resolve(workspace)
    if not isinstance(name, str) or not NAME_RE.match(name) or read_state(experiment_dir(ws.root, name)) is None:
        known = [state.name for state in list_experiments(ws)]
        listing = ", ".join(known) if known else "none"
        raise NotFoundError(f"no experiment {name!r} in {ws.experiments_dir} (experiments: {listing})")
    return ExperimentHandle(name, ws)


def list_experiments(workspace: str | os.PathLike | Workspace | None = None) -> list[ExperimentState]:
    """Every experiment of the workspace, oldest first."""
    ws = Workspace.resolve(workspace)
    if not ws.experiments_dir.is_dir():
        return []
    states = []
    for folder in ws.experiments_dir.iterdir():
        if folder.is_dir():
            try:
                state = read_state(folder)
            except (ValueError, TypeError):
                continue
            if state is not None:
                states.append(state)
    return sorted(states, key=lambda s: (s.created, s.name))


def default_experiment_name(source: str | os.PathLike | None,
                            workspace: str | os.PathLike | Workspace | None = None) -> str:
    """``<yaml stem>-<n>`` with the first counter not taken in the workspace (``sweep-<n>`` without a file)."""
    ws = Workspace.resolve(workspace)
    stem = Path(source).stem if source else "sweep"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:80] or "sweep"
    if not stem[0].isalnum():
        stem = "x" + stem
    counter = 1
    while experiment_dir(ws.root, f"{stem}-{counter}").exists():
        counter += 1
    return f"{stem}-{counter}"
