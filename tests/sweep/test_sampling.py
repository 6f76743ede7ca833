"""Samplers (spec section 9, hyperparameter_sampling): random, grid, Bayesian (Optuna TPE), and their rules."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.sampling import BayesianSampler, GridSampler, RandomSampler, Trial, make_sampler
from jupyter_avml.sweep.space import (
    SearchSpace,
    choice,
    lognormal,
    loguniform,
    normal,
    qlognormal,
    qloguniform,
    qnormal,
    quniform,
    randint,
    uniform,
)


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna = pytest.importorskip("optuna")
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)


EVERY_KIND = {
    "c": choice("sgd", "adam", [3, 2]),
    "r": randint(5),
    "u": uniform(0.001, 0.01),
    "qu": quniform(0.05, 0.95, 0.1),
    "lu": loguniform(-9.21, -2.3),
    "qlu": qloguniform(2, 6, 4),
    "n": normal(0.5, 0.1),
    "qn": qnormal(10, 3, 2),
    "ln": lognormal(-3, 0.5),
    "qln": qlognormal(3, 0.5, 0.5),
    "fixed": [1, 2],
}


def _is_multiple(value, q):
    return abs(value / q - round(value / q)) < 1e-9


def test_random_sampler_stays_inside_every_kind_of_space():
    sampler = make_sampler("random", EVERY_KIND, seed=3)
    assert isinstance(sampler, RandomSampler) and sampler.max_trials is None
    seen_c, seen_r = [], set()
    for number in range(600):
        trial = sampler.ask()
        p = trial.params
        assert trial.number == number and trial.subspace == 0
        assert set(p) == set(EVERY_KIND)
        seen_c.append(repr(p["c"]))
        seen_r.add(p["r"])
        assert 0.001 <= p["u"] <= 0.01
        assert 0.0 <= p["qu"] <= 1.0 and _is_multiple(p["qu"], 0.1)
        assert math.exp(-9.21) <= p["lu"] <= math.exp(-2.3)
        assert p["qlu"] % 4 == 0 and 4 <= p["qlu"] <= 404
        assert isinstance(p["n"], float)
        assert p["qn"] % 2 == 0
        assert p["ln"] > 0
        assert p["qln"] >= 0 and _is_multiple(p["qln"], 0.5)
        assert p["fixed"] == [1, 2]
        sampler.tell(trial, float(number))
    assert set(seen_c) == {"'sgd'", "'adam'", "[3, 2]"}
    assert seen_r == {0, 1, 2, 3, 4}


def test_random_sampler_is_reproducible_with_a_seed():
    def run(seed):
        sampler = RandomSampler(SearchSpace.from_config(EVERY_KIND), seed=seed)
        return [sampler.ask().params for _ in range(20)]

    assert run(1) == run(1)
    assert run(1) != run(2)


YOLO = {"model_name": "yolov5", "learning_rate": uniform(0.0001, 0.01), "model_size": choice("small", "medium")}
FRCNN = {"model_name": choice("fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn"),
         "learning_rate": uniform(0.0001, 0.001), "optimizer": choice("sgd", "adam", "adamw")}
KEYS = {0: {"model_name", "learning_rate", "model_size"}, 1: {"model_name", "learning_rate", "optimizer"}}


def _check_conditional(trial: Trial):
    p = trial.params
    assert set(p) == KEYS[trial.subspace]
    if trial.subspace == 0:
        assert p["model_name"] == "yolov5" and 0.0001 <= p["learning_rate"] <= 0.01
        assert p["model_size"] in ("small", "medium")
    else:
        assert p["model_name"] in ("fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn")
        assert 0.0001 <= p["learning_rate"] <= 0.001 and p["optimizer"] in ("sgd", "adam", "adamw")


def test_random_sampler_honours_a_conditional_space():
    sampler = make_sampler("Random", {"model": choice(YOLO, FRCNN)}, seed=0)
    counts = {0: 0, 1: 0}
    for _ in range(400):
        trial = sampler.ask()
        _check_conditional(trial)
        counts[trial.subspace] += 1
    # sub-spaces are chosen uniformly
    assert 150 < counts[0] < 250


def test_grid_sampler_is_exact_complete_and_then_exhausted():
    space = {"optimizer": choice("sgd", "adam", "adamw"), "training_batch_size": choice(8, 16),
             "layers_to_freeze": choice(0, 1, 2, 3), "number_of_epochs": 2}
    sampler = make_sampler("GRID", space, seed=None)
    assert isinstance(sampler, GridSampler)
    assert sampler.max_trials == 3 * 2 * 4
    combos = []
    while (trial := sampler.ask()) is not None:
        combos.append((trial.params["optimizer"], trial.params["training_batch_size"],
                       trial.params["layers_to_freeze"]))
        assert trial.params["number_of_epochs"] == 2
        sampler.tell(trial, 0.5)
    assert len(combos) == len(set(combos)) == 24
    assert set(combos) == {(o, b, f) for o in ("sgd", "adam", "adamw") for b in (8, 16) for f in (0, 1, 2, 3)}
    assert combos[0] == ("sgd", 8, 0) and combos[1] == ("sgd", 8, 1)
    assert sampler.ask() is None and sampler.remaining == 0


def test_grid_sampler_seed_shuffles_deterministically():
    space = {"a": choice(*range(5)), "b": choice("x", "y")}

    def order(seed):
        sampler = GridSampler(SearchSpace.from_config(space), seed=seed)
        return [tuple(sampler.ask().params.values()) for _ in range(sampler.max_trials)]

    unshuffled = order(None)
    assert order(4) == order(4)
    assert order(4) != unshuffled and sorted(order(4)) == sorted(unshuffled)


def test_grid_sampler_over_a_conditional_space_keeps_parameters_with_their_model():
    space = [{"model_name": "yolov5", "model_size": choice("small", "medium")},
             {"model_name": choice("fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn"),
              "optimizer": choice("sgd", "adam")}]
    sampler = make_sampler("grid", space)
    trials = [sampler.ask() for _ in range(sampler.max_trials)]
    assert sampler.max_trials == 6 and sampler.ask() is None
    for trial in trials:
        assert ("model_size" in trial.params) == (trial.params["model_name"] == "yolov5") == (trial.subspace == 0)


def test_a_configuration_that_failed_validation_is_told_failed_and_skipped():
    sampler = make_sampler("grid", {"a": choice(1, 2, 3)}, seed=None)
    first = sampler.ask()
    sampler.tell(first, None, state="failed")
    assert sampler.ask().params == {"a": 2}
    assert sampler.results == {0: ("failed", None)}


def test_tell_checks_its_arguments():
    sampler = make_sampler("random", {"a": uniform(0, 1)})
    trial = sampler.ask()
    with pytest.raises(ValueError, match="state must be one of complete, pruned, failed"):
        sampler.tell(trial, 0.5, state="done")
    with pytest.raises(ValueError, match="needs a finite value"):
        sampler.tell(trial, None)
    with pytest.raises(ValueError, match="needs a finite value"):
        sampler.tell(trial, float("nan"))
    with pytest.raises(ValueError, match="was not asked"):
        sampler.tell(Trial(number=99, params={}), 0.5)
    sampler.tell(trial, 0.5, state="pruned", step=3)
    with pytest.raises(ValueError, match="already told"):
        sampler.tell(trial, 0.5)
    assert sampler.results == {0: ("pruned", 0.5)}


# -- the spec's rules ------------------------------------------------------------------------------------
def test_grid_takes_only_choice():
    with pytest.raises(ConfigError) as info:
        make_sampler("grid", {"optimizer": choice("sgd"), "learning_rate": "uniform(0.001, 0.01)"})
    assert str(info.value) == "grid sampling supports only choice(); learning_rate is uniform(0.001, 0.01)"


@pytest.mark.parametrize("expression", ["randint(4)", "loguniform(-9, -2)", "qloguniform(1, 3, 1)",
                                        "normal(0, 1)", "qnormal(0, 1, 1)", "lognormal(0, 1)",
                                        "qlognormal(0, 1, 1)"])
def test_bayesian_takes_only_choice_uniform_quniform(expression):
    with pytest.raises(ConfigError) as info:
        make_sampler("bayesian", {"optimizer": choice("sgd"), "weight_decay": expression})
    message = str(info.value)
    assert message == ("bayesian sampling supports only choice(), uniform() and quniform(); "
                       f"weight_decay is {expression}")
    assert info.value.field == "weight_decay"


@pytest.mark.parametrize("name, needle", [("randon", "did you mean 'random'"), ("gird", "did you mean 'grid'"),
                                          ("baysian", "did you mean 'bayesian'"), ("sobol", "must be one of")])
def test_unknown_sampling_name(name, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        make_sampler(name, {"a": choice(1)})
    assert "random, grid, bayesian" in str(info.value)


@pytest.mark.parametrize("name, cls", [("Random", RandomSampler), ("grid", GridSampler), ("Bayesian", BayesianSampler),
                                       ("GridParameterSampling", GridSampler), ("random_sampling", RandomSampler),
                                       (" BAYESIAN ", BayesianSampler)])
def test_sampling_names_are_case_insensitive_and_accept_the_cloud_names(name, cls):
    assert type(make_sampler(name, {"a": choice(1, 2)})) is cls


def test_direction_is_checked():
    with pytest.raises(ConfigError, match="direction must be 'maximize' or 'minimize'"):
        make_sampler("bayesian", {"a": choice(1, 2)}, direction="up")


# -- Bayesian --------------------------------------------------------------------------------------------
SPACE = {"x": uniform(0, 1), "y": uniform(0, 1), "c": choice("a", "b", "c")}


def _objective(p):
    return -(p["x"] - 0.3) ** 2 - (p["y"] - 0.7) ** 2 - (0.0 if p["c"] == "b" else 0.5)


def _best_of(sampler, n=30):
    best = -math.inf
    for _ in range(n):
        trial = sampler.ask()
        value = _objective(trial.params)
        best = max(best, value)
        sampler.tell(trial, value)
    return best


def test_bayesian_is_reproducible_with_a_seed():
    def run(seed):
        sampler = make_sampler("bayesian", SPACE, seed=seed)
        params = []
        for _ in range(15):  # past the 10 start-up trials, so TPE itself is exercised
            trial = sampler.ask()
            params.append(trial.params)
            sampler.tell(trial, _objective(trial.params))
        return params

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_bayesian_beats_random_on_a_cheap_objective():
    wide = {"x": uniform(-2, 2), "y": uniform(-2, 2), "c": choice("a", "b", "c")}
    random_best = [_best_of(make_sampler("random", wide, seed=s)) for s in range(5)]
    bayes_best = [_best_of(make_sampler("bayesian", wide, seed=s)) for s in range(5)]
    assert np.mean(bayes_best) > np.mean(random_best) + 0.1, (bayes_best, random_best)


def test_bayesian_maps_quniform_to_multiples_of_q_inside_the_bounds_and_lists_through_an_index():
    space = {"q": quniform(0.05, 0.97, 0.1), "batch": quniform(10, 70, 16), "grid": choice([3, 2], [5, 3]),
             "flag": choice(True, 1, "1"), "fixed": "sgd"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Optuna warning about a range not divisible by step
        sampler = make_sampler("bayesian", space, seed=0, n_startup_trials=5)
        seen_grid, seen_flag = set(), []
        for i in range(25):
            trial = sampler.ask()
            p = trial.params
            assert p["q"] in {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}  # exact decimals, inside [0.05, 0.97]
            assert p["batch"] in {16, 32, 48, 64} and type(p["batch"]) is int
            assert p["fixed"] == "sgd"
            seen_grid.add(tuple(p["grid"]))
            seen_flag.append(p["flag"])
            sampler.tell(trial, float(i % 7))
            # Optuna finds a stored choice by equality (True == 1): such choices are stored by index, so the
            # study's record reads back to what was tried
            stored = sampler.study.trials[trial.number].params
            assert repr(space["flag"].values[stored["flag"]]) == repr(p["flag"])
            assert space["grid"].values[stored["grid"]] == p["grid"]
    assert seen_grid == {(3, 2), (5, 3)}
    assert {repr(v) for v in seen_flag} == {"True", "1", "'1'"}  # True == 1 but both come back as written


def test_bayesian_over_a_conditional_space_prefixes_parameters_by_subspace():
    sampler = make_sampler("bayesian", [YOLO, FRCNN], seed=1, n_startup_trials=4)
    subspaces = set()
    for _ in range(16):
        trial = sampler.ask()
        _check_conditional(trial)
        subspaces.add(trial.subspace)
        sampler.tell(trial, trial.params["learning_rate"] * (2 if trial.subspace else 1))
    assert subspaces == {0, 1}
    stored = sampler.study.trials[-1].params
    assert "subspace" in stored and all(k == "subspace" or k[0] in "01" and k[1] == ":" for k in stored)


def test_bayesian_records_early_termination_and_pruned_trials_keep_their_last_value():
    from optuna.trial import TrialState

    sampler = make_sampler("bayesian", SPACE, seed=0, early_termination=True)
    assert sampler.early_termination is True
    a, b, c = sampler.ask(), sampler.ask(), sampler.ask()
    sampler.tell(a, 0.8)
    sampler.tell(b, 0.3, state="pruned", step=4)
    sampler.tell(c, None, state="failed")
    states = {t.number: (t.state, t.value) for t in sampler.study.trials}
    assert states == {0: (TrialState.COMPLETE, 0.8), 1: (TrialState.PRUNED, 0.3), 2: (TrialState.FAIL, None)}
    assert sampler.study.trials[1].intermediate_values == {4: 0.3}
    assert sampler.study.user_attrs["early_termination"] is True


def test_bayesian_a_second_sampler_continues_from_the_recorded_history():
    """No study is kept anywhere: a new sampler given the recorded trials goes on where the first one was."""
    first = make_sampler("bayesian", SPACE, seed=0)
    asked = [first.ask() for _ in range(4)]
    for trial in asked[:3]:
        first.tell(trial, _objective(trial.params))
    # asked[3] is left running, as when a kernel dies in the middle of a child run
    history = first.history()
    assert [r.state for r in history] == ["complete", "complete", "complete", "running"]

    second = make_sampler("bayesian", SPACE, seed=0)
    following = [second.propose(n, history) for n in (4, 5, 6)]
    assert [t.number for t in following] == [4, 5, 6]
    assert [t.params for t in following] == [first.propose(n, history).params for n in (4, 5, 6)]
    # the resumed sampler does not replay the first session's start-up configurations
    assert not any(t.params == a.params for t in following for a in asked)
    # and the study it derived holds the recorded trials, in order, plus the one it proposed
    assert [t.state.name for t in second.study.trials] == ["COMPLETE"] * 3 + ["RUNNING", "RUNNING"]


def test_sampled_configurations_are_validated_by_the_config_and_failures_are_skipped():
    from jupyter_avml.config import AutoMLImageConfig

    base = AutoMLImageConfig(task="image-object-detection", training_data="train.jsonl")
    # a flat (non-conditional) space lets model_size meet a model it does not apply to
    sampler = make_sampler("grid", {"model_name": choice("yolov5", "fasterrcnn_resnet50_fpn"),
                                    "model_size": choice("small", "medium")}, seed=None)
    valid, failed = [], []
    while (trial := sampler.ask()) is not None:
        try:
            config = base.replace(**trial.params)
        except ConfigError as exc:
            assert "model_size applies to yolov5" in str(exc)
            sampler.tell(trial, None, state="failed")
            failed.append(trial.params["model_name"])
            continue
        valid.append((config.model_name, config.model_size))
        sampler.tell(trial, 0.5)
    assert valid == [("yolov5", "small"), ("yolov5", "medium")]
    assert failed == ["fasterrcnn_resnet50_fpn"] * 2
    assert [state for state, _ in sampler.results.values()] == ["complete", "complete", "failed", "failed"]
