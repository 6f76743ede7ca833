"""YOLOv5 training through ultralytics' own trainer, reporting like the torch engine.

``YoloRunner(config, data, run_id=, run_dir=, callbacks=, stop_signal=).fit(resume)`` trains the YOLOv5u model
of ``models.yolo.build_yolo`` with a subclass of ultralytics' ``DetectionTrainer``: mosaic, random affine,
HSV jitter, flips, letterboxing, the loss, EMA weights and AMP are ultralytics'; the hyperparameters, the
schedule, the evaluation, best-model selection, early stopping, stop requests, events, checkpoints and
``outputs/model.pt`` are ours, with the engine's semantics (``training.engine``).

The data goes through ``data.yolo_layout``: the records become images + ``labels/*.txt`` + ``data.yaml``
under ``<workspace>/cache/yolo/<digest>`` (reused by later runs on the same data). ultralytics' own files
(``args.yaml``, ``results.csv``, ``weights/last.pt`` and ``best.pt``, in its format) stay in
``<run>/ultralytics``; with ``prepare_ultralytics`` nothing is written outside the workspace and nothing
goes to the network (no settings in HOME, no font download: we give the trainer its dataset dictionary
ourselves instead of ultralytics' ``check_det_dataset``, which fetches Arial.ttf; no AMP-check download).

Hyperparameters (ours -> ultralytics' argument, explicit in ``ultralytics_overrides``)
-------------------------------------------------------------------------------------
=================================  =========================================================================
ours                               ultralytics
=================================  =========================================================================
number_of_epochs                   ``epochs``
training_batch_size                ``batch``
img_size                           ``imgsz`` (ultralytics rounds it up to a multiple of 32; so do evaluation
                                   and inference, ``inference.yolo.network_size``)
learning_rate                      ``lr0``: the base of OUR schedule (below)
optimizer sgd / adam / adamw       ``optimizer`` ``SGD`` / ``Adam`` / ``AdamW``, never ``auto`` (which replaces
                                   lr0 and momentum). The optimizer is built by ``build_yolo_optimizer``
                                   (overriding ``build_optimizer``) with ultralytics' three parameter groups
                                   (conv/linear weights with decay; normalisation weights and biases without)
                                   and OUR settings:
momentum (sgd)                     ``momentum`` (SGD momentum)
beta1, beta2 (adam, adamw)         ``momentum`` = beta1 (ultralytics passes momentum as beta1); ``betas`` =
                                   (beta1, beta2) in our optimizer (ultralytics would fix beta2 = 0.999)
nesterov (sgd)                     our optimizer's ``nesterov`` (ultralytics hard-codes True); off when
                                   momentum is 0 (torch refuses nesterov without momentum)
amsgrad (adam, adamw)              our optimizer's ``amsgrad``
weight_decay                       ``weight_decay``; ultralytics scales it by ``batch * accumulate / nbs``,
                                   which is 1 with our ``nbs``
grad_accumulation_step             ``nbs = batch * grad_accumulation_step``, so ultralytics' accumulation
                                   ``round(nbs / batch)`` is exactly grad_accumulation_step (its default
                                   nbs=64 would accumulate to 64 images). ultralytics counts the batches
                                   across epoch boundaries (a group may span two epochs) and, like the
                                   engine, back-propagates each batch's loss unscaled by the accumulation
                                   (its loss is the per-image loss times the batch size)
lr_scheduler, step_lr_gamma,       OUR ``optim.lr_factor``, applied per optimizer update by overriding
step_lr_step_size,                 ``_setup_scheduler`` (a schedule object whose ``step`` sets each group's
warmup_cosine_lr_cycles,           lr to ``learning_rate * lr_factor``) and ``optimizer_step``. Its position
warmup_cosine_lr_warmup_epochs     is counted in batches: the update whose first batch is global batch
                                   ``b`` uses ``lr_factor(config, b, batches_per_epoch)``, i.e. exactly the
                                   engine's schedule for grad_accumulation_step 1 and the same curve in
                                   epochs otherwise. ultralytics' own warm-up loop (``warmup_epochs``) is
                                   off (``warmup_epochs=0``): the warm-up is our warmup_cosine's linear one,
                                   plus ultralytics' bias warm-up (below). ``lrf``/``cos_lr`` are unused
(none: ultralytics' recipe)        bias warm-up: during warmup_cosine's warm-up the bias group's rate is
                                   the scheduled rate plus ``WARMUP_BIAS_LR`` (0.1, ultralytics'
                                   ``warmup_bias_lr``) times the fraction of the warm-up still to go, so
                                   it falls from 0.1 to the schedule as in ultralytics' warm-up. Why it
                                   matters: the Detect head starts its class scores at a prior made for
                                   640 px images (``log(5 / nc / (640 / stride) ** 2)``, about -8 at
                                   stride 8); the fast bias steps lift them within the warm-up. Without
                                   them (this runner before, and ultralytics with ``warmup_bias_lr=0``),
                                   from-scratch runs at 64 px find the classes one at a time, late: mAP
                                   0.33 / 0.67 / 1.0 after 10 epochs depending on seed and thread count.
                                   No warm-up epochs (or the ``step`` scheduler): no bias warm-up
multi_scale 0 / 1                  ``multi_scale`` 0.0 / 0.5 (+/-50 % of imgsz)
early_stopping, _patience, _delay  ``patience=0`` (ultralytics' stopper off: it counts epochs and has no
                                   delay); OUR rule (the engine's ``_track_best``/``_should_stop_early``,
                                   counted in evaluations) sets the trainer's ``stop`` flag
layers_to_freeze                   ``freeze`` = N: ultralytics freezes ``model.0.`` ... ``model.{N-1}.``
                                   (the spec's yolov5 backbone groups; it also always freezes ``.dfl``,
                                   a fixed projection, and keeps frozen BatchNorm layers in eval mode)
seed                               ``seed``; ours also reseeds random/NumPy/torch and the loader's shuffle
                                   from (seed, epoch) before every epoch, as the engine does
(none)                             ``deterministic=True`` (ultralytics' default; warn-only)
num_workers                        ``workers`` (ultralytics loads in-process on CPU)
device                             ``device`` (``auto`` resolved as the engine does)
mixed_precision                    ``amp``: on CUDA only, ``"bf16"`` where supported, else fp16 with a
                                   GradScaler (the engine's choice); False on CPU
validation_batch_size,             our evaluation (below), in ``validate``
evaluation_frequency,
validation_metric_type,
box_score_thresh, box_iou_thresh
checkpoint_frequency               our ``checkpoints/epoch_NNN.pt`` (ultralytics' ``save_period`` stays off)
pretrained, pretrained_weights     ``build_yolo`` (ultralytics' ``pretrained=False``: the model is given)
(run folder)                       ``project=<run>``, ``name="ultralytics"``, ``exist_ok=True``; ``plots=False``
                                   (no font download, no plot files), ``val=True`` (our ``validate``),
                                   ``save=True`` (its last.pt / best.pt), ``verbose=False``
=================================  =========================================================================

Everything else keeps ultralytics' defaults (``cfg/default.yaml``), documented as theirs: mosaic 1.0 (off for
the last ``close_mosaic=10`` epochs), HSV (hue 0.015, saturation 0.7, value 0.4), ``translate`` 0.1,
``scale`` 0.5, ``degrees``/``shear``/``perspective`` 0, ``fliplr`` 0.5, ``flipud`` 0, mixup/cutmix 0, loss
gains (box 7.5, cls 0.5, dfl 1.5), EMA (decay 0.9999, ramp tau 2000 updates), gradient clipping at norm 10.

Evaluation, best model, early stopping
--------------------------------------
``validate`` (which ultralytics calls after every epoch) runs OUR evaluation when the epoch is due
(every ``evaluation_frequency`` epochs and the last one): the EMA weights -- those ultralytics validates and
deploys -- predict the validation records through ``inference.yolo.detect_images`` (the predictor's path:
letterbox to img_size, NMS at ``box_iou_thresh`` with ``conf=0.001`` and one box per class above it, as
ultralytics validates), and ``metrics.detection_metrics`` scores them against the records (crowd boxes
included, with our crowd rule) with ``validation_metric_type``; precision and recall count the detections
scoring at least ``box_score_thresh``. So YOLO and the torchvision detectors are compared by the same
numbers. Our primary value is returned as ultralytics' fitness when it improves (None otherwise), so its
``best.pt`` is written at the same epochs as our ``outputs/model.pt``.
An improved primary metric writes ``outputs/model.pt`` (the engine's ``_track_best``). After the epoch's
events, the engine's early-stopping rule sets ``trainer.stop``.

Stop requests
-------------
``StopSignal`` is checked after every batch (``on_train_batch_end``); when set, a private exception unwinds
ultralytics' loop (its own ``stop`` flag would still validate and checkpoint the partial epoch as if it were
complete) and ``fit`` returns status ``stopped`` or ``early_terminated`` (from the signal), keeping the best
model. A request that arrives during an evaluation ends the run after that epoch.

Checkpoints and resume
----------------------
``checkpoints/last.pt`` (end of every epoch, ``weights_only``-readable) holds the raw weights, the EMA
weights and update count, the optimizer and scaler states, our counters (``TrainerState``) and the indices
of ultralytics' mosaic buffer. ``fit(resume=True)`` rebuilds the trainer, restores all of it before the first
epoch and continues at the next epoch. ultralytics' own resume is not used: its ``last.pt`` keeps only the
EMA weights in half precision, so a resumed run would not continue from the same raw weights. With
``num_workers`` 0 (the default; ultralytics loads in-process on CPU anyway) and ``grad_accumulation_step``
1, a resumed run computes the remaining epochs exactly as the uninterrupted run (same device and threads):
every epoch reseeds the generators and the shuffle, and the mosaic buffer is replayed. With worker processes
the augmentation randomness lives in the workers and is not restored; with accumulation, ultralytics restarts
its accumulation count at the resumed epoch.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.metrics.result import MetricsResult
from jupyter_avml.training.checkpoint import atomic_save, cpu_state_dict, load_checkpoint, model_payload
from jupyter_avml.training.engine import (LAST_CHECKPOINT, MODEL_FILE, Trainer, TrainerState, TrainResult,
                                          _finite_or_none, resolve_device, seed_everything)
from jupyter_avml.training.events import (BatchProgress, CallbackList, CheckpointSaved, EpochMetrics, EpochStarted,
                                          RunStarted, StopSignal)
from jupyter_avml.training.optim import lr_factor
from jupyter_avml.workspace import Workspace

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "jupyter_avml.yolo-checkpoint/1"
ULTRALYTICS_DIR = "ultralytics"  # <run>/ultralytics: ultralytics' own files
EVAL_CONF = 0.001  # mAP ranks all detections (ultralytics validates at the same threshold)
MULTI_SCALE_RANGE = 0.5  # spec: multi_scale varies the image size by +/-50 %
OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
WARMUP_BIAS_LR = 0.1  # ultralytics' warmup_bias_lr: the bias group's rate at the first update (module docstring)


class _StopRun(Exception):
    """Raised from a batch callback to leave ultralytics' loop at once when a stop is requested."""


