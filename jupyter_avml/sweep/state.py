"""The state of an experiment (a sweep): ``state.json``, which any process can read.

``ExperimentState`` and its ``ChildState`` list are what the driver records after every change (a child
queued, started, reporting an epoch, finishing); where the file lives and who writes it is ``folder.py``.
The state is the source of truth of a sweep: a resumed driver derives everything from it (which children
run again, what the sampler proposes next, the best child).

Statuses. Experiment: ``queued``, ``running``, ``completed``, ``stopped`` (by the user), ``timed_out``
(the budget ran out), ``failed`` (the driver itself failed). Child: ``queued``, ``running``, ``completed``,
``early_terminated`` (by the policy; ``reason`` says why), ``stopped`` (by the user or the deadline),
``failed`` (``error`` says why), ``invalid`` (the sampled configuration was refused; ``error`` says why).

Readers may also see two derived statuses, never written by a driver (``status.py``): ``interrupted`` (the
state is not final but no driver runs it; its running children are shown ``interrupted`` too, their clocks
stopped at the driver's last sign of life) and ``damaged`` (``state.json`` cannot be read).

Whether an experiment produced anything: ``ExperimentState.succeeded`` (some child trained a model).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EXPERIMENT_TERMINAL = ("completed", "stopped", "timed_out", "failed")
CHILD_TERMINAL = ("completed", "early_terminated", "stopped", "failed", "invalid")
#: Child statuses whose run may have left a model (its best epoch's).
CHILD_WITH_MODEL = ("completed", "early_terminated", "stopped")
#: Derived statuses (``status.py``): shown to readers, never written by a driver.
INTERRUPTED = "interrupted"
DAMAGED = "damaged"


@dataclass
class ChildState:
    """One configuration of the sweep (one child run)."""

    id: int                              # trial number, 0-based, stable across resumes
    params: dict[str, Any]               # the sampled values (model_name included when swept)
    model_name: str = ""
    status: str = "queued"
    run_id: str | None = None            # MLflow run id = run folder name, once started
    reason: str | None = None            # early termination / stop reason
    error: str | None = None             # failure or invalid-configuration message
    epoch: int = 0                       # epochs finished
    number_of_epochs: int = 0
    metric_history: list[list[float]] = field(default_factory=list)  # [[epoch, primary value], ...]
    # Every metric of every evaluated epoch: [[step (epoch), metric name, value], ...]. ``metric_history`` is
    # the primary metric's part of it, kept for the readers that chart the primary metric.
    intermediate_values: list[list[Any]] = field(default_factory=list)
    subspace: int | None = None          # the search sub-space the params come from (None: not recorded)
    why: str | None = None               # why the sampler chose it (AutoMode's portfolio or refinement)
    best_value: float | None = None
    best_epoch: int | None = None
    model_path: str | None = None
    started: float | None = None
    ended: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in CHILD_TERMINAL

    @property
    def has_model(self) -> bool:
        """Whether it ended with a best value (and so a model): completed, stopped early or stopped."""
        return self.status in CHILD_WITH_MODEL and self.best_value is not None

    def metric_values(self, metric: str) -> list[tuple[int, float]]:
        """``(step, value)`` of one metric, from ``intermediate_values``."""
        return [(int(step), float(value)) for step, name, value in self.intermediate_values if name == metric]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChildState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ExperimentState:
    name: str
    task: str
    primary_metric: str
    status: str = "queued"
    sampling: str = "random"
    iterations: int = 1
    max_concurrent_iterations: int = 1
    early_termination_policy: dict[str, Any] | None = None
    budget_seconds: float | None = None  # experiment_timeout_hours / timeout_minutes, in seconds
    created: float = 0.0
    started: float | None = None
    ended: float | None = None
    parent_run_id: str | None = None
    reason: str | None = None
    error: str | None = None
    children: list[ChildState] = field(default_factory=list)
    best_child: int | None = None        # id of the child with the best primary metric so far

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentState:
        """Read a state written by ``to_dict``; fields this version does not know are ignored.

        Raises ``TypeError``/``ValueError`` when ``data`` is not a state (``folder.py`` says the file is damaged).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in dict(data).items() if k in known}
        children = data.get("children") or []
        if not isinstance(children, list) or not all(isinstance(c, dict) for c in children):
            raise TypeError("children must be a list of objects")
        data["children"] = [ChildState.from_dict(child) for child in children]
        state = cls(**data)
        if not isinstance(state.name, str) or not isinstance(state.status, str):
            raise TypeError("name and status must be strings")
        return state

    @property
    def finished(self) -> bool:
        return self.status in EXPERIMENT_TERMINAL

    @property
    def succeeded(self) -> bool:
        """Whether the experiment is over and at least one child trained a model (completed, or stopped with
        its best epoch's model). False while it runs, and when every child failed or was invalid: what
        ``avml sweep`` turns into its exit status."""
        return self.finished and any(child.has_model for child in self.children)

    def child(self, child_id: int) -> ChildState:
        for child in self.children:
            if child.id == child_id:
                return child
        raise KeyError(child_id)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for child in self.children:
            out[child.status] = out.get(child.status, 0) + 1
        return out


def experiment_dir(workspace_root: str | Path, name: str) -> Path:
    """``<workspace>/experiments/<name>`` (``folder.experiment_dir``)."""
    from jupyter_avml.sweep.folder import experiment_dir as folder_path

    return folder_path(workspace_root, name)


def write_state(folder: str | Path, state: ExperimentState) -> None:
    """Atomically replace ``<folder>/state.json`` (``folder.ExperimentFolder.write_state``)."""
    from jupyter_avml.sweep.folder import ExperimentFolder

    ExperimentFolder(folder).write_state(state)


def read_state(folder: str | Path) -> ExperimentState | None:
    """``<folder>/state.json``, None when missing; raises ``folder.DamagedStateError`` when it is damaged."""
    from jupyter_avml.sweep.folder import ExperimentFolder

    return ExperimentFolder(folder).read_state()
