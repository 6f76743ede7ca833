"""AutoMode from every door: a Python mapping, a YAML file, ``avml sweep --dry-run`` and ``%%avml --dry-run``."""

from __future__ import annotations

import json

import pytest
import yaml

from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.automode import AutoModePlan
from jupyter_avml.sweep.config import parse_experiment, read_experiment
from jupyter_avml.sweep.halving import SuccessiveHalvingPolicy
from jupyter_avml.sweep.policies import BanditPolicy
from tests.cli.doors import avml, cell, notebook_shell

MC = "image-classification"
YAML = """\
task: image-classification
training_data: {data}
device: cpu
pretrained: 0
number_of_epochs: 2
iterations: 5
"""


def test_iterations_without_a_search_space_is_automode(shapes):
    spec = parse_experiment({"task": MC, "training_data": str(shapes), "device": "cpu", "pretrained": 0,
                             "iterations": 5})
    assert spec.sampling == "auto" and spec.iterations == 5 and spec.has_search_space
    assert isinstance(spec.automode, AutoModePlan) and spec.space is spec.automode
    assert isinstance(spec.policy, SuccessiveHalvingPolicy)  # AutoMode's default early termination
    assert spec.raw["automode"] == spec.automode.to_dict()  # recorded for the driver and readers
    # sampling: auto asks for it explicitly (iterations then default to the portfolio)
    auto = parse_experiment({"task": MC, "training_data": str(shapes), "device": "cpu", "pretrained": 0,
                             "sampling": "auto"})
    assert auto.iterations == len(auto.automode.portfolio)
    # one iteration without a search space stays the spec's baseline
    assert parse_experiment({"task": MC, "training_data": str(shapes), "model_name": "resnet18"}).automode is None


def test_the_newer_limits_section_asks_for_automode_within_its_budget(shapes):
    spec = parse_experiment({"task": MC, "training_data": str(shapes), "device": "cpu", "pretrained": 0,
                             "limits": {"max_trials": 7, "max_concurrent_trials": 2, "timeout_minutes": 30}})
    assert spec.sampling == "auto" and spec.iterations == 7 and spec.max_concurrent_iterations == 2
    assert spec.budget_seconds == 1800
    assert len(spec.automode.portfolio) == 6  # at most 6 entries; the rest of max_trials refines
    hours = parse_experiment({"task": MC, "training_data": str(shapes), "device": "cpu", "pretrained": 0,
                              "iterations": 3, "experiment_timeout_hours": 0.5})
    assert hours.sampling == "auto" and hours.budget_seconds == 1800 and len(hours.automode.portfolio) == 3


def test_the_recorded_plan_is_the_plan(shapes, tmp_path):
    spec = parse_experiment({"task": MC, "training_data": str(shapes), "device": "cpu", "pretrained": 0,
                             "iterations": 4, "early_termination_policy": {"type": "bandit", "slack_factor": 0.1}})
    assert isinstance(spec.policy, BanditPolicy) and spec.automode.policy is None  # the user's policy wins
    path = tmp_path / "experiment.yaml"
    path.write_text(spec.to_yaml())
    again = read_experiment(path)
    assert again.automode == spec.automode and again.policy == spec.policy
    # an edited plan is used as written
    raw = yaml.safe_load(path.read_text())
    raw["automode"]["portfolio"] = raw["automode"]["portfolio"][:1]
    assert parse_experiment(raw).automode.portfolio == spec.automode.portfolio[:1]


@pytest.mark.parametrize("change, message", [
    ({"search_space": {"learning_rate": "uniform(0.01, 0.1)"}, "sampling": "auto"},
     "AutoMode (sampling: auto) chooses the models and hyperparameters itself; remove search_space"),
    ({"automode": {"portfolio": []}}, "automode.portfolio must be a list of 1 to 1000 {params, why}"),
    ({"automode": {"portfolio": [{"params": {"model_name": "resnet18", "number_of_epochs": 3}}]}},
     "automode.portfolio[0] sets number_of_epochs, which the experiment also sets; set it in one place"),
    ({"automode": {"portfolio": [{"params": {"model_name": "resnet18"}}],
                   "refine": {"resnet18": {"number_of_epochs": 1}}}},
     "automode.refine.resnet18 varies number_of_epochs, which the experiment sets"),
    ({"automode": {"portfolio": [{"params": {"model_name": "resnet18", "learning_rate": 5}}]}},
     "automode.portfolio[0]: learning_rate must be a float in [0, 1], got 5"),
    ({"automode": {"portfolio": [{"params": {"model_name": "yolov5"}}]}},
     "automode.portfolio[0]: yolov5 is an object detection model; task is image-classification"),
    ({"automode": "yes"}, "automode must be a mapping (the plan AutoMode recorded), got 'yes'"),
])
def test_bad_automode_settings_are_refused_with_their_place(shapes, tmp_path, change, message):
    data = yaml.safe_load(YAML.format(data=shapes))
    data.update(change)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        read_experiment(path)
    assert message in str(info.value)
    # the line of the key at fault is named (the nested key's own line when there is one)
    assert str(info.value).startswith(f"{path}:")
    line = int(str(info.value)[len(str(path)) + 1:].split(":", 1)[0])
    text = path.read_text().splitlines()[line - 1]
    assert text.split(":")[0].strip() in ("sampling", "automode", "portfolio", "- params", "resnet18"), text


def test_dry_run_shows_the_plan_in_the_shell_and_in_a_cell(shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AVML_WORKSPACE", str(tmp_path / "ws"))
    body = YAML.format(data=shapes)
    (tmp_path / "auto.yaml").write_text(body)
    code, out, err = avml(capsys, "sweep", "auto.yaml", "--name", "auto", "--dry-run")
    assert code == 0, err
    assert "sampling: auto" in out and "automode: cpu: 4 portfolio entries, then Bayesian refinement" in out
    assert "portfolio 0: portfolio 1/4 on CPU" in out
    shell = notebook_shell()
    ok, _, err, outputs = cell(shell, f"%%avml auto --dry-run\n{body}")
    assert ok, err
    assert outputs[0].data["text/plain"] == out.rstrip("\n")
    code, out, err = avml(capsys, "sweep", "auto.yaml", "--dry-run", "--json")
    shown = json.loads(out)
    assert shown["settings"]["sampling"] == "auto" and len(shown["first_configurations"]) == 4
    assert not (tmp_path / "ws").exists()
