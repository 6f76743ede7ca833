"""Successive halving and Hyperband as early termination policies, on scripted histories (nothing trains).

The shared policy contract (pure, deterministic, explained stops, delay and interval honoured, round trip
through ``make_policy``) runs on both in ``tests/sweep/test_policies.py``; here: the rungs and the rule.
"""

from __future__ import annotations

import pytest

from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.halving import HyperbandPolicy, SuccessiveHalvingPolicy, rung_steps
from jupyter_avml.sweep.policies import Decision, TrialHistory, make_policy


def _arrive(policy, curves: dict[str, list[float]], order: list[str]):
    """Each trial in ``order`` reports its whole curve, one after the other (a sequential sweep).

    Returns ``{trial: step it was stopped at}`` and the reasons.
    """
    histories: dict[str, TrialHistory] = {}
    stopped, reasons = {}, {}
    for trial in order:
        history = histories.setdefault(trial, TrialHistory(trial))
        for step, value in enumerate(curves[trial], start=1):
            history.values[step] = value
            decision, reason = policy.decide(trial, step, histories, metric="accuracy")
            if decision is Decision.STOP:
                stopped[trial], reasons[trial] = step, reason
                break
        else:
            history.finished = True
    return stopped, reasons


def test_rungs_grow_geometrically_from_the_minimum_resource():
    assert rung_steps(1, 3, 30) == [1, 3, 9, 27]
    assert rung_steps(2, 3, 20) == [2, 6, 18]
    assert rung_steps(1, 2, 9) == [1, 2, 4, 8]
    assert rung_steps(3, 2.5, 100) == [3, 8, 19, 47]  # rounded: 3, 7.5 -> 8, 18.75 -> 19, 46.9 -> 47
    policy = SuccessiveHalvingPolicy(min_resource=2, reduction_factor=3)
    assert [step for step in range(1, 20) if policy.is_rung(step)] == [2, 6, 18]


def test_a_child_goes_on_only_in_the_top_third_of_its_rung():
    policy = SuccessiveHalvingPolicy(min_resource=1, reduction_factor=3)
    curves = {"a": [0.50, 0.60, 0.70], "b": [0.90, 0.95, 0.97], "c": [0.30, 0.90, 0.99],
              "d": [0.80, 0.85, 0.90], "e": [0.95, 0.96, 0.96], "f": [0.85, 0.90, 0.92]}
    stopped, reasons = _arrive(policy, curves, list(curves))
    # a: first at rung 1 (alone) goes on; b: the best of two; c: 0.30 is not the top 1 of 3; d: not the top 1
    # of 4 (0.90 leads); e: the top of 5; f: 6 reached rung 1, top 2 are e and b.
    # At rung 3 (step 3): a 0.70 alone goes on; b 0.97 is best of 2; e best-so-far 0.96 is not the top 1 of 3.
    assert stopped == {"c": 1, "d": 1, "f": 1, "e": 3}
    assert reasons["c"] == ("successive halving: accuracy 0.3 (best so far) at interval 1 is not in the top 1 of "
                            "the 3 runs that reached this rung (top 1/3: cut-off 0.9)")
    assert "top 1 of the 3 runs" in reasons["e"] and "0.96" in reasons["e"]


def test_the_rung_value_is_the_best_so_far_not_the_last_report():
    policy = SuccessiveHalvingPolicy(min_resource=2, reduction_factor=2)
    # "late" had a bad second epoch but its best by the rung (0.9 at step 1) is above "steady"'s 0.8.
    curves = {"steady": [0.7, 0.8, 0.85], "late": [0.9, 0.4, 0.95]}
    stopped, _ = _arrive(policy, curves, ["steady", "late"])
    assert stopped == {}
    # judged on the last value it would have been cut at step 2 (0.4 < 0.8)
    stopped, _ = _arrive(policy, {"steady": [0.7, 0.8, 0.85], "late": [0.5, 0.4, 0.95]}, ["steady", "late"])
    assert stopped == {"late": 2}