def amp_dtype_for(config: AutoMLImageConfig, device: torch.device) -> torch.dtype | None:
    """The engine's mixed-precision choice: bf16 where the GPU has it, else fp16; None off CUDA or when disabled."""
    if device.type != "cuda" or not config.mixed_precision:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def ultralytics_overrides(config: AutoMLImageConfig, *, data_yaml: str | Path, run_dir: str | Path,
                          device: torch.device, model_file: str) -> dict[str, Any]:
    """ultralytics' training arguments for ``config`` (the mapping table of the module docstring)."""
    amp = amp_dtype_for(config, device)
    if device.type == "cuda":
        ultralytics_device = str(device.index or 0)
    else:
        ultralytics_device = device.type
    return {
        "task": "detect", "mode": "train", "model": model_file, "data": str(data_yaml),
        "epochs": config.number_of_epochs,
        "batch": config.training_batch_size,
        "imgsz": config.img_size,
        "optimizer": OPTIMIZERS[config.optimizer],
        "lr0": config.learning_rate,
        "momentum": config.momentum if config.optimizer == "sgd" else config.beta1,
        "weight_decay": config.weight_decay,
        "nbs": config.training_batch_size * config.grad_accumulation_step,
        "warmup_epochs": 0.0,
        "multi_scale": MULTI_SCALE_RANGE if config.multi_scale else 0.0,
        "patience": 0,
        "freeze": config.layers_to_freeze or None,
        "seed": config.seed,
        "deterministic": True,
        "workers": config.num_workers,
        "device": ultralytics_device,
        "amp": "bf16" if amp is torch.bfloat16 else amp is not None,
        "pretrained": False,
        "project": str(Path(run_dir).absolute()), "name": ULTRALYTICS_DIR, "exist_ok": True,
        "val": True, "save": True, "save_period": -1, "plots": False, "verbose": False,
        "resume": False, "cache": False,
    }


