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

``submit`` validates the configuration and the data (``preflight.py``: what would fail in every child is
refused before the first one), writes ``experiments/<name>/experiment.yaml`` and an initial ``state.json``,
starts the driver (``driver.py``) as a detached process and returns at once: the sweep goes on if the
notebook kernel restarts, and ``attach(name)`` finds it again. Every property of a handle reads the files
(``folder.py``), so any number of handles, in any process, see the same experiment.

What to show: ``handle.observed_state`` (``status.py``: ``interrupted`` with stopped clocks and a resume hint
when the driver is gone); whether it produced anything: ``handle.succeeded`` (``ExperimentState.succeeded``).
A damaged ``state.json`` raises ``DamagedStateError`` (an ``AvmlError``) naming the file and what can still
be done; ``list_experiments`` lists such an experiment with the status ``damaged``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jupyter_avml.errors import AvmlError, ConfigError, NotFoundError
from jupyter_avml.sweep.folder import DamagedStateError, ExperimentFolder, experiment_dir, tail_lines
from jupyter_avml.sweep.launcher import start_driver
from jupyter_avml.sweep.state import CHILD_WITH_MODEL, ExperimentState
from jupyter_avml.sweep.status import damaged_placeholder, observe_folder, resume_hint
from jupyter_avml.workspace import Workspace

