"""The training loop shared by every torch recipe.

One ``Trainer.fit`` call runs a whole training: epochs of optimizer updates (with gradient accumulation,
mixed precision on CUDA and a per-update learning-rate schedule), evaluation every
``evaluation_frequency`` epochs, early stopping, checkpoints, progress events and clean stops.

Early stopping counts evaluations, not epochs: the first ``early_stopping_delay`` evaluations only track the
best value; after them, every evaluation that does not improve on the best adds one to a counter that an
improvement resets, and the run stops when the counter reaches ``early_stopping_patience``.

Determinism: before every epoch the Python, NumPy and torch generators are seeded from ``(seed, epoch)``,
so an epoch's data order and augmentation depend on nothing else, and a run resumed from the checkpoint
of epoch k computes epochs k+1... exactly as the uninterrupted run did (same device and thread count).
"""

from __future__ import annotations

import logging
import math
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.metrics.result import MetricsResult
from jupyter_avml.models.freeze import freeze_layer_groups
from jupyter_avml.training.checkpoint import atomic_save, cpu_state_dict, load_checkpoint, model_payload
from jupyter_avml.training.events import (BatchProgress, CallbackList, CheckpointSaved, EpochMetrics,
                                          EpochStarted, RunFinished, RunStarted, StopSignal)
from jupyter_avml.training.optim import build_optimizer, build_scheduler
from jupyter_avml.training.recipe import Recipe

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "checkpoints/last.pt"
MODEL_FILE = "outputs/model.pt"


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


