"""What a task family must provide to the training engine.

The engine (``engine.Trainer``) owns the loop: epochs, optimizer updates, schedules, mixed precision,
evaluation cadence, early stopping, checkpoints, events and stop requests. A recipe owns what differs by
task: the model, the data pipeline, the loss and the evaluation. Classification (timm) and detection /
segmentation (torchvision) are recipes; YOLO is trained by ultralytics' own trainer and plugs in at the
run level instead (see ``training.yolo``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

import torch

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.data.records import ImageRecord
from jupyter_avml.metrics.result import MetricsResult


class Recipe(ABC):
    """Task-specific parts of a run. Built once per run, before the engine starts.

    Every recipe is constructed as ``Recipe(config, class_names, train_records, valid_records)``.
    """

    def __init__(self, config: AutoMLImageConfig, class_names: list[str], train_records: list[ImageRecord],
                 valid_records: list[ImageRecord]):
        self.config = config
        self.class_names = list(class_names)
        self.train_records = train_records
        self.valid_records = valid_records

    @abstractmethod
    def build_model(self) -> torch.nn.Module:
        """The network, with the run's number of classes and pretrained weights as configured."""

    @abstractmethod
    def train_batches(self, epoch: int) -> Iterable[Any]:
        """Training batches of ``epoch`` (0-based). Order and augmentation depend only on (seed, epoch)."""

    @abstractmethod
    def num_train_batches(self) -> int: ...

    @abstractmethod
    def training_loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, int]:
        """Forward pass and loss of one batch; returns (scalar loss, number of images in the batch)."""

    @abstractmethod
    def evaluate(self, model: torch.nn.Module, device: torch.device) -> MetricsResult:
        """Metrics on the validation data (the model is in eval mode, gradients off)."""

    def prepare_model(self, model: torch.nn.Module, device: torch.device, mixed_precision: bool) -> torch.nn.Module:
        """Move to the device; recipes may switch to channels-last on CUDA."""
        return model.to(device)

    def export_extra(self) -> dict:
        """Extra plain values stored in ``model.pt`` (e.g. normalisation constants)."""
        return {}
