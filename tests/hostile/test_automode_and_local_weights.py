"""Hostile inputs of AutoMode's recorded plan and of the weights packages (local weights).

Input paths: the ``automode`` section of an experiment file (a plan a user may edit or damage), the settings
of the successive-halving and Hyperband policies, and the files of an installed weights package (replaced,
truncated, swapped for a pickle that runs code).
"""

from __future__ import annotations

import math
import pickle
import time

import pytest
import torch
from torch import nn

from jupyter_avml.errors import ConfigError, WeightsUnavailableError
from jupyter_avml.models.local_weights import LocalWeights, OrderedKeyMapping, file_sha256, load_local_weights
from jupyter_avml.sweep.config import parse_experiment
from jupyter_avml.sweep.policies import Decision, TrialHistory, make_policy

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def weights_package(tmp_path, monkeypatch):
    """An installed package ``hostile_weights_pkg`` with a good ``w.pth``; returns (entry, path)."""
    folder = tmp_path / "site" / "hostile_weights_pkg"
    folder.mkdir(parents=True)
    torch.save(nn.Linear(2, 2).state_dict(), folder / "w.pth")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = LocalWeights("hostile-weights", "hostile_weights_pkg", "w.pth", file_sha256(folder / "w.pth"),
                         "test", "MIT", OrderedKeyMapping())
    return entry, folder / "w.pth"


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # unpickling it would create the marker file


def test_a_weights_file_swapped_for_a_code_running_pickle_is_refused_unread(weights_package, tmp_path):
    entry, path = weights_package
    marker = tmp_path / "code-ran"
    path.write_bytes(pickle.dumps({"weight": _RunsCode(marker)}))
    with pytest.raises(WeightsUnavailableError, match="is damaged or not the published file"):
        load_local_weights(nn.Linear(2, 2), entry, what="weights")
    assert not marker.exists()


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 truncated", b"\x00" * 1024])
def test_a_truncated_or_blank_weights_file_is_named(weights_package, damage):
    entry, path = weights_package
    path.write_bytes(damage)
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        load_local_weights(nn.Linear(2, 2), entry, what="ImageNet weights of x")
    assert str(info.value).startswith(f"ImageNet weights of x: {path} is damaged")
    assert time.monotonic() - started < 5


def test_a_weights_file_replaced_by_a_folder_is_not_found(weights_package):
    entry, path = weights_package
    path.unlink()
    path.mkdir()
    with pytest.raises(WeightsUnavailableError, match="the package hostile-weights that holds them is not installed"):
        load_local_weights(nn.Linear(2, 2), entry, what="weights")


BASE = {"task": "image-classification", "device": "cpu", "pretrained": 0, "iterations": 3}


@pytest.mark.parametrize("plan, needle", [
    ([1, 2, 3], "automode must be a mapping (the plan AutoMode recorded)"),
    ({"portfolio": "everything"}, "automode.portfolio must be a list of 1 to 1000 {params, why}"),
    ({"portfolio": [{"params": {"model_name": "resnet18"}}] * 1001}, "automode.portfolio must be a list of 1 to 1000"),
    ({"portfolio": [{"params": "resnet18"}]}, "automode.portfolio[0] must be {params: {model_name: ..., ...}"),
    ({"portfolio": [{"params": {"model_name": "resnet18", "training_data": "/etc/passwd"}}]},
     "automode.portfolio[0] sets training_data, which the experiment also sets"),
    ({"portfolio": [{"params": {"model_name": "resnet18", "workspace": "/"}}]},
     "automode.portfolio[0] sets workspace: an entry holds hyperparameters (and model_name) only"),
    ({"portfolio": [{"params": {"model_name": "resnet18", "number_of_epochs": "many"}}]},
     "automode.portfolio[0]: number_of_epochs must be"),
    ({"portfolio": [{"params": {"model_name": "x" * 10_000}}]}, "automode.portfolio[0]: model_name must be a model"),
    ({"portfolio": [{"params": {"model_name": "resnet18"}}], "refine": {"resnet18": ["learning_rate"]}},
     "automode.refine must map model names to {setting: default}"),
    ({"portfolio": [{"params": {"model_name": "resnet18"}}], "policy": "aggressive"},
     "automode.policy must be a policy mapping or null"),
])
def test_a_damaged_or_edited_plan_is_refused_with_its_key(tmp_path, plan, needle):
    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        parse_experiment({**BASE, "training_data": str(data), "automode": plan})
    assert needle in str(info.value)
    assert len(str(info.value)) < 600  # one readable line, whatever the plan holds
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("config, needle", [
    ({"type": "successive_halving", "reduction_factor": math.inf}, "reduction_factor must be a number >= 2, got inf"),
    ({"type": "successive_halving", "reduction_factor": math.nan}, "reduction_factor must be a number >= 2, got nan"),
    ({"type": "hyperband", "brackets": 2.5}, "brackets must be an integer >= 1, got 2.5"),
    ({"type": "successive_halving", "min_resource": True}, "min_resource must be an integer >= 1, got True"),
])
def test_policy_settings_that_cannot_work_are_refused(config, needle):
    with pytest.raises(ConfigError, match="early_termination_policy: ") as info:
        make_policy(config)
    assert needle in str(info.value)


def test_a_huge_first_rung_never_stops_anything_and_decides_quickly():
    policy = make_policy({"type": "successive_halving", "min_resource": 10 ** 9})
    histories = {str(i): TrialHistory(str(i), {k: float(i) / 1000 for k in range(1, 50)}) for i in range(1000)}
    started = time.monotonic()
    decisions = {policy.decide("0", step, histories)[0] for step in range(1, 50)}
    assert decisions == {Decision.CONTINUE}
    assert time.monotonic() - started < 2
