"""A sweep's MLflow records: the parent run, and the runs its workers could not end themselves.

* The parent run (one per experiment, named after it, tagged ``avml.sweep``/``avml.role=parent``) holds the
  sweep's settings as parameters; children name it as their parent (``mlflow.parentRunId``). A resumed
  sweep reopens it. At the end it is tagged with the best child (``avml.best_child``,
  ``avml.best_child_run_id``, ``avml.best_value``, ``avml.best_model_name``), gets the primary metric, and is
  ended (FINISHED, or KILLED when stopped, FAILED when the driver failed).
* A child whose worker died could not end its run: ``end_run_record`` ends the MLflow run and ``run.json``
  with the child's status and why; ``end_orphans`` does it for every run of the sweep still RUNNING that no
  live worker owns (after a driver was killed with its workers).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from jupyter_avml.sweep.state import ExperimentState

log = logging.getLogger("jupyter_avml.sweep.bookkeeping")

__all__ = ["SweepRuns"]

MLFLOW_END_STATUS = {"completed": "FINISHED", "timed_out": "FINISHED", "stopped": "KILLED"}


class SweepRuns:
    """The MLflow side of one experiment (``tracking.store.Tracker``, opened by ``open``)."""

    def __init__(self, workspace, name: str, tracking_uri: str | None = None):
        self.workspace, self.name, self.tracking_uri = workspace, name, tracking_uri
        self.tracker = None

    def open(self) -> None:
        """Open the tracking store (the Tracker serialises the creation of a new store across processes)."""
        from jupyter_avml.tracking.store import Tracker

        self.tracker = Tracker(self.workspace, self.tracking_uri)
        self.tracker.client.search_experiments(max_results=1)

    def start_parent(self, state: ExperimentState, spec, concurrency: int) -> None:
        """Create the parent run (``state.parent_run_id``), or reopen it when the sweep resumes."""
        if state.parent_run_id:
            self.tracker.reopen(state.parent_run_id)
            return
        state.parent_run_id = self.tracker.start_run(
            experiment=self.name, run_name=self.name,
            tags={"avml.sweep": self.name, "avml.role": "parent", "task": spec.task})
        params = {"sampling": spec.sampling, "iterations": spec.iterations,
                  "max_concurrent_iterations": concurrency, "budget_seconds": spec.budget_seconds,
                  "early_termination_policy": json.dumps(spec.policy_config),
                  "search_space": json.dumps(spec.space.to_config() if spec.has_search_space else None,
                                             default=str)}
        params.update({k: v for k, v in spec.fixed.items() if k not in params})
        self.tracker.log_params(state.parent_run_id, params)

    def end_parent(self, state: ExperimentState, status: str) -> None:
        """Tag the parent with the best child and the experiment's status, and end it."""
        if not state.parent_run_id:
            return
        from jupyter_avml.tracking.store import STATUS_TAG

        tags: dict[str, Any] = {STATUS_TAG: status}
        if state.best_child is not None:
            best = state.child(state.best_child)
            tags.update({"avml.best_child": best.id, "avml.best_child_run_id": best.run_id or "",
                         "avml.best_value": best.best_value, "avml.best_model_name": best.model_name})
            self.tracker.log_metrics(state.parent_run_id, {state.primary_metric: best.best_value}, step=0)
        self.tracker.set_tags(state.parent_run_id, tags)
        self.tracker.client.set_terminated(state.parent_run_id, MLFLOW_END_STATUS.get(status, "FAILED"))

    def fail_parent(self, state: ExperimentState) -> None:
        """The driver failed: the parent says why and ends FAILED (best effort: the driver is going down)."""
        try:
            if self.tracker is not None and state.parent_run_id:
                self.tracker.set_tags(state.parent_run_id, {"avml.status": "failed",
                                                            "avml.error": (state.error or "")[:5000]})
                self.tracker.client.set_terminated(state.parent_run_id, "FAILED")
        except Exception:  # noqa: BLE001
            log.exception("could not end the parent run")

    def end_run_record(self, run_id: str, status: str, message: str) -> None:
        """End the MLflow run and ``run.json`` of a run whose process could not."""
        from jupyter_avml.training.run import record_run_status

        try:
            self.tracker.set_tags(run_id, {"avml.error" if status == "failed" else "avml.reason": message[:5000]})
            self.tracker.end_run(run_id, status)
        except Exception as exc:  # noqa: BLE001 - the sweep goes on
            log.warning("could not end MLflow run %s: %s", run_id, exc)
        run_dir = self.workspace.run_dir(run_id)
        if run_dir.is_dir():
            record_run_status(run_dir, status, **({"error": message} if status == "failed" else {"reason": message}))

    def end_orphans(self, state: ExperimentState, keep: set[str]) -> None:
        """End as failed the runs of this sweep left RUNNING by killed workers, except the parent and ``keep``."""
        try:
            runs = self.tracker.search(experiment=self.name,
                                       filter_string="attributes.status = 'RUNNING' and tags.`avml.sweep` = "
                                                     f"'{self.name}'")
        except Exception as exc:  # noqa: BLE001
            log.warning("could not search for interrupted runs: %s", exc)
            return
        for run in runs:
            run_id = run.info.run_id
            if run_id == state.parent_run_id or run_id in keep:
                continue
            log.info("ending interrupted run %s as failed", run_id)
            self.end_run_record(run_id, "failed", "interrupted: its worker ended without finishing the run")
