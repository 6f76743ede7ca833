"""The state of an experiment (a sweep), as files in the workspace that any process can read.

Layout, in ``<workspace>/experiments/<name>/``:

* ``experiment.yaml``: the submitted experiment (run settings + sweep settings), as given;
* ``state.json``: ``ExperimentState`` below, rewritten atomically by the driver after every change
  (a child queued, started, reporting an epoch, finishing), so a reader never sees half a file;
* ``driver.json``: the live driver process (``pid``, ``create_time`` of that pid as the OS reports it,
  ``host``), so ``stop`` and ``attach`` can tell a live sweep from a dead one even after pid reuse;
* ``STOP``: written by ``stop()`` (JSON ``{"reason": ...}``): the driver stops every child cleanly and ends;
* ``optuna.db``: the Optuna study of Bayesian sampling;
* ``driver.log``: the driver's log.

Each child is an ordinary run (``<workspace>/runs/<run_id>/``, see ``training.run``): its
``events.jsonl`` carries per-batch progress for dashboards that want more than the per-epoch state.

Statuses. Experiment: ``queued``, ``running``, ``completed``, ``stopped`` (by the user), ``timed_out``
(the budget ran out), ``failed`` (the driver itself failed). Child: ``queued``, ``running``, ``completed``,
``early_terminated`` (by the policy; ``reason`` says why), ``stopped`` (by the user or the deadline),
``failed`` (``error`` says why), ``invalid`` (the sampled configuration was refused; ``error`` says why).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EXPERIMENT_TERMINAL = ("completed", "stopped", "timed_out", "failed")
CHILD_TERMINAL = ("completed", "early_terminated", "stopped", "failed", "invalid")


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
    best_value: float | None = None
    best_epoch: int | None = None
    model_path: str | None = None
    started: float | None = None
    ended: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in CHILD_TERMINAL


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
        data = dict(data)
        data["children"] = [ChildState(**child) for child in data.get("children", [])]
        return cls(**data)

    @property
    def finished(self) -> bool:
        return self.status in EXPERIMENT_TERMINAL

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


def experiment_dir(workspace_root: Path, name: str) -> Path:
    return Path(workspace_root) / "experiments" / name


def write_state(folder: Path, state: ExperimentState) -> None:
    """Atomically replace ``state.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"state.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state.to_dict(), default=_json_default), encoding="utf-8")
    os.replace(tmp, folder / "state.json")


def read_state(folder: Path) -> ExperimentState | None:
    try:
        return ExperimentState.from_dict(json.loads((folder / "state.json").read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