def test_no_decision_off_the_rungs_nor_before_the_delay():
    policy = SuccessiveHalvingPolicy(min_resource=2, reduction_factor=3, delay_evaluation=2)
    histories = {"a": TrialHistory("a", {1: 0.9, 2: 0.9, 3: 0.9}), "b": TrialHistory("b", {1: 0.1, 2: 0.1, 3: 0.1})}
    assert [policy.decide("b", step, histories)[0] for step in (1, 2, 3)] == [Decision.CONTINUE] * 3
    histories["a"].values.update({4: 0.9, 5: 0.9, 6: 0.9})
    histories["b"].values.update({4: 0.1, 5: 0.1, 6: 0.1})
    assert policy.decide("b", 6, histories)[0] is Decision.STOP  # rung 6, after the delay


def test_minimising_keeps_the_lowest():
    policy = SuccessiveHalvingPolicy(min_resource=1, reduction_factor=2)
    histories = {"a": TrialHistory("a", {1: 0.2}), "b": TrialHistory("b", {1: 0.5})}
    assert policy.decide("b", 1, histories, maximize=False)[0] is Decision.STOP
    assert policy.decide("a", 1, histories, maximize=False)[0] is Decision.CONTINUE


def test_a_diverged_child_is_the_worst():
    policy = SuccessiveHalvingPolicy(min_resource=1, reduction_factor=2)
    histories = {"a": TrialHistory("a", {1: 0.2}), "b": TrialHistory("b", {1: float("nan")})}
    assert policy.decide("b", 1, histories)[0] is Decision.STOP


def test_hyperband_brackets_start_their_rungs_later_and_compare_within():
    policy = HyperbandPolicy(min_resource=1, reduction_factor=3, brackets=2)
    assert [policy.bracket_of(str(i)) for i in range(5)] == [0, 1, 0, 1, 0]
    assert policy.bracket_of("x") == policy.bracket_of("x") in (0, 1)
    assert [s for s in range(1, 10) if policy.is_rung(s, 0)] == [1, 3, 9]
    assert [s for s in range(1, 10) if policy.is_rung(s, 1)] == [3, 9]
    curves = {"0": [0.9, 0.9, 0.9], "1": [0.8, 0.8, 0.8], "2": [0.5, 0.6, 0.7], "3": [0.1, 0.2, 0.3]}
    stopped, reasons = _arrive(policy, curves, ["0", "1", "2", "3"])
    # bracket 0 (children 0, 2): child 2 cut at its first rung; bracket 1 (children 1, 3): first rung at 3
    assert stopped == {"2": 1, "3": 3}
    assert reasons["3"].startswith("hyperband (bracket 1): accuracy 0.3 (best so far) at interval 3")


@pytest.mark.parametrize("config, needle", [
    ({"type": "successive_halving", "reduction_factor": 1}, "reduction_factor must be a number >= 2, got 1"),
    ({"type": "successive_halving", "reduction_factor": "3"}, "reduction_factor must be a number >= 2"),
    ({"type": "successive_halving", "min_resource": 0}, "min_resource must be an integer >= 1, got 0"),
    ({"type": "hyperband", "brackets": 0}, "brackets must be an integer >= 1, got 0"),
    ({"type": "successive_halving", "brackets": 2}, "brackets applies to the hyperband policy"),
    ({"type": "successive_halving", "slack_factor": 0.1}, "slack_factor applies to the bandit policy"),
])
def test_settings_are_checked(config, needle):
    with pytest.raises(ConfigError) as info:
        make_policy(config, source="sweep.yaml", line=3)
    assert str(info.value).startswith("sweep.yaml:3: early_termination_policy: ")
    assert needle in str(info.value)


@pytest.mark.parametrize("name, cls", [
    ("successive_halving", SuccessiveHalvingPolicy), ("ASHA", SuccessiveHalvingPolicy),
    ("successive-halving", SuccessiveHalvingPolicy), ("Hyperband", HyperbandPolicy),
    ("HyperbandPolicy", HyperbandPolicy)])
def test_names(name, cls):
    policy = make_policy({"type": name})
    assert type(policy) is cls
    assert make_policy(policy.to_dict()) == policy