def build_yolo_optimizer(model: torch.nn.Module, config: AutoMLImageConfig) -> torch.optim.Optimizer:
    """Our optimizer over ultralytics' three parameter groups.

    Groups (ultralytics' ``BaseTrainer.build_optimizer``): 0 ``weight`` (conv and linear weights,
    ``weight_decay``), 1 ``bn`` (normalisation weights, no decay), 2 ``bias`` (biases, no decay). Settings from
    ``config``: sgd (momentum, nesterov), adam / adamw (beta1, beta2, amsgrad), all at ``learning_rate``.
    """
    from torch import nn

    norm_types = tuple(v for k, v in nn.__dict__.items() if "Norm" in k)
    weights, norms, biases = [], [], []
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            fullname = f"{module_name}.{param_name}" if module_name else param_name
            if "bias" in fullname:
                biases.append(param)
            elif isinstance(module, norm_types) or "logit_scale" in fullname:
                norms.append(param)
            else:
                weights.append(param)
    lr, decay = config.learning_rate, config.weight_decay
    groups = [{"params": weights, "weight_decay": decay, "param_group": "weight"},
              {"params": norms, "weight_decay": 0.0, "param_group": "bn"},
              {"params": biases, "weight_decay": 0.0, "param_group": "bias"}]
    if config.optimizer == "sgd":
        momentum = config.momentum
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum,
                                    nesterov=bool(config.nesterov) and momentum > 0)
    else:
        cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        fused = {"fused": True} if next(model.parameters()).is_cuda else {}
        optimizer = cls(groups, lr=lr, betas=(config.beta1, config.beta2), amsgrad=bool(config.amsgrad), **fused)
    for group in optimizer.param_groups:
        group["initial_lr"] = lr  # the base our schedule multiplies
    return optimizer


