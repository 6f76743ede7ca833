"""ultralytics' ``DetectionTrainer``, subclassed: every hook of its loop we use, and every internal we read or
restore, in one class.

The subclass (``trainer_class()``) delegates the decisions to a *host* (``training.yolo.YoloRunner``) through the
small interface ``TrainerHost``: the optimizer, the learning-rate schedule, what happens after an update and after
set-up, and the evaluation. The host reads and restores ultralytics' state only through the methods below
(``resumable_state``, ``restore``, ``start_epoch_loader``...), never through ultralytics' attributes.

Overridden methods (``hooks.py`` checks their names and signatures against the installed ultralytics):

* ``get_dataset``: the dataset dictionary of our layout (ultralytics' ``check_det_dataset`` would download a font);
* ``build_optimizer``, ``_setup_scheduler``, ``optimizer_step``: the host's optimizer and per-update schedule;
* ``_setup_train``: ultralytics' AMP check (``check_amp``, which downloads and runs ``yolo26n.pt``) only runs for
  fp16; the engine trusts torch's AMP, so for fp16 the set-up runs with AMP off and this subclass then turns it on
  (``self.amp``, a gradient scaler), before the host restores a checkpoint;
* ``validate``: the host's evaluation; ``final_eval``: none (the best epoch's metrics are already known).
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import torch


class TrainerHost(Protocol):
    """What the trainer asks of the code that drives it."""

    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer: ...

    def make_schedule(self, optimizer: torch.optim.Optimizer) -> Any:
        """An object whose ``step()`` sets the learning rates for the next update (ultralytics calls it at
        each epoch start too) and that has a settable ``last_epoch``."""

    def after_setup(self, trainer) -> None:
        """Model, optimizer, EMA and loaders are ready; nothing trained yet (restore a checkpoint here)."""

    def after_update(self, trainer) -> None: ...

    def validate(self, trainer) -> tuple[dict[str, float], float | None]:
        """(metrics for ultralytics' results.csv, fitness: a value only when it is a new best)."""


def items_sum(items) -> float:
    """The total of ultralytics' loss items (box + cls + dfl, per image), or NaN before any batch."""
    if items is None or len(items) == 0:
        return float("nan")
    values = items.values() if isinstance(items, dict) else items
    return float(sum(float(v) for v in values))


@functools.lru_cache(maxsize=1)
def trainer_class() -> type:
    """The ``DetectionTrainer`` subclass (built on first use: ultralytics may only be imported after
    ``environment.prepare_ultralytics``)."""
    from ultralytics.data.utils import check_class_names
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils.torch_utils import unwrap_model

    class AvmlDetectionTrainer(DetectionTrainer):
        def __init__(self, host: TrainerHost, overrides: dict[str, Any], layout):
            self.runner, self.layout = host, layout  # before super().__init__, which calls get_dataset
            super().__init__(overrides=overrides)

        # -- overridden hooks ---------------------------------------------------------------------------
        def get_dataset(self) -> dict[str, Any]:
            # What check_det_dataset would return for our data.yaml, without its font download.
            layout = self.layout
            names = check_class_names(dict(enumerate(layout.class_names)))
            return {"yaml_file": str(layout.data_yaml), "path": layout.root, "names": names, "nc": len(names),
                    "channels": 3, "train": str(layout.images_dir("train")), "val": str(layout.images_dir("val"))}

        def build_optimizer(self, model, name="auto", lr=0.001, momentum=0.9, decay=1e-5, iterations=1e5):
            return self.runner.build_optimizer(unwrap_model(model))

        def _setup_scheduler(self):
            self.lf = lambda epoch: 1.0  # read only by ultralytics' warm-up, which warmup_epochs=0 turns off
            self.scheduler = self.runner.make_schedule(self.optimizer)

        def _setup_train(self):
            fp16 = self.args.amp is True  # "bf16" and False skip ultralytics' AMP check anyway
            if fp16:
                self.args.amp = False
            try:
                super()._setup_train()
            finally:
                if fp16:
                    self.args.amp = True
            if fp16:
                self.amp = True
                self.scaler = torch.amp.GradScaler(self.device.type, enabled=True)
            self.runner.after_setup(self)

        def optimizer_step(self):
            super().optimizer_step()
            self.runner.after_update(self)
            self.scheduler.step()

        def validate(self):
            return self.runner.validate(self)

        def final_eval(self):
            """No ultralytics validation of best.pt: the best epoch's metrics are ours and already known."""

        # -- what the host reads -------------------------------------------------------------------------
        @property
        def batches_per_epoch(self) -> int:
            return len(self.train_loader)

        @property
        def evaluated_model(self) -> torch.nn.Module:
            """The EMA weights: those ultralytics validates and deploys."""
            return self.ema.ema if getattr(self, "ema", None) is not None else unwrap_model(self.model)

        @property
        def batch_loss(self) -> float:
            """The loss back-propagated for the last batch (a non-finite one is refused by the host)."""
            return float(self.loss.detach().sum())

        @property
        def batch_loss_items(self) -> float:
            return items_sum(self.loss_items)

        @property
        def epoch_loss(self) -> float:
            """The mean loss of the epoch's batches (box + cls + dfl, per image)."""
            return items_sum(self.tloss)

        @property
        def learning_rate(self) -> float:
            return self.optimizer.param_groups[0]["lr"]

        def resumable_state(self) -> dict[str, Any]:
            """What a resumed run needs from ultralytics: raw and EMA weights, EMA update count, optimizer and
            scaler states, and the indices of the mosaic buffer."""
            from jupyter_avml.models.model_file import cpu_state_dict

            dataset = self.train_loader.dataset
            return {"model": cpu_state_dict(unwrap_model(self.model)), "ema": cpu_state_dict(self.ema.ema),
                    "ema_updates": int(self.ema.updates), "optimizer": self.optimizer.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "mosaic_buffer": [int(i) for i in getattr(dataset, "buffer", [])]}

        # -- what the host changes -----------------------------------------------------------------------
        def restore(self, checkpoint: dict[str, Any], epochs_done: int) -> None:
            """Continue after ``epochs_done`` epochs from ``resumable_state``'s content."""
            unwrap_model(self.model).load_state_dict(checkpoint["model"])
            self.ema.ema.load_state_dict(checkpoint["ema"])
            self.ema.updates = int(checkpoint["ema_updates"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            if self.scaler.is_enabled() and checkpoint.get("scaler"):
                self.scaler.load_state_dict(checkpoint["scaler"])
            self.start_epoch = epochs_done
            dataset = self.train_loader.dataset
            if hasattr(dataset, "buffer"):
                # Replaying the loads rebuilds the same buffer (and the images it keeps in memory).
                dataset.buffer.clear()
                for index in checkpoint.get("mosaic_buffer", []):
                    dataset.load_image(int(index))

        def start_epoch_loader(self, seed: int) -> None:
            """A fresh iterator and a reseeded shuffle, so that an epoch's order depends on ``seed`` only
            (in-process loading; worker processes keep their own randomness)."""
            loader = self.train_loader
            if loader.num_workers == 0:
                loader.reset()
                loader.generator.manual_seed(seed)

        def set_best_fitness(self, value: float | None) -> None:
            self.best_fitness = value

        def request_stop(self) -> None:
            """End the loop after this epoch (ultralytics saves and returns)."""
            self.stop = True

        def close_loaders(self) -> None:
            for loader in (getattr(self, "train_loader", None), getattr(self, "test_loader", None)):
                if hasattr(loader, "close"):
                    loader.close()

    return AvmlDetectionTrainer
