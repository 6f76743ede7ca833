"""The training loop shared by every torch recipe.

One ``Trainer.fit`` call runs a whole training: epochs of optimizer updates (with gradient accumulation,
mixed precision on CUDA and a per-update learning-rate schedule), evaluation every
``evaluation_frequency`` epochs, early stopping, checkpoints, progress events and clean stops. What an epoch
leaves behind (events, best model, early stopping, files) is recorded by ``bookkeeping.RunBookkeeper``, the
same object the YOLO runner uses.

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
from pathlib import Path

import numpy as np
import torch

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.metrics.result import MetricsResult
from jupyter_avml.models.device import amp_dtype_for, resolve_device  # noqa: F401  (resolve_device: re-export)
from jupyter_avml.models.freeze import freeze_layer_groups
from jupyter_avml.runs.events import CallbackList, RunFinished, StopSignal
from jupyter_avml.training.bookkeeping import RunBookkeeper, TrainerState, TrainResult  # noqa: F401
from jupyter_avml.training.optim import build_optimizer, build_scheduler
from jupyter_avml.training.recipe import Recipe

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "checkpoints/last.pt"
MODEL_FILE = "outputs/model.pt"


def seed_everything(seed: int, epoch: int = 0) -> None:
    mixed = (seed * 1_000_003 + epoch) % (2 ** 31)
    random.seed(mixed)
    np.random.seed(mixed)
    torch.manual_seed(mixed)


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
        self.stop_signal = stop_signal if stop_signal is not None else StopSignal()
        self.device = resolve_device(config.device)
        self.book = RunBookkeeper(config, run_id=run_id, run_dir=self.run_dir, callbacks=callbacks,
                                  stop_signal=self.stop_signal, class_names=recipe.class_names,
                                  model_facts=lambda model: recipe.export_extra())

    # ------------------------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        config, book = self.config, self.book
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
        amp_dtype = amp_dtype_for(config.mixed_precision, self.device)
        model = self.recipe.prepare_model(model, self.device, amp_dtype is not None)
        optimizer = build_optimizer(model.parameters(), config)
        accumulation = config.grad_accumulation_step
        updates_per_epoch = math.ceil(self.recipe.num_train_batches() / accumulation)
        scheduler = build_scheduler(optimizer, config, updates_per_epoch)
        scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 else None
        if resume:
            checkpoint = book.load_last_checkpoint()
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            if scaler is not None and checkpoint.get("scaler"):
                scaler.load_state_dict(checkpoint["scaler"])

        def resumable_state() -> dict:
            return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None}

        book.run_started()
        status, reason = "completed", None
        for epoch in range(book.state.epochs_done, config.number_of_epochs):
            seed_everything(config.seed, epoch + 1)
            book.epoch_started(epoch)
            started = time.perf_counter()
            train_loss, stopped = self._train_epoch(model, optimizer, scheduler, scaler, amp_dtype, epoch)
            if stopped:
                status, reason = book.stop_request() or ("stopped", None)
                break
            book.state.epochs_done = epoch + 1
            if book.evaluation_due(epoch):
                book.record_evaluation(self._evaluate(model, amp_dtype), model, epoch + 1)
            decision = book.end_epoch(epoch=epoch + 1, train_loss=train_loss,
                                      learning_rate=optimizer.param_groups[0]["lr"], model=model,
                                      seconds=time.perf_counter() - started, resumable_state=resumable_state)
            if decision is not None:
                status, reason = decision
                break
        return book.result(status, reason, book.finalize(model))

    # ------------------------------------------------------------------------------------------------
    def _train_epoch(self, model, optimizer, scheduler, scaler, amp_dtype, epoch: int) -> tuple[float, bool]:
        model.train()
        accumulation = self.config.grad_accumulation_step
        state = self.book.state
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
            value = float(loss.detach())
            self.book.check_loss(epoch, index, value)
            scaled = loss / accumulation
            (scaler.scale(scaled) if scaler else scaled).backward()
            pending += 1
            loss_sum += loss.detach() * count
            seen += count
            if pending == accumulation or index + 1 == num_batches:
                self._update(optimizer, scheduler, scaler)
                state.updates_done += 1
                pending = 0
            self.book.batch_done(epoch, index, num_batches, value)
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

    def _evaluate(self, model, amp_dtype) -> MetricsResult:
        model.eval()
        autocast = (torch.autocast(self.device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext())
        with torch.inference_mode(), autocast:
            result = self.recipe.evaluate(model, self.device)
        model.train()
        return result


def finished_event(run_id: str, result: TrainResult, primary_metric: str) -> RunFinished:
    """The last event of a run that ended normally (completed, stopped, early_terminated)."""
    best = result.best_result or result.last_result
    return RunFinished(run_id, status=result.status, primary_metric=primary_metric,
                       best_value=result.state.best_value, best_epoch=result.state.best_epoch,
                       metrics=dict(best.scalars) if best else {},
                       model_path=str(result.model_path) if result.model_path else None, reason=result.reason)