class _Schedule:
    """Stands in for ultralytics' per-epoch ``LambdaLR``: ``step()`` sets every group's lr to
    ``initial_lr * factor`` (our ``lr_factor`` at the position of the next optimizer update), plus
    ``WARMUP_BIAS_LR * bias_warmup_left`` for the bias group (ultralytics' bias warm-up).

    ``factors()`` returns ``(factor, bias_warmup_left)``. ultralytics calls ``step()`` at every epoch start
    (idempotent here) and assigns ``last_epoch`` on resume and recovery paths; our ``optimizer_step`` calls
    ``step()`` after each update.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factors):
        self.optimizer = optimizer
        self.factors = factors
        self.last_epoch = -1
        self.step()

    def step(self) -> None:
        factor, bias_warmup_left = self.factors()
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
            if group.get("param_group") == "bias":
                group["lr"] += WARMUP_BIAS_LR * bias_warmup_left


@functools.lru_cache(maxsize=1)
def _trainer_class():
    """ultralytics' DetectionTrainer with our data, optimizer, schedule and evaluation (imported lazily:
    ultralytics may only be imported after ``prepare_ultralytics``)."""
    from ultralytics.data.utils import check_class_names
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils.torch_utils import unwrap_model

    class AvmlDetectionTrainer(DetectionTrainer):
        def __init__(self, runner: YoloRunner, overrides: dict[str, Any]):
            self.runner = runner  # before super().__init__, which calls get_dataset
            super().__init__(overrides=overrides)

        def get_dataset(self) -> dict[str, Any]:
            # What check_det_dataset would return for our data.yaml, without its font download.
            layout = self.runner.layout
            names = check_class_names(dict(enumerate(layout.class_names)))
            return {"yaml_file": str(layout.data_yaml), "path": layout.root, "names": names, "nc": len(names),
                    "channels": 3, "train": str(layout.images_dir("train")), "val": str(layout.images_dir("val"))}

        def build_optimizer(self, model, name="auto", lr=0.001, momentum=0.9, decay=1e-5, iterations=1e5):
            return build_yolo_optimizer(unwrap_model(model), self.runner.config)

        def _setup_scheduler(self):
            self.lf = lambda epoch: 1.0  # read only by ultralytics' warm-up, which warmup_epochs=0 turns off
            self.scheduler = _Schedule(self.optimizer, self.runner.lr_factors_now)

        def optimizer_step(self):
            super().optimizer_step()
            self.runner.after_update(self)
            self.scheduler.step()

        def validate(self):
            return self.runner.validate(self)

        def final_eval(self):
            """No ultralytics validation of best.pt: the best epoch's metrics are ours and already known."""

    return AvmlDetectionTrainer


@contextlib.contextmanager
def _offline_amp_check():
    """ultralytics checks fp16 AMP by downloading and running yolo26n.pt; the engine trusts torch's AMP, so do we."""
    import ultralytics.engine.trainer as trainer_module

    original = trainer_module.check_amp
    trainer_module.check_amp = lambda model: True
    try:
        yield
    finally:
        trainer_module.check_amp = original


