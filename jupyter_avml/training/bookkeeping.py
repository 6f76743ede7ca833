"""What every trainer records the same way: the best value, the early-stopping rule, the events, the files.

Both trainers own one ``RunBookkeeper``: the torch engine (``engine.Trainer``) and the ultralytics runner
(``yolo.YoloRunner``). They differ in how an epoch is computed; they agree, through this object, on what an
epoch leaves behind:

* events: ``run_started``, ``epoch_started``, ``batch_progress`` (every ``log_every_n_batches`` batches and at
  the last batch), ``epoch_metrics``, ``checkpoint_saved``;
* a non-finite training loss is an error naming the epoch and the batch;
* evaluation every ``evaluation_frequency`` epochs and at the last one;
* the best value of the primary metric (every primary metric of the spec is maximised) and its epoch;
  an improvement writes ``outputs/model.pt``;
* early stopping (``early_stopping_decision``), counted in evaluations: the first ``early_stopping_delay``
  evaluations only track the best value; after them, every evaluation that does not improve adds one to a
  counter that an improvement resets, and the run stops when it reaches ``early_stopping_patience``;
* files: ``checkpoints/epoch_NNN.pt`` every ``checkpoint_frequency`` epochs, ``checkpoints/last.pt`` (the
  trainer's resumable state plus the counters) after every epoch, and ``outputs/model.pt`` at the end: the best
  evaluated epoch, else the last weights (``finalize``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.errors import TrainingDivergedError
from jupyter_avml.metrics.result import MetricsResult
from jupyter_avml.runs.events import (
    BatchProgress,
    CallbackList,
    CheckpointSaved,
    EpochMetrics,
    EpochStarted,
    RunStarted,
    StopSignal,
)
from jupyter_avml.runs.folder import RunFolder

log = logging.getLogger(__name__)

Decision = tuple[str, "str | None"]
"""``(status, reason)`` that ends a run: ``completed`` after early stopping, ``stopped``/``early_terminated`` on
request."""


@dataclass
class TrainerState:
    """Counters that survive a resume (stored in ``checkpoints/last.pt``)."""

    epochs_done: int = 0
    updates_done: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    evaluations: int = 0
    evaluations_without_improvement: int = 0
    history: list[dict] = field(default_factory=list)


@dataclass
class TrainResult:
    status: str
    state: TrainerState
    best_result: MetricsResult | None
    last_result: MetricsResult | None
    model_path: Path | None
    reason: str | None = None


def finite_or_none(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def early_stopping_decision(state: TrainerState, config: AutoMLImageConfig, primary_metric: str) -> str | None:
    """The reason to stop early after an evaluation, or None to go on (see the module docstring)."""
    if config.early_stopping and state.evaluations_without_improvement >= config.early_stopping_patience:
        return (f"early stopping: {primary_metric} did not improve for "
                f"{state.evaluations_without_improvement} evaluations")
    return None


class RunBookkeeper:
    """Records one training run (see the module docstring).

    Parameters
    ----------
    config
        The run's configuration.
    run_id, run_dir
        Where the files go (``RunFolder(run_dir)``) and the id the events carry.
    callbacks, stop_signal
        Who hears the events; the stop requests to honour.
    class_names
        The model's output order, saved in model files.
    model_facts
        ``model -> dict`` of family facts saved in model files (``models.model_file``).
    """

    def __init__(self, config: AutoMLImageConfig, *, run_id: str, run_dir: str | Path,
                 callbacks: CallbackList | None = None, stop_signal: StopSignal | None = None,
                 class_names: list[str], model_facts: Callable[[Any], dict] = lambda model: {}):
        self.config = config
        self.run_id = run_id
        self.folder = RunFolder(Path(run_dir))
        self.callbacks = callbacks or CallbackList()
        self.stop_signal = stop_signal if stop_signal is not None else StopSignal()
        self.class_names = list(class_names)
        self.model_facts = model_facts
        self.primary_metric = config.task_type.primary_metric
        self.state = TrainerState()
        self.best_result: MetricsResult | None = None
        self.last_result: MetricsResult | None = None
        self.epoch_result: MetricsResult | None = None  # of the epoch being recorded (None when not evaluated)
        self.epoch_is_best = False

    # -- resume --------------------------------------------------------------------------------------------
    def load_last_checkpoint(self, expected_format: str | None = None) -> dict[str, Any]:
        """``checkpoints/last.pt``, read as data, with the counters restored from it."""
        from jupyter_avml.training.checkpoint import load_checkpoint

        path = self.folder.last_checkpoint
        checkpoint = load_checkpoint(path, expected_format=expected_format)
        self.state = TrainerState(**checkpoint["trainer_state"])
        saved_best = checkpoint.get("best_result")
        self.best_result = MetricsResult.from_dict(saved_best) if saved_best else None
        log.info("resuming after epoch %d from %s", self.state.epochs_done, path)
        return checkpoint

    # -- events ----------------------------------------------------------------------------------------------
    def run_started(self) -> None:
        config = self.config
        self.callbacks.on_event(RunStarted(
            self.run_id, task=config.task_type.value, model_name=config.model_name,
            output_dir=str(self.folder.path), number_of_epochs=config.number_of_epochs, config=config.to_dict(),
            resumed_from_epoch=self.state.epochs_done))

    def epoch_started(self, epoch_index: int) -> None:
        """Before epoch ``epoch_index`` (0-based) trains."""
        self.epoch_result, self.epoch_is_best = None, False
        self.callbacks.on_event(EpochStarted(self.run_id, epoch=epoch_index + 1,
                                             number_of_epochs=self.config.number_of_epochs))

    def check_loss(self, epoch_index: int, batch_index: int, loss: float) -> None:
        """Refuse a non-finite training loss, naming the epoch and the batch (both 0-based here)."""
        if not math.isfinite(loss):
            raise TrainingDivergedError(
                f"training loss is {loss} at epoch {epoch_index + 1}, batch {batch_index + 1}: lower learning_rate "
                f"(now {self.config.learning_rate}) or check the data")

    def batch_done(self, epoch_index: int, batch_index: int, num_batches: int, loss: float,
                   reported_loss: float | None = None) -> None:
        """After a batch: refuse a non-finite ``loss``; report progress (``reported_loss`` if given)."""
        self.check_loss(epoch_index, batch_index, loss)
        if (batch_index + 1) % self.config.log_every_n_batches == 0 or batch_index + 1 == num_batches:
            self.callbacks.on_event(BatchProgress(
                self.run_id, epoch=epoch_index + 1, batch=batch_index + 1, num_batches=num_batches,
                loss=float(loss if reported_loss is None else reported_loss)))

    def stop_request(self) -> Decision | None:
        """``(status, reason)`` of a pending stop request, else None."""
        if not self.stop_signal:
            return None
        return self.stop_signal.status or "stopped", self.stop_signal.reason

    # -- evaluation ------------------------------------------------------------------------------------------
    def evaluation_due(self, epoch_index: int) -> bool:
        last = epoch_index + 1 == self.config.number_of_epochs
        return (epoch_index + 1) % self.config.evaluation_frequency == 0 or last

    def record_evaluation(self, result: MetricsResult, model, epoch: int) -> bool:
        """Count an evaluation of epoch ``epoch`` (1-based); an improvement writes ``outputs/model.pt``."""
        state = self.state
        self.last_result = self.epoch_result = result
        value = finite_or_none(result.primary_value)
        state.evaluations += 1
        improved = value is not None and (state.best_value is None or value > state.best_value)
        if improved:
            state.best_value, state.best_epoch = value, epoch
            state.evaluations_without_improvement = 0
            self.best_result = result
            self.save_model(model, result, epoch, best=True)
        elif value is not None and state.evaluations > self.config.early_stopping_delay:
            state.evaluations_without_improvement += 1
        self.epoch_is_best = improved
        return improved

    # -- the end of an epoch ---------------------------------------------------------------------------------
    def end_epoch(self, *, epoch: int, train_loss: float, learning_rate: float, model, seconds: float,
                  resumable_state: Callable[[], dict]) -> Decision | None:
        """Record epoch ``epoch`` (1-based): history, periodic checkpoint, ``last.pt``, the epoch event; then
        decide whether the run ends here (early stopping, or a stop requested meanwhile)."""
        config, result = self.config, self.epoch_result
        entry = {"epoch": epoch, "train_loss": train_loss, "learning_rate": learning_rate,
                 "metrics": dict(result.scalars) if result else {}}
        self.state.history.append(entry)
        if config.checkpoint_frequency and epoch % config.checkpoint_frequency == 0:
            path = self._save_payload(model, result, epoch, self.folder.epoch_checkpoint(epoch))
            self.callbacks.on_event(CheckpointSaved(self.run_id, epoch=epoch, path=str(path), best=False))
        self.save_last(resumable_state())
        self.callbacks.on_event(EpochMetrics(
            self.run_id, epoch=epoch, train_loss=train_loss, learning_rate=learning_rate, metrics=entry["metrics"],
            primary_metric=self.primary_metric,
            primary_value=finite_or_none(result.primary_value) if result else None, is_best=self.epoch_is_best,
            seconds=seconds))
        if result is not None:
            reason = early_stopping_decision(self.state, config, self.primary_metric)
            if reason is not None:
                log.info(reason)
                return "completed", reason
        return self.stop_request()

    # -- files -----------------------------------------------------------------------------------------------
    def payload(self, model, result: MetricsResult | None, epoch: int | None) -> dict:
        from jupyter_avml.models.model_file import cpu_state_dict, model_payload

        return model_payload(task=self.config.task_type.value, model_name=self.config.model_name,
                             class_names=self.class_names, config=self.config.to_dict(),
                             state_dict=cpu_state_dict(model), metrics=dict(result.scalars) if result else {},
                             epoch=epoch, extra=self.model_facts(model))

    def _save_payload(self, model, result, epoch, path: Path) -> Path:
        from jupyter_avml.models.model_file import save_torch_file

        return save_torch_file(self.payload(model, result, epoch), path)

    def save_model(self, model, result: MetricsResult | None, epoch: int, best: bool) -> Path:
        path = self._save_payload(model, result, epoch, self.folder.model_file)
        self.callbacks.on_event(CheckpointSaved(self.run_id, epoch=epoch, path=str(path), best=best))
        return path

    def save_last(self, resumable_state: dict) -> Path:
        """``checkpoints/last.pt``: the trainer's ``resumable_state`` plus the counters and the best result."""
        from jupyter_avml.models.model_file import save_torch_file

        return save_torch_file({**resumable_state, "trainer_state": asdict(self.state),
                                "best_result": self.best_result.to_dict() if self.best_result else None},
                               self.folder.last_checkpoint)

    def finalize(self, model) -> Path:
        """``outputs/model.pt`` holds the best evaluated epoch; without any metric, the last weights."""
        state = self.state
        if state.best_epoch is not None and self.folder.model_file.exists():
            return self.folder.model_file
        if state.epochs_done == 0 and not state.history:
            # Stopped before the first epoch ended: keep the weights so far, without metrics.
            return self.save_model(model, None, 0, best=False)
        return self.save_model(model, self.last_result, state.epochs_done, best=False)

    def result(self, status: str, reason: str | None, model_path: Path | None) -> TrainResult:
        return TrainResult(status, self.state, self.best_result, self.last_result, model_path, reason)