def seed_everything(seed: int, epoch: int = 0) -> None:
    mixed = (seed * 1_000_003 + epoch) % (2 ** 31)
    random.seed(mixed)
    np.random.seed(mixed)
    torch.manual_seed(mixed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from jupyter_avml.errors import ConfigError

        raise ConfigError(f"device is {name!r} but no CUDA GPU is available; use device: auto or cpu",
                          field="device", value=name)
    return device


class Trainer:
    """Runs one training of ``recipe`` and reports through ``callbacks``.

    ``run_dir`` receives ``checkpoints/`` and ``outputs/model.pt``. ``stop_signal`` is checked after every
    batch; when set, the run ends after that batch with the best model kept.
    """

    def __init__(self, recipe: Recipe, config: AutoMLImageConfig, *, run_id: str, run_dir: Path,
                 callbacks: CallbackList | None = None, stop_signal: StopSignal | None = None, start_model=None):
        self.recipe = recipe
        self.start_model = start_model  # incremental training: the weights a new run starts from
        self.config = config
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.callbacks = callbacks or CallbackList()
        self.stop_signal = stop_signal if stop_signal is not None else StopSignal()
        self.device = resolve_device(config.device)
        self.primary_metric = config.task_type.primary_metric
        self.maximize = True  # every primary metric of the spec is maximised

    # ------------------------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        config = self.config
        if config.cpu_threads:
            torch.set_num_threads(config.cpu_threads)
        seed_everything(config.seed)
        model = self.recipe.build_model()
        if self.start_model is not None and not resume:
            from jupyter_avml.training.incremental import load_start_weights

            load_start_weights(model, self.start_model)
        frozen = freeze_layer_groups(model, config.model_spec, config.layers_to_freeze)
        if frozen:
            log.info("froze %d parameter tensors (%d layer groups)", len(frozen), config.layers_to_freeze)
        amp_dtype = self._amp_dtype()
        model = self.recipe.prepare_model(model, self.device, amp_dtype is not None)
        optimizer = build_optimizer(model.parameters(), config)
        accumulation = config.grad_accumulation_step
        updates_per_epoch = math.ceil(self.recipe.num_train_batches() / accumulation)
        scheduler = build_scheduler(optimizer, config, updates_per_epoch)
        scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 else None
        state = TrainerState()
        best_result: MetricsResult | None = None
        if resume:
            state, best_result = self._restore(model, optimizer, scheduler, scaler)

        self.callbacks.on_event(RunStarted(
            self.run_id, task=config.task_type.value, model_name=config.model_name,
            output_dir=str(self.run_dir), number_of_epochs=config.number_of_epochs, config=config.to_dict(),
            resumed_from_epoch=state.epochs_done))

        last_result: MetricsResult | None = None
        status, reason = "completed", None
        for epoch in range(state.epochs_done, config.number_of_epochs):
            seed_everything(config.seed, epoch + 1)
            self.callbacks.on_event(EpochStarted(self.run_id, epoch=epoch + 1,
                                                 number_of_epochs=config.number_of_epochs))
            started = time.perf_counter()
            train_loss, stopped = self._train_epoch(model, optimizer, scheduler, scaler, amp_dtype, epoch, state)
            if stopped:
                status, reason = self.stop_signal.status or "stopped", self.stop_signal.reason
                break
            state.epochs_done = epoch + 1
            result, is_best = None, False
            if self._evaluation_due(epoch):
                result = self._evaluate(model, amp_dtype)
                last_result = result
                is_best = self._track_best(result, state)
                if is_best:
                    best_result = result
                    self._save_model(model, result, epoch + 1, best=True)
            entry = {"epoch": epoch + 1, "train_loss": train_loss, "learning_rate": optimizer.param_groups[0]["lr"],
                     "metrics": dict(result.scalars) if result else {}}
            state.history.append(entry)
            if config.checkpoint_frequency and (epoch + 1) % config.checkpoint_frequency == 0:
                self._save_epoch_checkpoint(model, result, epoch + 1)
            self._save_last(model, optimizer, scheduler, scaler, state, best_result)
            self.callbacks.on_event(EpochMetrics(
                self.run_id, epoch=epoch + 1, train_loss=train_loss, learning_rate=entry["learning_rate"],
                metrics=entry["metrics"], primary_metric=self.primary_metric,
                primary_value=_finite_or_none(result.primary_value) if result else None, is_best=is_best,
                seconds=time.perf_counter() - started))
            if result is not None and self._should_stop_early(state):
                reason = (f"early stopping: {self.primary_metric} did not improve for "
                          f"{state.evaluations_without_improvement} evaluations")
                log.info(reason)
                break
            if self.stop_signal:  # a request that arrived during evaluation
                status, reason = self.stop_signal.status or "stopped", self.stop_signal.reason
                break

        model_path = self._finalize_model(model, best_result, last_result, state)
        return TrainResult(status, state, best_result, last_result, model_path, reason)

    # ------------------------------------------------------------------------------------------------
    def _amp_dtype(self) -> torch.dtype | None:
        if self.device.type != "cuda" or not self.config.mixed_precision:
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def _train_epoch(self, model, optimizer, scheduler, scaler, amp_dtype, epoch: int, state: TrainerState
                     ) -> tuple[float, bool]:
        model.train()
        accumulation = self.config.grad_accumulation_step
        every = self.config.log_every_n_batches
        num_batches = self.recipe.num_train_batches()
        autocast = (torch.autocast(self.device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext())
        loss_sum = torch.zeros((), device=self.device)
        seen = 0
        optimizer.zero_grad(set_to_none=True)
        pending = 0
        stopped = False
        for index, batch in enumerate(self.recipe.train_batches(epoch)):
            with autocast:
                loss, count = self.recipe.training_loss(model, batch, self.device)
            if not torch.isfinite(loss.detach()):
                raise FloatingPointError(
                    f"training loss is {loss.item()} at epoch {epoch + 1}, batch {index + 1}: lower learning_rate "
                    f"(now {self.config.learning_rate}) or check the data")
            scaled = loss / accumulation
            (scaler.scale(scaled) if scaler else scaled).backward()
            pending += 1
            loss_sum += loss.detach() * count
            seen += count
            if pending == accumulation or index + 1 == num_batches:
                self._update(optimizer, scheduler, scaler)
                state.updates_done += 1
                pending = 0
            if (index + 1) % every == 0 or index + 1 == num_batches:
                self.callbacks.on_event(BatchProgress(self.run_id, epoch=epoch + 1, batch=index + 1,
                                                      num_batches=num_batches, loss=float(loss.detach())))
            if self.stop_signal:
                stopped = True
                break
        if pending and not stopped:
            self._update(optimizer, scheduler, scaler)
            state.updates_done += 1
        return (float(loss_sum) / seen if seen else float("nan")), stopped

    @staticmethod
    def _update(optimizer, scheduler, scaler) -> None:
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()

    def _evaluation_due(self, epoch: int) -> bool:
        last = epoch + 1 == self.config.number_of_epochs
        return (epoch + 1) % self.config.evaluation_frequency == 0 or last

    def _evaluate(self, model, amp_dtype) -> MetricsResult:
        model.eval()
        autocast = (torch.autocast(self.device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext())
        with torch.inference_mode(), autocast:
            result = self.recipe.evaluate(model, self.device)
        model.train()
        return result

    def _track_best(self, result: MetricsResult, state: TrainerState) -> bool:
        value = _finite_or_none(result.primary_value)
        state.evaluations += 1
        if value is None:
            return False
        improved = state.best_value is None or (value > state.best_value if self.maximize else value < state.best_value)
        if improved:
            state.best_value, state.best_epoch = value, state.epochs_done
            state.evaluations_without_improvement = 0
        elif state.evaluations > self.config.early_stopping_delay:
            state.evaluations_without_improvement += 1
        return improved

    def _should_stop_early(self, state: TrainerState) -> bool:
        return bool(self.config.early_stopping) and \
            state.evaluations_without_improvement >= self.config.early_stopping_patience

    # -- files -----------------------------------------------------------------------------------------
    def _payload(self, model, result: MetricsResult | None, epoch: int | None) -> dict:
        return model_payload(task=self.config.task_type.value, model_name=self.config.model_name,
                             class_names=self.recipe.class_names, config=self.config.to_dict(),
                             state_dict=cpu_state_dict(model), metrics=dict(result.scalars) if result else {},
                             epoch=epoch, extra=self.recipe.export_extra())

    def _save_model(self, model, result, epoch: int, best: bool) -> Path:
        path = atomic_save(self._payload(model, result, epoch), self.run_dir / MODEL_FILE)
        self.callbacks.on_event(CheckpointSaved(self.run_id, epoch=epoch, path=str(path), best=best))
        return path

    def _save_epoch_checkpoint(self, model, result, epoch: int) -> None:
        path = atomic_save(self._payload(model, result, epoch), self.run_dir / "checkpoints" / f"epoch_{epoch:03d}.pt")
        self.callbacks.on_event(CheckpointSaved(self.run_id, epoch=epoch, path=str(path), best=False))

    def _save_last(self, model, optimizer, scheduler, scaler, state: TrainerState, best_result) -> None:
        atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                     "trainer_state": asdict(state),
                     "best_result": best_result.to_dict() if best_result else None},
                    self.run_dir / LAST_CHECKPOINT)

    def _restore(self, model, optimizer, scheduler, scaler) -> tuple[TrainerState, MetricsResult | None]:
        path = self.run_dir / LAST_CHECKPOINT
        checkpoint = load_checkpoint(path)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        state = TrainerState(**checkpoint["trainer_state"])
        best = MetricsResult.from_dict(checkpoint["best_result"]) if checkpoint.get("best_result") else None
        log.info("resuming after epoch %d from %s", state.epochs_done, path)
        return state, best

    def _finalize_model(self, model, best_result, last_result, state: TrainerState) -> Path | None:
        """``outputs/model.pt`` holds the best evaluated epoch; without any metric, the last weights."""
        path = self.run_dir / MODEL_FILE
        if state.best_epoch is not None and path.exists():
            return path
        if state.epochs_done == 0 and not state.history:
            # Stopped before the first epoch ended: keep the weights so far, without metrics.
            return self._save_model(model, None, 0, best=False)
        return self._save_model(model, last_result, state.epochs_done, best=False)


def _finite_or_none(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def finished_event(run_id: str, result: TrainResult, primary_metric: str) -> RunFinished:
    best = result.best_result or result.last_result
    return RunFinished(run_id, status=result.status, primary_metric=primary_metric,
                       best_value=result.state.best_value, best_epoch=result.state.best_epoch,
                       metrics=dict(best.scalars) if best else {},
                       model_path=str(result.model_path) if result.model_path else None, reason=result.reason)
