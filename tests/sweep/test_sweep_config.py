"""The experiment configuration (spec sections 8-9): sweep settings, aliases, arguments, checks with lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.config import parse_experiment, read_experiment
from jupyter_avml.sweep.policies import BanditPolicy, NoTerminationPolicy
from jupyter_avml.sweep.space import Choice, Uniform, choice, uniform


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("", encoding="utf-8")  # the schema only checks that the file exists
    return path


def base(data, **extra):
    return {"task": "image-classification", "training_data": str(data), "model_name": "resnet18", **extra}


def write_yaml(tmp_path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def test_a_plain_config_is_a_one_child_baseline(data):
    spec = parse_experiment(base(data))
    assert spec.has_search_space is False
    assert spec.sampling == "grid" and spec.iterations == 1
    assert spec.space.subspaces == [{"model_name": choice("resnet18")}]
    assert spec.budget_seconds == 168 * 3600
    assert isinstance(spec.policy, NoTerminationPolicy) and spec.policy_config is None
    assert spec.child_config({"model_name": "resnet18"}).model_name == "resnet18"


def test_spec_names(data):
    spec = parse_experiment(base(
        data, sampling="random", iterations=12, max_concurrent_iterations=3, experiment_timeout_hours=2,
        early_termination_policy={"type": "bandit", "slack_factor": 0.2, "evaluation_interval": 2},
        search_space={"learning_rate": "uniform(0.001, 0.05)", "optimizer": "choice('sgd', 'adam')"},
        cpu_slots=2, seed=7))
    assert (spec.sampling, spec.iterations, spec.max_concurrent_iterations, spec.cpu_slots, spec.seed) == \
        ("random", 12, 3, 2, 7)
    assert spec.budget_seconds == 7200
    assert spec.policy == BanditPolicy(slack_factor=0.2, evaluation_interval=2)
    assert spec.policy_config["type"] == "bandit"
    assert spec.space.subspaces[0]["learning_rate"] == Uniform(0.001, 0.05)


def test_the_newer_cloud_names_are_aliases(data):
    spec = parse_experiment(base(
        data, limits={"max_trials": 5, "max_concurrent_trials": 2, "timeout_minutes": 30},
        sweep={"sampling_algorithm": "Bayesian", "early_termination": {"type": "median_stopping"}},
        training_parameters={"early_stopping": 0},
        search_space=[{"learning_rate": uniform(0.001, 0.01)}]))
    assert (spec.iterations, spec.max_concurrent_iterations, spec.budget_seconds) == (5, 2, 1800)
    assert spec.sampling == "bayesian" and spec.policy.type == "median_stopping"
    assert spec.fixed["early_stopping"] == 0
    # the cloud class name of the spec's hyperparameter_sampling works too
    assert parse_experiment(base(data, hyperparameter_sampling="GridParameterSampling", iterations=2,
                                 search_space={"momentum": choice(0.5, 0.9)})).sampling == "grid"


def test_a_setting_given_twice_with_different_values_is_refused(data):
    with pytest.raises(ConfigError, match="limits.max_trials and iterations both set iterations"):
        parse_experiment(base(data, iterations=4, limits={"max_trials": 5},
                              search_space={"momentum": choice(0.5, 0.9)}))


def test_arguments_list_and_mapping_forms(data):
    listed = parse_experiment(base(data, arguments=["--early_stopping", 1, "--evaluation_frequency", 2,
                                                    "--number_of_epochs=3"]))
    mapped = parse_experiment(base(data, arguments={"early_stopping": 1, "--evaluation_frequency": 2,
                                                    "number_of_epochs": 3}))
    for spec in (listed, mapped):
        assert (spec.fixed["early_stopping"], spec.fixed["evaluation_frequency"], spec.fixed["number_of_epochs"]) \
            == (1, 2, 3)
        config = spec.child_config({})
        assert (config.early_stopping, config.evaluation_frequency, config.number_of_epochs) == (1, 2, 3)


def test_arguments_problems_name_the_line(tmp_path, data):
    path = write_yaml(tmp_path, f"""
        task: image-classification
        training_data: {data}
        model_name: resnet18
        arguments:
          - --early_stopping
          - 1
          - --evaluaton_frequency
          - 2
        """)
    with pytest.raises(ConfigError) as info:
        read_experiment(path)
    assert str(info.value).startswith(f"{path}:7: ")
    assert "'--evaluaton_frequency'" in str(info.value) and "did you mean '--evaluation_frequency'" in str(info.value)
    with pytest.raises(ConfigError, match="has no value"):
        parse_experiment(base(data, arguments=["--early_stopping"]))
    with pytest.raises(ConfigError, match="double dash"):
        parse_experiment(base(data, arguments=["early_stopping", 1]))
    with pytest.raises(ConfigError, match="set it in one place"):
        parse_experiment(base(data, early_stopping=0, arguments=["--early_stopping", 1]))


def test_unknown_keys_say_did_you_mean_with_the_yaml_line(tmp_path, data):
    path = write_yaml(tmp_path, f"""
        task: image-classification
        training_data: {data}
        search_space:
          learning_rate: uniform(0.001, 0.01)
        iteratons: 4
        """)
    with pytest.raises(ConfigError) as info:
        read_experiment(path)
    assert str(info.value) == f"{path}:5: unknown setting 'iteratons'; did you mean 'iterations'?"

    path = write_yaml(tmp_path, f"""
        task: image-classification
        training_data: {data}
        search_space:
          learning_rate: uniform(0.001, 0.01)
        limits:
          max_trials: 4
          max_concurent_trials: 2
        """)
    with pytest.raises(ConfigError) as info:
        read_experiment(path)
    assert str(info.value).startswith(f"{path}:7: unknown key 'max_concurent_trials' in limits; did you mean "
                                      f"'max_concurrent_trials'?")

    path = write_yaml(tmp_path, f"""
        task: image-classification
        training_data: {data}
        iterations: 3
        search_space:
          model_name: choice('resnet18', 'resnet34')
          learning_rat: uniform(0.001, 0.01)
        """)
    with pytest.raises(ConfigError) as info:
        read_experiment(path)
    assert str(info.value).startswith(f"{path}:6: search_space: unknown setting 'learning_rat'; did you mean "
                                      f"'learning_rate'?")


def test_relative_data_paths_are_taken_from_the_yaml_folder(tmp_path, data):
    path = write_yaml(tmp_path, """
        task: image-classification
        training_data: train.jsonl
        model_name: resnet18
        """)
    spec = read_experiment(path)
    assert spec.fixed["training_data"] == str(data.resolve())
    assert spec.raw["training_data"] == str(data.resolve())
    # experiment.yaml (the raw mapping) reads back to the same experiment from anywhere
    assert parse_experiment(spec.raw).fixed == spec.fixed
    missing = write_yaml(tmp_path, """
        task: image-classification
        training_data: nowhere.jsonl
        """)
    with pytest.raises(ConfigError, match=r"exp.yaml:2: training_data: no such file"):
        read_experiment(missing)


def test_fixed_part_is_validated_before_anything_starts(tmp_path, data):
    path = write_yaml(tmp_path, f"""
        task: image-classification
        training_data: {data}
        number_of_epochs: 0
        iterations: 2
        search_space:
          learning_rate: choice(0.01, 0.02)
        """)
    with pytest.raises(ConfigError) as info:
        read_experiment(path)
    assert str(info.value).startswith(f"{path}:3: number_of_epochs must be")
    with pytest.raises(ConfigError, match="task is required"):
        parse_experiment({"training_data": str(data)})
    with pytest.raises(ConfigError, match="unknown model_name 'resnet19'"):
        parse_experiment(base(data, iterations=2, model_name=None,
                              search_space={"model_name": choice("resnet18", "resnet19")}))


def test_search_space_rules(data):
    with pytest.raises(ConfigError, match="iterations is required with a search_space"):
        parse_experiment(base(data, search_space={"learning_rate": uniform(0.001, 0.01)}))
    # (without a sampling, iterations > 1 and no search space is AutoMode: tests/automode)
    with pytest.raises(ConfigError, match="no search_space: every child would train the same"):
        parse_experiment(base(data, iterations=3, sampling="grid"))
    with pytest.raises(ConfigError, match="grid sampling supports only choice"):
        parse_experiment(base(data, sampling="grid", iterations=3,
                              search_space={"learning_rate": uniform(0.001, 0.01)}))
    with pytest.raises(ConfigError, match="bayesian sampling supports only"):
        parse_experiment(base(data, sampling="bayesian", iterations=3,
                              search_space={"learning_rate": "loguniform(-9, -3)"}))
    with pytest.raises(ConfigError, match="learning_rate is searched and also set"):
        parse_experiment(base(data, learning_rate=0.01, iterations=3, search_space={"learning_rate": choice(0.1, 0.2)}))
    with pytest.raises(ConfigError, match="box_score_thresh does not apply to resnet18"):
        parse_experiment(base(data, iterations=3, search_space={"box_score_thresh": choice(0.1, 0.2)}))
    with pytest.raises(ConfigError, match="device is a machine or data setting"):
        parse_experiment(base(data, iterations=3, search_space={"device": choice("cpu", "cuda")}))
    # grid caps iterations at the number of combinations
    spec = parse_experiment(base(data, sampling="grid", iterations=50,
                                 search_space={"momentum": choice(0.5, 0.9), "optimizer": choice("sgd", "adam")}))
    assert spec.iterations == 4


def test_conditional_space_checks_each_subspace(data):
    spec = parse_experiment({
        "task": "image-classification", "training_data": str(data), "iterations": 4,
        "search_space": [{"model_name": "choice('resnet18')", "learning_rate": "uniform(0.001, 0.01)"},
                         {"model_name": "choice('mobilenetv2')", "optimizer": "choice('adam', 'adamw')"}]})
    assert spec.space.is_conditional and spec.sampling == "random"
    assert isinstance(spec.space.subspaces[1]["optimizer"], Choice)


def test_budgets(data):
    assert parse_experiment(base(data, timeout_minutes=0.5)).budget_seconds == 30
    assert parse_experiment(base(data, experiment_timeout_hours=1440)).budget_seconds == 1440 * 3600
    with pytest.raises(ConfigError, match=r"experiment_timeout_hours must be a number in \(0, 1440\]"):
        parse_experiment(base(data, experiment_timeout_hours=1441))
    with pytest.raises(ConfigError, match="not both"):
        parse_experiment(base(data, experiment_timeout_hours=1, timeout_minutes=5))
    with pytest.raises(ConfigError, match=r"iterations must be an integer in \[1, 1000\]"):
        parse_experiment(base(data, iterations=1001, search_space={"momentum": choice(0.5, 0.9)}))
    with pytest.raises(ConfigError, match=r"max_concurrent_iterations must be an integer in \[1, 100\]"):
        parse_experiment(base(data, max_concurrent_iterations=0))
    with pytest.raises(ConfigError, match="early_termination_policy: bandit policy needs exactly one"):
        parse_experiment(base(data, early_termination_policy={"type": "bandit"}))


def test_an_invalid_sampled_combination_becomes_an_invalid_child(tmp_path, data):
    """The scheduler turns a refused configuration into an ``invalid`` child, which the sampler then learns
    from the state as failed."""
    from jupyter_avml.sweep.sampling import make_sampler
    from jupyter_avml.sweep.scheduler import Scheduler, trial_record
    from jupyter_avml.sweep.state import ExperimentState

    spec = parse_experiment(base(data, sampling="grid", iterations=3, seed=None,
                                 search_space={"learning_rate": choice(0.01, 2.0, 0.02)}))
    scheduler = Scheduler(spec, ExperimentState(name="unit", task=spec.task, primary_metric=spec.primary_metric),
                          make_sampler("grid", spec.space, seed=None))
    scheduler.begin(resume=False, concurrency=1)
    first, third = scheduler.next_child(), scheduler.next_child()  # the invalid one is closed on the way
    assert scheduler.next_child() is None and not scheduler.more_to_launch()
    second = scheduler.state.child(1)
    assert [c.status for c in (first, second, third)] == ["queued", "invalid", "queued"]
    assert second.params == {"learning_rate": 2.0} and second.ended is not None
    assert "learning_rate must be a float in [0, 1], got 2.0" in second.error
    assert [trial_record(c).state for c in scheduler.state.children] == ["running", "failed", "running"]
    assert (first.model_name, first.number_of_epochs) == ("resnet18", 15)


def test_slots(monkeypatch):
    from jupyter_avml.sweep.slots import detect_gpus, plan_slots

    gpu = plan_slots("auto", gpus=["0", "1"], cores=16)
    assert [(s.kind, s.gpu, s.threads) for s in gpu] == [("gpu", "0", 8), ("gpu", "1", 8)]
    assert gpu[1].env()["CUDA_VISIBLE_DEVICES"] == "1"
    assert [(s.gpu, s.threads) for s in plan_slots("cuda:1", gpus=["0", "1"], cores=16)] == [("1", 16)]
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        plan_slots("cuda", gpus=[], cores=4)
    cpu = plan_slots("cpu", gpus=["0"], cpu_slots=2, cores=8)
    assert [(s.kind, s.threads) for s in cpu] == [("cpu", 4), ("cpu", 4)]
    assert cpu[0].env()["CUDA_VISIBLE_DEVICES"] == "" and cpu[0].env()["OMP_NUM_THREADS"] == "4"
    assert [s.threads for s in plan_slots("auto", gpus=[], max_concurrent=3, cores=2)] == [1, 1]
    assert len(plan_slots("auto", gpus=[], cores=16)) == 4
    assert [s.threads for s in plan_slots("cpu", cpu_slots=2, cpu_threads=1, cores=8)] == [1, 1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    assert detect_gpus() == ["0", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert detect_gpus() == []
