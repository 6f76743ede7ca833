"""Hostile executor settings (``executor``, ``ray_address``, ``cpus_per_child``, ``gpus_per_child``,
``child_retries``): values of the wrong kind, out of range or shaped to smuggle something in. Each ends in one
``ConfigError`` naming the setting and the value, before anything starts (no Ray, no network)."""

from __future__ import annotations

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
