"""Hostile executor settings (``executor``, ``ray_address``, ``cpus_per_child``, ``gpus_per_child``,
``child_retries``) and DDP settings (``distributed``): values of the wrong kind, out of range or shaped to smuggle
something in, or that the machine or the model cannot honour. Each ends in one ``ConfigError`` naming the setting
and the value, before anything starts (no Ray, no network, no run recorded)."""

from __future__ import annotations

import re

import pytest

from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.config import parse_experiment


@pytest.fixture
def base(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    return {"task": "image-classification", "training_data": str(data), "model_name": "resnet18"}


@pytest.mark.parametrize("key, value", [
    ("executor", 3),  # not a string
    ("executor", ["ray"]),
    ("executor", "ray; rm -rf /"),
    ("executor", ""),
    ("ray_address", "127.0.0.1:6379 --block"),
    ("ray_address", "ray://host:10001/../../etc"),
    ("ray_address", "x" * 10_000 + ":1"),
    ("ray_address", "host:0"),
    ("ray_address", 6379),
    ("cpus_per_child", float("nan")),
    ("cpus_per_child", float("inf")),
    ("cpus_per_child", True),
    ("cpus_per_child", "2"),
    ("cpus_per_child", 10 ** 12),
    ("gpus_per_child", -1),
    ("gpus_per_child", 10 ** 9),
    ("gpus_per_child", {"count": 2}),
    ("child_retries", True),
    ("child_retries", "1"),
    ("child_retries", 1.5),
])
def test_a_hostile_executor_setting_is_refused_by_name(base, key, value):
    settings = {"executor": "ray", key: value} if key != "executor" else {key: value}
    with pytest.raises(ConfigError) as caught:
        parse_experiment({**base, **settings})
    assert caught.value.field == key
    assert len(str(caught.value)) < 1_000  # the value is quoted, cut when long


@pytest.mark.parametrize("value", [-1, 65, 1.5, True, "all", "2; rm", float("nan")])
def test_a_hostile_distributed_setting_is_refused_by_name(tmp_path, value):
    """``distributed`` (DDP processes): out of range or not a whole number ends in one ``ConfigError``."""
    from jupyter_avml.config import AutoMLImageConfig

    with pytest.raises(ConfigError) as caught:
        AutoMLImageConfig.from_dict({"task": "image-classification", "training_data": str(tmp_path / "t.jsonl"),
                                     "model_name": "resnet18", "distributed": value})
    assert caught.value.field == "distributed"


@pytest.mark.parametrize("settings, says", [
    ({"model_name": "yolov5", "task": "image-object-detection", "distributed": 2, "device": "cpu"},
     "yolov5 is trained by ultralytics' own trainer"),
    ({"distributed": 4, "device": "cuda"}, "distributed is 4 but 0 GPU(s) are visible"),
])
def test_ddp_a_machine_or_model_cannot_give_is_refused_before_the_run(tmp_path, monkeypatch, settings, says):
    """A DDP setting this machine cannot honour (more GPUs than it has) or a model whose trainer does not run
    under DDP here is refused by ``world_size``, which ``run.train`` calls before a run is recorded."""
    from jupyter_avml.config import AutoMLImageConfig
    from jupyter_avml.training import distributed

    monkeypatch.setattr(distributed, "visible_gpus", lambda: 0)
    config = AutoMLImageConfig.from_dict({"task": "image-classification", "model_name": "resnet18",
                                          "training_data": str(tmp_path / "t.jsonl"), **settings})
    with pytest.raises(ConfigError, match=re.escape(says)) as caught:
        distributed.world_size(config)
    assert caught.value.field == "distributed"
