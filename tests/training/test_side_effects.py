"""A run leaves the process as it found it: no socket default timeout, no MPLCONFIGDIR, no logger levels changed
(issue 11, item 10). train.log still records the run's milestones."""

from __future__ import annotations

import logging
import os
import socket

import pytest

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.training.run import train

TINY = dict(model_name="resnet18", pretrained=0, train_crop_size=32, valid_resize_size=32, valid_crop_size=32,
            training_batch_size=16, validation_batch_size=50, cpu_threads=1, device="cpu", number_of_epochs=1)


@pytest.mark.parametrize("level", [logging.NOTSET, logging.WARNING])
def test_a_run_changes_no_process_wide_setting(shapes_tiny, workspace, monkeypatch, level):
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    package_logger = logging.getLogger("jupyter_avml")
    monkeypatch.setattr(package_logger, "level", level)
    timeout_before = socket.getdefaulttimeout()
    handlers_before = list(package_logger.handlers)

    summary = train(AutoMLImageConfig(task="image-classification", training_data=str(shapes_tiny), **TINY))
    assert summary.status == "completed"
    assert socket.getdefaulttimeout() == timeout_before
    assert "MPLCONFIGDIR" not in os.environ
    assert package_logger.level == level and package_logger.handlers == handlers_before
    log = (workspace / "runs" / summary.run_id / "train.log").read_text()
    assert f"run {summary.run_id}: resnet18" in log and f"run {summary.run_id} completed" in log
