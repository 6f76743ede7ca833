"""YOLOv5 training through ultralytics' own trainer, reporting like the torch engine.

``YoloRunner(config, data, run_id=, run_dir=, callbacks=, stop_signal=).fit(resume)`` trains the YOLOv5u model
of ``models.yolo.build_yolo`` with a subclass of ultralytics' ``DetectionTrainer`` (``models.ultralytics_adapter
.trainer``, where every ultralytics internal we use is named and checked): mosaic, random affine, HSV jitter,
flips, letterboxing, the loss, EMA weights and AMP are ultralytics'; the hyperparameters, the schedule and the
evaluation are ours, and best-model selection, early stopping, stop requests, events, checkpoints and
``outputs/model.pt`` are recorded by the same ``bookkeeping.RunBookkeeper`` as the torch engine's.

The data goes through ``data.yolo_layout``: the records become images + ``labels/*.txt`` + ``data.yaml``
under ``<workspace>/cache/yolo/<digest>`` (reused by later runs on the same data). ultralytics' own files
(``args.yaml``, ``results.csv``, ``weights/last.pt`` and ``best.pt``, in its format) stay in
``<run>/ultralytics``; with ``prepare_ultralytics`` nothing is written outside the workspace and nothing
goes to the network (no settings in HOME, no font download: we give the trainer its dataset dictionary
ourselves instead of ultralytics' ``check_det_dataset``, which fetches Arial.ttf; no AMP-check download: the
trainer subclass keeps ultralytics' ``check_amp`` out of its set-up).

Hyperparameters (ours -> ultralytics' argument, explicit in ``ultralytics_overrides``)
-------------------------------------------------------------------------------------
=================================  =========================================================================
ours                               ultralytics
=================================  =========================================================================
number_of_epochs                   ``epochs``
training_batch_size                ``batch``
img_size                           ``imgsz`` (ultralytics rounds it up to a multiple of 32; so do evaluation
                                   and inference, ``ultralytics_adapter.predict.network_size``)
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
                                   delay); OUR rule (``bookkeeping.early_stopping_decision``, counted in
                                   evaluations) sets the trainer's ``stop`` flag
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
deploys -- predict the validation records through ``ultralytics_adapter.predict.detect_images`` (the predictor's path:
letterbox to img_size, NMS at ``box_iou_thresh`` with ``conf=0.001`` and one box per class above it, as
ultralytics validates), and ``metrics.detection_metrics`` scores them against the records (crowd boxes
included, with our crowd rule) with ``validation_metric_type``; precision and recall count the detections
scoring at least ``box_score_thresh``. So YOLO and the torchvision detectors are compared by the same
numbers. Our primary value is returned as ultralytics' fitness when it improves (None otherwise), so its
``best.pt`` is written at the same epochs as our ``outputs/model.pt``.
An improved primary metric writes ``outputs/model.pt`` (``RunBookkeeper.record_evaluation``). After the epoch's
events, the bookkeeper's early-stopping decision sets ``trainer.stop``.

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

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.metrics.result import MetricsResult
from jupyter_avml.models.device import amp_dtype_for, resolve_device
from jupyter_avml.runs.events import CallbackList, StopSignal
from jupyter_avml.training.bookkeeping import RunBookkeeper, TrainerState, TrainResult
from jupyter_avml.training.optim import fused_kwargs, lr_factor
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


def ultralytics_overrides(config: AutoMLImageConfig, *, data_yaml: str | Path, run_dir: str | Path,
                          device: torch.device, model_file: str) -> dict[str, Any]:
    """ultralytics' training arguments for ``config`` (the mapping table of the module docstring)."""
    amp = amp_dtype_for(config.mixed_precision, device)
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
    fused = fused_kwargs(model.parameters())
    if config.optimizer == "sgd":
        momentum = config.momentum
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum,
                                    nesterov=bool(config.nesterov) and momentum > 0, **fused)
    else:
        cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
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