class YoloRunner:
    """Trains ``yolov5`` as configured and reports through ``callbacks`` (see the module docstring)."""

    # The engine's rules, shared rather than restated: they read only ``config`` and ``maximize``.
    _track_best = Trainer._track_best
    _should_stop_early = Trainer._should_stop_early
    _evaluation_due = Trainer._evaluation_due

    def __init__(self, config: AutoMLImageConfig, data, *, run_id: str, run_dir: Path,
                 callbacks: CallbackList | None = None, stop_signal: StopSignal | None = None, start_model=None):
        self.config = config
        self.start_model = start_model  # incremental training: the weights a new run starts from
        self.data = data
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.callbacks = callbacks or CallbackList()
        self.stop_signal = stop_signal if stop_signal is not None else StopSignal()
        self.device = resolve_device(config.device)
        self.amp_dtype = amp_dtype_for(config, self.device)
        self.primary_metric = config.task_type.primary_metric
        self.maximize = True
        self.class_names = list(data.class_names)
        self.layout = None
        self.trainer = None
        self.state = TrainerState()
        self.best_result: MetricsResult | None = None
        self.last_result: MetricsResult | None = None
        self._checkpoint: dict | None = None
        self._epoch_result: MetricsResult | None = None
        self._epoch_is_best = False
        self._batch_index = -1
        self._next_batch = 0
        self._epoch_started = 0.0
        self._stop: tuple[str, str | None] | None = None  # (status, reason) decided at an epoch end

    # -- the run --------------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        """Train (or continue from ``checkpoints/last.pt`` with ``resume``) and return the engine's ``TrainResult``."""
        if resume:
            self._load_checkpoint()
        trainer = self.build_trainer()
        if self.state.epochs_done >= self.config.number_of_epochs:
            # A resumed run that had already finished its epochs: nothing to train.
            trainer.model.load_state_dict(self._checkpoint["ema"])
            self._emit_run_started()
            return self._result("completed", None, trainer.model)
        status, reason = "completed", None
        try:
            with _offline_amp_check():
                trainer.train()
        except _StopRun:
            status, reason = self.stop_signal.status or "stopped", self.stop_signal.reason
            log.info("run %s %s at epoch %d, batch %d", self.run_id, status, self.state.epochs_done + 1,
                     self._batch_index + 1)
        finally:
            for loader in (getattr(trainer, "train_loader", None), getattr(trainer, "test_loader", None)):
                if hasattr(loader, "close"):
                    loader.close()
        if self._stop is not None:
            status, reason = self._stop
        model = trainer.ema.ema if getattr(trainer, "ema", None) is not None else trainer.model
        return self._result(status, reason, model)

    def build_trainer(self):
        """ultralytics' trainer for this run, with our data layout, model, arguments and callbacks (not started).

        ``fit`` runs it; tests inspect it (``trainer.args``; after ultralytics' ``_setup_train``, the optimizer
        and the frozen parameters).
        """
        from jupyter_avml.data.yolo_layout import build_yolo_layout
        from jupyter_avml.models.ultralytics_env import prepare_ultralytics
        from jupyter_avml.models.yolo import build_yolo, yolo_model_file

        config = self.config
        workspace = self._workspace()
        prepare_ultralytics(workspace)
        if config.cpu_threads:
            torch.set_num_threads(config.cpu_threads)
        threads = torch.get_num_threads()
        spec = config.model_spec  # (the configuration keeps layers_to_freeze within its 10 backbone groups)
        self.layout = build_yolo_layout(self.data.train, self.data.valid, self.class_names, workspace.cache_dir)
        log.info("YOLO dataset %s (%s)", self.layout.root, "reused" if self.layout.reused else "built")

        resuming = self._checkpoint is not None  # weights come from the checkpoint: no pretrained download
        seed_everything(config.seed)
        yolo = build_yolo(spec, len(self.class_names), model_size=config.model_size,
                          pretrained=bool(config.pretrained) and not resuming,
                          pretrained_weights=None if resuming else config.pretrained_weights,
                          workspace_dir=workspace)
        model_file = yolo_model_file(config.model_size, spec.backend)
        overrides = ultralytics_overrides(config, data_yaml=self.layout.data_yaml, run_dir=self.run_dir,
                                          device=self.device, model_file=model_file)
        trainer = _trainer_class()(self, overrides)
        torch.set_num_threads(threads)  # ultralytics' select_device resets the CPU thread count
        self.device = trainer.device  # the same device, with the index ultralytics resolved ("cuda" -> cuda:0)
        if self.start_model is not None and not resuming:  # before ultralytics copies the model into its EMA
            from jupyter_avml.training.incremental import load_start_weights

            load_start_weights(yolo.model, self.start_model)
        trainer.model = yolo.model
        for event, callback in (("on_pretrain_routine_end", self._on_setup_done),
                                ("on_train_start", lambda _: self._emit_run_started()),
                                ("on_train_epoch_start", self._on_epoch_start),
                                ("on_train_batch_start", self._on_batch_start),
                                ("on_train_batch_end", self._on_batch_end),
                                ("on_train_epoch_end", self._on_train_epoch_end),
                                ("on_fit_epoch_end", self._on_epoch_end)):
            trainer.add_callback(event, callback)
        self.trainer = trainer
        return trainer

    def _load_checkpoint(self) -> None:
        path = self.run_dir / LAST_CHECKPOINT
        self._checkpoint = load_checkpoint(path)
        if self._checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a yolov5 run checkpoint (format {self._checkpoint.get('format')!r})")
        self.state = TrainerState(**self._checkpoint["trainer_state"])
        saved_best = self._checkpoint.get("best_result")
        self.best_result = MetricsResult.from_dict(saved_best) if saved_best else None
        log.info("resuming after epoch %d from %s", self.state.epochs_done, path)

    def _workspace(self) -> Workspace:
        """The workspace of the run folder (``<workspace>/runs/<run_id>``), else the configured one."""
        if self.run_dir.parent.name == "runs":
            return Workspace(self.run_dir.parent.parent.absolute())
        return Workspace.resolve(self.config.workspace)

    def _result(self, status: str, reason: str | None, model: torch.nn.Module) -> TrainResult:
        return TrainResult(status, self.state, self.best_result, self.last_result,
                           self._finalize_model(model), reason)

    # -- ultralytics callbacks -------------------------------------------------------------------------
    def _on_setup_done(self, trainer) -> None:
        """After ultralytics built the model, optimizer, EMA and loaders: restore a checkpoint when resuming."""
        nb = len(trainer.train_loader)
        if self._checkpoint is not None:
            from ultralytics.utils.torch_utils import unwrap_model

            checkpoint = self._checkpoint
            unwrap_model(trainer.model).load_state_dict(checkpoint["model"])
            trainer.ema.ema.load_state_dict(checkpoint["ema"])
            trainer.ema.updates = int(checkpoint["ema_updates"])
            trainer.optimizer.load_state_dict(checkpoint["optimizer"])
            if trainer.scaler.is_enabled() and checkpoint.get("scaler"):
                trainer.scaler.load_state_dict(checkpoint["scaler"])
            trainer.start_epoch = self.state.epochs_done
            dataset = trainer.train_loader.dataset
            if hasattr(dataset, "buffer"):
                # Replaying the loads rebuilds the same buffer (and the images it keeps in memory).
                dataset.buffer.clear()
                for index in checkpoint.get("mosaic_buffer", []):
                    dataset.load_image(int(index))
            self._checkpoint = None
        trainer.best_fitness = self.state.best_value
        self._next_batch = self.state.epochs_done * nb
        trainer.scheduler.step()

    def _on_epoch_start(self, trainer) -> None:
        epoch = trainer.epoch
        seed_everything(self.config.seed, epoch + 1)
        loader = trainer.train_loader
        if loader.num_workers == 0:
            # A fresh iterator and a reseeded shuffle: the epoch's order depends on (seed, epoch) only.
            loader.reset()
            loader.generator.manual_seed(torch.initial_seed())
        self._batch_index = -1
        self._epoch_started = time.perf_counter()
        self.callbacks.on_event(EpochStarted(self.run_id, epoch=epoch + 1,
                                             number_of_epochs=self.config.number_of_epochs))

    def _on_batch_start(self, trainer) -> None:
        self._batch_index += 1

    def _on_batch_end(self, trainer) -> None:
        epoch, index, num_batches = trainer.epoch, self._batch_index, len(trainer.train_loader)
        loss = trainer.loss.detach()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at epoch {epoch + 1}, batch {index + 1}: lower learning_rate "
                f"(now {self.config.learning_rate}) or check the data")
        if (index + 1) % self.config.log_every_n_batches == 0 or index + 1 == num_batches:
            self.callbacks.on_event(BatchProgress(self.run_id, epoch=epoch + 1, batch=index + 1,
                                                  num_batches=num_batches, loss=_items_sum(trainer.loss_items)))
        if self.stop_signal:
            raise _StopRun()

    def _on_train_epoch_end(self, trainer) -> None:
        self.state.epochs_done = trainer.epoch + 1

    def _on_epoch_end(self, trainer) -> None:
        """After ultralytics' validation (ours) and save: history, checkpoints, the epoch event, stop decisions."""
        config, state, epoch = self.config, self.state, trainer.epoch
        result = self._epoch_result
        entry = {"epoch": epoch + 1, "train_loss": _items_sum(trainer.tloss),
                 "learning_rate": trainer.optimizer.param_groups[0]["lr"],
                 "metrics": dict(result.scalars) if result else {}}
        state.history.append(entry)
        if config.checkpoint_frequency and (epoch + 1) % config.checkpoint_frequency == 0:
            path = atomic_save(self._payload(trainer.ema.ema, result, epoch + 1),
                               self.run_dir / "checkpoints" / f"epoch_{epoch + 1:03d}.pt")
            self.callbacks.on_event(CheckpointSaved(self.run_id, epoch=epoch + 1, path=str(path), best=False))
        self._save_last(trainer)
        self.callbacks.on_event(EpochMetrics(
            self.run_id, epoch=epoch + 1, train_loss=entry["train_loss"], learning_rate=entry["learning_rate"],
            metrics=entry["metrics"], primary_metric=self.primary_metric,
            primary_value=_finite_or_none(result.primary_value) if result else None, is_best=self._epoch_is_best,
            seconds=time.perf_counter() - self._epoch_started))
        if result is not None and self._should_stop_early(state):
            reason = (f"early stopping: {self.primary_metric} did not improve for "
                      f"{state.evaluations_without_improvement} evaluations")
            log.info(reason)
            self._stop = ("completed", reason)
            trainer.stop = True
        elif self.stop_signal:  # a request that arrived during evaluation
            self._stop = (self.stop_signal.status or "stopped", self.stop_signal.reason)
            trainer.stop = True

    # -- schedule and evaluation (called by the trainer subclass) -------------------------------------
    def lr_factors_now(self) -> tuple[float, float]:
        """For the next optimizer update (its first batch is global batch ``_next_batch``): our schedule's
        factor, and the fraction of warmup_cosine's warm-up still to go (0 after it, and for ``step``)."""
        batches_per_epoch = len(self.trainer.train_loader) if self.trainer is not None else 1
        config = self.config
        warmup = 0
        if config.lr_scheduler == "warmup_cosine":
            warmup = min(config.warmup_cosine_lr_warmup_epochs, config.number_of_epochs) * batches_per_epoch
        left = max(0.0, 1.0 - self._next_batch / warmup) if warmup else 0.0
        return lr_factor(config, self._next_batch, batches_per_epoch), left

    def after_update(self, trainer) -> None:
        self.state.updates_done += 1
        self._next_batch = trainer.epoch * len(trainer.train_loader) + self._batch_index + 1

    def validate(self, trainer) -> tuple[dict[str, float], float | None]:
        """ultralytics' ``validate``: our evaluation when due; returns (results.csv metrics, fitness)."""
        epoch = trainer.epoch
        self._epoch_result, self._epoch_is_best = None, False
        if self._evaluation_due(epoch):
            result = self.evaluate(trainer.ema.ema)
            self.last_result = self._epoch_result = result
            self._epoch_is_best = self._track_best(result, self.state)
            if self._epoch_is_best:
                self.best_result = result
                path = atomic_save(self._payload(trainer.ema.ema, result, epoch + 1), self.run_dir / MODEL_FILE)
                self.callbacks.on_event(CheckpointSaved(self.run_id, epoch=epoch + 1, path=str(path), best=True))
        trainer.best_fitness = self.state.best_value
        result = self._epoch_result
        metrics = {f"metrics/{name}": float(result.scalars.get(name, math.nan)) if result else math.nan
                   for name in ("precision", "recall", "mean_average_precision")}
        # ultralytics writes best.pt when its fitness equals its best: give it a fitness only when ours improved.
        return metrics, (self.state.best_value if self._epoch_is_best else None)

    def evaluate(self, model: torch.nn.Module) -> MetricsResult:
        """Detection metrics of ``model`` (a ``DetectionModel``) on the validation records."""
        from jupyter_avml.data.images import load_image
        from jupyter_avml.inference.yolo import detect_images, network_size
        from jupyter_avml.metrics.detection import ImagePredictions, detection_metrics

        config = self.config
        was_training = model.training
        model.eval()
        size = network_size(config.img_size, int(max(model.stride.max().item(), 32)))
        class_index = {name: i for i, name in enumerate(self.class_names)}
        targets, predictions = [], []
        records = self.data.valid
        for start in range(0, len(records), config.validation_batch_size):
            chunk = records[start:start + config.validation_batch_size]
            images = [load_image(record.path) for record in chunk]
            detections = detect_images(model, images, size=size, conf=EVAL_CONF, iou=config.box_iou_thresh,
                                       device=self.device, multi_label=True, amp_dtype=self.amp_dtype)
            for record, image, (boxes, scores, labels) in zip(chunk, images, detections):
                predictions.append(ImagePredictions(boxes=boxes, scores=scores, labels=labels))
                targets.append(_targets(record, image.size, class_index))
        model.train(was_training)
        return detection_metrics(targets, predictions, self.class_names, metric_type=config.validation_metric_type,
                                 score_threshold=config.box_score_thresh, task=config.task_type.value)

    # -- files -----------------------------------------------------------------------------------------
    def _payload(self, model: torch.nn.Module, result: MetricsResult | None, epoch: int | None) -> dict:
        from jupyter_avml.inference.yolo import network_size
        from jupyter_avml.models.yolo import yolo_model_file, yolo_scale

        stride = int(max(model.stride.max().item(), 32))
        return model_payload(
            task=self.config.task_type.value, model_name=self.config.model_name, class_names=self.class_names,
            config=self.config.to_dict(), state_dict=cpu_state_dict(model),
            metrics=dict(result.scalars) if result else {}, epoch=epoch,
            extra={"yolo": {"model_file": yolo_model_file(self.config.model_size, self.config.model_spec.backend),
                            "scale": yolo_scale(self.config.model_size), "stride": stride,
                            "network_size": network_size(self.config.img_size, stride)}})

    def _save_last(self, trainer) -> None:
        from ultralytics.utils.torch_utils import unwrap_model

        dataset = trainer.train_loader.dataset
        atomic_save({"format": CHECKPOINT_FORMAT,
                     "model": cpu_state_dict(unwrap_model(trainer.model)),
                     "ema": cpu_state_dict(trainer.ema.ema), "ema_updates": int(trainer.ema.updates),
                     "optimizer": trainer.optimizer.state_dict(), "scaler": trainer.scaler.state_dict(),
                     "trainer_state": asdict(self.state),
                     "best_result": self.best_result.to_dict() if self.best_result else None,
                     "mosaic_buffer": [int(i) for i in getattr(dataset, "buffer", [])]},
                    self.run_dir / LAST_CHECKPOINT)

    def _finalize_model(self, model: torch.nn.Module) -> Path | None:
        """``outputs/model.pt`` holds the best evaluated epoch; without any metric, the last (EMA) weights."""
        state = self.state
        path = self.run_dir / MODEL_FILE
        if state.best_epoch is not None and path.exists():
            return path
        if state.epochs_done == 0 and not state.history:
            result, epoch = None, 0  # stopped before the first epoch ended: the weights so far, without metrics
        else:
            result, epoch = self.last_result, state.epochs_done
        atomic_save(self._payload(model, result, epoch), path)
        self.callbacks.on_event(CheckpointSaved(self.run_id, epoch=epoch, path=str(path), best=False))
        return path

    def _emit_run_started(self) -> None:
        config = self.config
        self.callbacks.on_event(RunStarted(
            self.run_id, task=config.task_type.value, model_name=config.model_name, output_dir=str(self.run_dir),
            number_of_epochs=config.number_of_epochs, config=config.to_dict(),
            resumed_from_epoch=self.state.epochs_done))


def _items_sum(items) -> float:
    """The total of ultralytics' loss items (box + cls + dfl, per image), or NaN before any batch."""
    if not items:
        return float("nan")
    values = items.values() if isinstance(items, dict) else items
    return float(sum(float(v) for v in values))


def _targets(record, size: tuple[int, int], class_index: dict[str, int]):
    from jupyter_avml.metrics.detection import ImageTargets

    width, height = size
    objects = list(record.label)
    boxes = np.array([[o.top_x * width, o.top_y * height, o.bottom_x * width, o.bottom_y * height] for o in objects],
                     dtype=np.float64).reshape(-1, 4)
    return ImageTargets(boxes=boxes, labels=np.array([class_index[o.label] for o in objects], dtype=np.int64),
                        iscrowd=np.array([o.is_crowd for o in objects], dtype=bool), width=width, height=height)
