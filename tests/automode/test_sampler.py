"""AutoMode's sampler: the portfolio in order, then Bayesian refinement around the best; a pure function of
(plan, seed, number, history), as every sampler of the sweep."""

from __future__ import annotations

from jupyter_avml.sweep.automode import AutoSampler, make_plan
from jupyter_avml.sweep.sampling import TrialRecord, make_sampler
from tests.automode.conftest import CPU

MC = "image-classification"


def _plan(shapes, weights_at_hand, iterations=8, **fixed):
    weights_at_hand("resnet18", "mobilenetv2")
    return make_plan(MC, {"task": MC, "training_data": str(shapes), **fixed}, iterations=iterations,
                     user_policy=False, hardware=CPU)


def test_portfolio_first_then_refinement_around_the_best(shapes, weights_at_hand):
    plan = _plan(shapes, weights_at_hand)
    sampler = make_sampler("auto", plan, seed=0)
    assert isinstance(sampler, AutoSampler)
    history = []
    values = [0.5, 0.9, 0.6, 0.7, 0.4, 0.3]
    for number, value in enumerate(values):
        trial = sampler.propose(number, history)
        assert trial.params == plan.portfolio[number] and trial.why == plan.whys[number]
        history.append(TrialRecord(number, trial.params, "complete", value, trial.subspace))
    best = plan.portfolio[1]
    refined = sampler.propose(6, history)
    assert refined.subspace is None
    assert refined.why.startswith("Bayesian refinement (TPE) around child 1 (best so far: 0.9000, complete): "
                                  "varies learning_rate, weight_decay, train_crop_size")
    # the neighbourhood keeps the best's model, optimizer, batch and epochs; sizes follow the crop
    for key in ("model_name", "optimizer", "training_batch_size", "number_of_epochs"):
        assert refined.params[key] == best[key]
    assert best["learning_rate"] / 4 <= refined.params["learning_rate"] <= best["learning_rate"] * 4
    size = refined.params["train_crop_size"]
    assert size in (best["train_crop_size"] - 32, best["train_crop_size"], best["train_crop_size"] + 32)
    # evaluated on a crop 1.125 times the training crop, resized first with the usual 0.875 ratio
    valid = round(size * 1.125)
    assert refined.params["valid_crop_size"] == valid and refined.params["valid_resize_size"] == round(valid / 0.875)


def test_a_pure_function_of_seed_number_and_history(shapes, weights_at_hand):
    plan = _plan(shapes, weights_at_hand)
    history = [TrialRecord(i, p, "complete", 0.5 + 0.05 * i, i) for i, p in enumerate(plan.portfolio)]
    first = AutoSampler(plan, seed=3).propose(7, history)
    again = AutoSampler(plan, seed=3).propose(7, list(reversed(history)))  # order of the records does not matter
    assert first == again
    other = AutoSampler(plan, seed=4).propose(7, history)
    assert other.params != first.params  # another seed, another suggestion


def test_early_stopped_children_count_and_failed_ones_do_not(shapes, weights_at_hand):
    plan = _plan(shapes, weights_at_hand)
    history = [TrialRecord(0, plan.portfolio[0], "failed", None, 0),
               TrialRecord(1, plan.portfolio[1], "pruned", 0.8, 1, ((1, 0.6), (2, 0.8))),
               TrialRecord(2, plan.portfolio[2], "complete", 0.7, 2)]
    trial = AutoSampler(plan, seed=0).propose(len(plan.portfolio), history)
    assert "around child 1 (best so far: 0.8000, pruned)" in trial.why


def test_before_any_result_it_refines_the_first_entry(shapes, weights_at_hand):
    plan = _plan(shapes, weights_at_hand, iterations=2)
    assert len(plan.portfolio) == 2
    running = [TrialRecord(0, plan.portfolio[0]), TrialRecord(1, plan.portfolio[1])]
    trial = AutoSampler(plan, seed=0).propose(2, running)
    assert "around the first portfolio entry (no result yet)" in trial.why
    assert trial.params["model_name"] == plan.portfolio[0]["model_name"]


def test_refinement_leaves_fixed_settings_alone(shapes, weights_at_hand):
    plan = _plan(shapes, weights_at_hand, learning_rate=0.03, train_crop_size=64, valid_crop_size=64,
                 valid_resize_size=72)
    history = [TrialRecord(i, p, "complete", 0.5 + 0.01 * i, i) for i, p in enumerate(plan.portfolio)]
    for number in range(len(plan.portfolio), len(plan.portfolio) + 3):
        trial = AutoSampler(plan, seed=0).propose(number, history)
        assert not {"learning_rate", "train_crop_size", "valid_crop_size", "valid_resize_size"} & set(trial.params)
        assert "varies weight_decay;" in trial.why
        history.append(TrialRecord(number, trial.params, "complete", 0.4, None))