__all__ = ["Experiment", "ExperimentHandle", "BestChild", "attach", "list_experiments", "driver_alive",
           "default_experiment_name", "start_driver"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


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
            The configuration is invalid (file, line, key, value; a search range entirely outside what its
            parameter takes), or the name is taken.
        DataError
            The data cannot train any child: missing, unreadable, or rows that do not fit the task.
        """
        if resume:
            return attach(self.name, self.workspace).resume()
        from jupyter_avml.sweep.config import parse_experiment
        from jupyter_avml.sweep.preflight import check_data

        spec = parse_experiment(config)
        folder = ExperimentFolder.of(self.workspace.root, self.name)
        if folder.exists():
            raise ConfigError(f"experiment {self.name!r} already exists in {folder.path}; choose another name, or "
                              f"resume it (Experiment(name).submit(..., resume=True), avml sweep --resume "
                              f"{self.name})", field="name", value=self.name)
        check_data(spec, self.workspace)
        folder.write_config(spec.to_yaml())
        folder.write_state(ExperimentState(
            name=self.name, task=spec.task, primary_metric=spec.primary_metric, status="queued",
            sampling=spec.sampling, iterations=spec.iterations,
            max_concurrent_iterations=spec.max_concurrent_iterations or spec.iterations,
            early_termination_policy=spec.policy_config, budget_seconds=spec.budget_seconds, created=time.time()))
        process = start_driver(self.workspace, self.name, resume=False)
        return ExperimentHandle(self.name, self.workspace, _process=process)

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, workspace={str(self.workspace.root)!r})"


def driver_alive(name: str, workspace: str | os.PathLike | Workspace | None = None) -> bool:
    """Whether the driver of experiment ``name`` is running (``status.driver_alive``): its lock is held, or
    the process recorded in ``driver.json`` (or just started, ``launch.json``) lives. A reused pid does not
    count (its creation time differs), nor does a zombie."""
    from jupyter_avml.sweep.status import driver_alive as folder_driver_alive

    return folder_driver_alive(ExperimentFolder.of(Workspace.resolve(workspace).root, name))


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

    @property
    def files(self) -> ExperimentFolder:
        """The experiment's files (``folder.ExperimentFolder``)."""
        return ExperimentFolder(self.folder)

    # -- reading ----------------------------------------------------------------------------------------
    @property
    def state(self) -> ExperimentState:
        """The experiment's ``ExperimentState``, as ``state.json`` holds it.

        Raises ``NotFoundError`` when there is none, ``DamagedStateError`` (naming the file and what can still
        be done) when it cannot be read.
        """
        self._reap()
        state = self.files.read_state()
        if state is None:
            raise NotFoundError(f"experiment {self.name!r} has no state in {self.folder}")
        return state

    @property
    def observed_state(self) -> ExperimentState:
        """The state as it should be shown (``status.observe``): when no driver runs an unfinished experiment,
        ``interrupted`` (its running children too), clocks stopped at the driver's last sign of life, and a
        ``reason`` saying how to resume it."""
        self._reap()
        return observe_folder(self.files, self.state)

    @property
    def status(self) -> str:
        """The state's status; ``interrupted`` when it is not final but no driver runs it (resume it)."""
        return self.observed_state.status

    @property
    def succeeded(self) -> bool:
        """Whether the experiment is over and at least one child trained a model (``ExperimentState.succeeded``).

        False while it runs and when every child failed or was invalid (``avml sweep`` then exits non-zero).
        """
        return self.state.succeeded

    @property
    def resume_hint(self) -> str:
        """How to resume this experiment (for messages)."""
        return resume_hint(self.name)

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
            if child.status not in CHILD_WITH_MODEL or child.best_value is None or not child.run_id:
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
        except (OSError, ValueError, AttributeError):
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
        driver runs it, the state is closed here. A damaged ``state.json`` does not prevent stopping a running
        driver (which then rewrites the file).
        """
        files = self.files
        try:
            state = self.state
        except DamagedStateError:
            if not self.driver_alive:
                raise
            files.request_stop(reason)
            return True
        if state.finished:
            return False
        files.request_stop(reason)
        if not self.driver_alive:
            state = self.state
            if state.finished:
                return True
            now = time.time()
            for child in state.children:
                if not child.finished:
                    child.status, child.reason, child.ended = "stopped", reason, now
            state.status, state.reason, state.ended = "stopped", reason, now
            files.write_state(state)
        return True

    def stop_child(self, child_id: int, reason: str = "stopped by user") -> bool:
        """Ask the driver to stop one child cleanly (status ``stopped``); the sweep goes on.

        Returns ``False`` when the child had already ended.
        """
        state = self.state
        try:
            child = state.child(int(child_id))
        except (KeyError, TypeError, ValueError):
            ids = ", ".join(str(c.id) for c in state.children) or "none yet"
            raise NotFoundError(f"experiment {self.name!r} has no child {child_id} (children: {ids})") from None
        if child.finished:
            return False
        if not self.driver_alive:
            raise AvmlError(self._driver_gone_message())
        self.files.request_child_stop(child.id, reason)
        return True

    def resume(self) -> ExperimentHandle:
        """Start a new driver for an interrupted, stopped, timed-out or failed experiment.

        Finished children are kept; unfinished ones run again (from their last epoch checkpoint when they
        have one), then sampling continues up to ``iterations``. Refused while a driver is alive.
        """
        # The verdict first: a completed experiment's driver may still be closing its records for a moment.
        if self.state.status == "completed":
            raise AvmlError(f"experiment {self.name!r} is completed: nothing to resume")
        if self.driver_alive:
            raise AvmlError(f"experiment {self.name!r} is running (its driver is alive); stop it first "
                            f"(avml stop {self.name})")
        self.files.clear_stop()
        self._process = start_driver(self.workspace, self.name, resume=True)
        return self

    def register_model(self, model_name: str) -> int:
        """Register the best child's model in the MLflow Model Registry as ``model_name``; returns the version.

        The version is tagged ``avml.experiment`` (this experiment) and ``avml.child`` (the child's id).
        """
        from jupyter_avml.tracking.registry import register_run_model

        best = self.get_best_child()
        return register_run_model(best.run_id, model_name, workspace=self.workspace,
                                  tags={"avml.experiment": self.name, "avml.child": best.child_id})

    # -- helpers ----------------------------------------------------------------------------------------
    def _reap(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            self._process = None  # reaped: no zombie left behind by the process that submitted

    def _driver_gone_message(self) -> str:
        log = self.files.log_file
        tail = tail_lines(log, 8)
        return (f"the driver of experiment {self.name!r} is not running and the experiment did not finish "
                f"(status {self.state.status}); {resume_hint(self.name)}" + (f"; end of {log}:\n{tail}" if tail
                                                                             else ""))

    def __repr__(self) -> str:
        try:
            state = self.observed_state
        except NotFoundError:
            return f"ExperimentHandle({self.name!r}, not found)"
        except AvmlError:
            return f"ExperimentHandle({self.name!r}, damaged: see {self.files.state_file})"
        counts = ", ".join(f"{v} {k}" for k, v in sorted(state.counts().items()))
        return f"ExperimentHandle({self.name!r}, {state.status}{', ' + counts if counts else ''})"


def attach(name: str, workspace: str | os.PathLike | Workspace | None = None) -> ExperimentHandle:
    """The handle of an existing experiment (e.g. after a kernel restart).

    Raises ``NotFoundError`` listing the experiments of the workspace, and ``DamagedStateError`` naming the
    file and what can still be done when its ``state.json`` cannot be read.
    """
    ws = Workspace.resolve(workspace)
    if not isinstance(name, str) or not NAME_RE.match(name) or \
            ExperimentFolder.of(ws.root, name).read_state() is None:
        known = [state.name for state in list_experiments(ws)]
        listing = ", ".join(known) if known else "none"
        raise NotFoundError(f"no experiment {name!r} in {ws.experiments_dir} (experiments: {listing})")
    return ExperimentHandle(name, ws)


def list_experiments(workspace: str | os.PathLike | Workspace | None = None, *,
                     observed: bool = False) -> list[ExperimentState]:
    """Every experiment of the workspace, oldest first.

    An experiment whose ``state.json`` is damaged is listed with the status ``damaged`` (its ``error`` says
    which file and what can still be done). With ``observed`` each state is ``status.observe``-d: an
    unfinished one whose driver is gone is ``interrupted``.
    """
    ws = Workspace.resolve(workspace)
    if not ws.experiments_dir.is_dir():
        return []
    states = []
    for path in ws.experiments_dir.iterdir():
        if not path.is_dir():
            continue
        folder = ExperimentFolder(path)
        try:
            state = folder.read_state()
            if state is not None and observed:
                state = observe_folder(folder, state)
        except DamagedStateError as exc:
            state = damaged_placeholder(folder, exc)
        if state is not None:
            states.append(state)
    return sorted(states, key=lambda s: (s.created or 0.0, s.name))


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