class YoloRunner:
    """Trains ``yolov5`` as configured and reports through ``callbacks`` (see the module docstring).

    The host of ``ultralytics_adapter.trainer``'s subclass: it gives ultralytics our optimizer, schedule and
    evaluation, and records every epoch with the same ``RunBookkeeper`` as the torch engine.
    """

    def __init__(self, config: AutoMLImageConfig, data, *, run_id: str, run_dir: Path,
                 callbacks: CallbackList | None = None, stop_signal: StopSignal | None = None, start_model=None):
        self.config = config
        self.start_model = start_model  # incremental training: the weights a new run starts from
        self.data = data
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.stop_signal = stop_signal if stop_signal is not None else StopSignal()
        self.device = resolve_device(config.device)
        self.amp_dtype = amp_dtype_for(config.mixed_precision, self.device)
        self.class_names = list(data.class_names)
        self.book = RunBookkeeper(config, run_id=run_id, run_dir=self.run_dir, callbacks=callbacks,
                                  stop_signal=self.stop_signal, class_names=self.class_names,
                                  model_facts=self._model_facts)
        self.layout = None
        self.trainer = None
        self._checkpoint: dict | None = None
        self._batch_index = -1
        self._next_batch = 0
        self._epoch_started = 0.0
        self._stop: tuple[str, str | None] | None = None  # (status, reason) decided at an epoch end

    @property
    def state(self) -> TrainerState:
        return self.book.state

    # -- the run --------------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        """Train (or continue from ``checkpoints/last.pt`` with ``resume``) and return the engine's ``TrainResult``."""
        if resume:
            self._checkpoint = self.book.load_last_checkpoint(expected_format=CHECKPOINT_FORMAT)
        trainer = self.build_trainer()
        if self.state.epochs_done >= self.config.number_of_epochs:
            # A resumed run that had already finished its epochs: nothing to train.
            trainer.model.load_state_dict(self._checkpoint["ema"])
            self.book.run_started()
            return self.book.result("completed", None, self.book.finalize(trainer.model))
        status, reason = "completed", None
        try:
            trainer.train()
        except _StopRun:
            status, reason = self.book.stop_request() or ("stopped", None)
            log.info("run %s %s at epoch %d, batch %d", self.run_id, status, self.state.epochs_done + 1,
                     self._batch_index + 1)
        finally:
            trainer.close_loaders()
        if self._stop is not None:
            status, reason = self._stop
        return self.book.result(status, reason, self.book.finalize(trainer.evaluated_model))

    def build_trainer(self):
        """ultralytics' trainer for this run, with our data layout, model, arguments and callbacks (not started).

        ``fit`` runs it; tests inspect it (``trainer.args``; after ultralytics' ``_setup_train``, the optimizer
        and the frozen parameters).
        """
        from jupyter_avml.data.yolo_layout import build_yolo_layout
        from jupyter_avml.models.ultralytics_adapter.environment import prepare_ultralytics
        from jupyter_avml.models.ultralytics_adapter.trainer import trainer_class
        from jupyter_avml.models.yolo import build_yolo, yolo_model_file
        from jupyter_avml.training.engine import seed_everything

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
        trainer = trainer_class()(self, overrides, self.layout)
        torch.set_num_threads(threads)  # ultralytics' select_device resets the CPU thread count
        self.device = trainer.device  # the same device, with the index ultralytics resolved ("cuda" -> cuda:0)
        if self.start_model is not None and not resuming:  # before ultralytics copies the model into its EMA
            from jupyter_avml.training.incremental import load_start_weights

            load_start_weights(yolo.model, self.start_model)
        trainer.model = yolo.model
        for event, callback in (("on_train_start", lambda _: self.book.run_started()),
                                ("on_train_epoch_start", self._on_epoch_start),
                                ("on_train_batch_start", self._on_batch_start),
                                ("on_train_batch_end", self._on_batch_end),
                                ("on_train_epoch_end", self._on_train_epoch_end),
                                ("on_fit_epoch_end", self._on_epoch_end)):
            trainer.add_callback(event, callback)
        self.trainer = trainer
        return trainer

    def _workspace(self) -> Workspace:
        """The workspace of the run folder (``<workspace>/runs/<run_id>``), else the configured one."""
        if self.run_dir.parent.name == "runs":
            return Workspace(self.run_dir.parent.parent.absolute())
        return Workspace.resolve(self.config.workspace)

    # -- the trainer's host (ultralytics_adapter.trainer.TrainerHost) ----------------------------------
    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        return build_yolo_optimizer(model, self.config)

    def make_schedule(self, optimizer: torch.optim.Optimizer) -> _Schedule:
        return _Schedule(optimizer, self.lr_factors_now)

    def after_setup(self, trainer) -> None:
        """After ultralytics built the model, optimizer, EMA and loaders: restore a checkpoint when resuming."""
        if self._checkpoint is not None:
            trainer.restore(self._checkpoint, self.state.epochs_done)
            self._checkpoint = None
        trainer.set_best_fitness(self.state.best_value)
        self._next_batch = self.state.epochs_done * trainer.batches_per_epoch
        trainer.scheduler.step()

    def lr_factors_now(self) -> tuple[float, float]:
        """For the next optimizer update (its first batch is global batch ``_next_batch``): our schedule's
        factor, and the fraction of warmup_cosine's warm-up still to go (0 after it, and for ``step``)."""
        batches_per_epoch = self.trainer.batches_per_epoch if self.trainer is not None else 1
        config = self.config
        warmup = 0
        if config.lr_scheduler == "warmup_cosine":
            warmup = min(config.warmup_cosine_lr_warmup_epochs, config.number_of_epochs) * batches_per_epoch
        left = max(0.0, 1.0 - self._next_batch / warmup) if warmup else 0.0
        return lr_factor(config, self._next_batch, batches_per_epoch), left

    def after_update(self, trainer) -> None:
        self.state.updates_done += 1
        self._next_batch = trainer.epoch * trainer.batches_per_epoch + self._batch_index + 1

    def validate(self, trainer) -> tuple[dict[str, float], float | None]:
        """ultralytics' ``validate``: our evaluation when due; returns (results.csv metrics, fitness)."""
        epoch, book = trainer.epoch, self.book
        is_best = False
        if book.evaluation_due(epoch):
            model = trainer.evaluated_model
            is_best = book.record_evaluation(self.evaluate(model), model, epoch + 1)
        trainer.set_best_fitness(self.state.best_value)
        result = book.epoch_result
        metrics = {f"metrics/{name}": float(result.scalars.get(name, math.nan)) if result else math.nan
                   for name in ("precision", "recall", "mean_average_precision")}
        # ultralytics writes best.pt when its fitness equals its best: give it a fitness only when ours improved.
        return metrics, (self.state.best_value if is_best else None)

    def evaluate(self, model: torch.nn.Module) -> MetricsResult:
        """Detection metrics of ``model`` (a ``DetectionModel``) on the validation records."""
        from jupyter_avml.data.images import load_image
        from jupyter_avml.metrics.detection import ImagePredictions, detection_metrics
        from jupyter_avml.models.ultralytics_adapter.network import model_stride
        from jupyter_avml.models.ultralytics_adapter.predict import detect_images, network_size

        config = self.config
        was_training = model.training
        model.eval()
        size = network_size(config.img_size, model_stride(model))
        class_index = {name: i for i, name in enumerate(self.class_names)}
        targets, predictions = [], []
        records = self.data.valid
        for start in range(0, len(records), config.validation_batch_size):
            chunk = records[start:start + config.validation_batch_size]
            images = [load_image(record.path) for record in chunk]
            detections = detect_images(model, images, size=size, conf=EVAL_CONF, iou=config.box_iou_thresh,
                                       device=self.device, multi_label=True, amp_dtype=self.amp_dtype)
            for record, image, (boxes, scores, labels) in zip(chunk, images, detections, strict=True):
                predictions.append(ImagePredictions(boxes=boxes, scores=scores, labels=labels))
                targets.append(_targets(record, image.size, class_index))
        model.train(was_training)
        return detection_metrics(targets, predictions, self.class_names, metric_type=config.validation_metric_type,
                                 score_threshold=config.box_score_thresh, task=config.task_type.value)

    # -- ultralytics callbacks -------------------------------------------------------------------------
    def _on_epoch_start(self, trainer) -> None:
        from jupyter_avml.training.engine import seed_everything

        seed_everything(self.config.seed, trainer.epoch + 1)
        trainer.start_epoch_loader(torch.initial_seed())
        self._batch_index = -1
        self._epoch_started = time.perf_counter()
        self.book.epoch_started(trainer.epoch)

    def _on_batch_start(self, trainer) -> None:
        self._batch_index += 1

    def _on_batch_end(self, trainer) -> None:
        self.book.batch_done(trainer.epoch, self._batch_index, trainer.batches_per_epoch, trainer.batch_loss,
                             reported_loss=trainer.batch_loss_items)
        if self.stop_signal:
            raise _StopRun()

    def _on_train_epoch_end(self, trainer) -> None:
        self.state.epochs_done = trainer.epoch + 1

    def _on_epoch_end(self, trainer) -> None:
        """After ultralytics' validation (ours) and save: history, checkpoints, the epoch event, stop decisions."""
        decision = self.book.end_epoch(
            epoch=trainer.epoch + 1, train_loss=trainer.epoch_loss, learning_rate=trainer.learning_rate,
            model=trainer.evaluated_model, seconds=time.perf_counter() - self._epoch_started,
            resumable_state=lambda: {"format": CHECKPOINT_FORMAT, **trainer.resumable_state()})
        if decision is not None:
            self._stop = decision
            trainer.request_stop()

    # -- files -----------------------------------------------------------------------------------------
    def _model_facts(self, model: torch.nn.Module) -> dict[str, Any]:
        """What the predictor needs besides the weights (saved in every model file)."""
        from jupyter_avml.models.ultralytics_adapter.network import model_stride
        from jupyter_avml.models.ultralytics_adapter.predict import network_size
        from jupyter_avml.models.yolo import yolo_model_file, yolo_scale

        stride = model_stride(model)
        return {"yolo": {"model_file": yolo_model_file(self.config.model_size, self.config.model_spec.backend),
                         "scale": yolo_scale(self.config.model_size), "stride": stride,
                         "network_size": network_size(self.config.img_size, stride)}}


def _targets(record, size: tuple[int, int], class_index: dict[str, int]):
    from jupyter_avml.metrics.detection import ImageTargets

    width, height = size
    objects = list(record.label)
    boxes = np.array([[o.top_x * width, o.top_y * height, o.bottom_x * width, o.bottom_y * height] for o in objects],
                     dtype=np.float64).reshape(-1, 4)
    return ImageTargets(boxes=boxes, labels=np.array([class_index[o.label] for o in objects], dtype=np.int64),
                        iscrowd=np.array([o.is_crowd for o in objects], dtype=bool), width=width, height=height)
