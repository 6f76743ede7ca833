"""Early termination policies (spec section 9) driven by scripted, interleaved metric reports.

``_drive`` replays a script of reports the way a sweep would: each report is added to the histories, the
policy decides for the reporting trial, and a stopped trial reports nothing more. Values are dyadic
fractions (0.25, 0.375...) so every cut-off, mean and median below is exact.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.halving import HyperbandPolicy, SuccessiveHalvingPolicy
from jupyter_avml.sweep.policies import (
    BanditPolicy,
    Decision,
    EarlyTerminationPolicy,
    MedianStoppingPolicy,
    NoTerminationPolicy,
    TrialHistory,
    TruncationSelectionPolicy,
    make_policy,
)

FINISH = "finished"


def _drive(policy: EarlyTerminationPolicy, script, *, maximize=True):
    """Replay ``script`` (``(trial, step, value)`` reports and ``(trial, FINISH)`` events, in arrival order).

    Returns ``({trial: step at which it was stopped}, {trial: reason})``. Histories are created in the order
    of each trial's first report, which is the start order the policies break ties by.
    """
    histories: dict[str, TrialHistory] = {}
    stopped: dict[str, int] = {}
    reasons: dict[str, str] = {}
    for event in script:
        trial = event[0]
        if trial in stopped:
            continue  # cancelled: it reports nothing more
        history = histories.setdefault(trial, TrialHistory(trial))
        if event[1] == FINISH:
            history.finished = True
            continue
        _, step, value = event
        assert step == len(history.values) + 1, "scripts report steps 1, 2, 3... in order"
        history.values[step] = value
        decision, reason = policy.decide(trial, step, histories, maximize=maximize, metric="iou")
        if decision is Decision.STOP:
            stopped[trial] = step
            reasons[trial] = reason
        else:
            assert reason is None
    return stopped, reasons


def _interleave(values: dict[str, dict[int, float]], orders: dict[int, str]):
    """Reports step by step, the trials of each step in the order given as a string ("CAB")."""
    return [(t, step, values[t][step]) for step, order in sorted(orders.items()) for t in order
            if step in values[t]]


def _negate(script):
    return [(e[0], e[1], -e[2]) if e[1] != FINISH else e for e in script]


# -- Bandit ----------------------------------------------------------------------------------------------
BANDIT_VALUES = {
    "A": {1: 0.5, 2: 0.625, 3: 0.625, 4: 0.75},
    "B": {1: 0.45, 2: 0.5, 3: 0.55, 4: 0.5},
    "C": {1: 0.25, 2: 0.3, 3: 0.3, 4: 0.3},
    "D": {1: 0.9},  # reports once, very well, then stalls (no later report)
}
BANDIT_SCRIPT = _interleave(BANDIT_VALUES, {1: "CABD", 2: "ABCD", 3: "BACD", 4: "ABCD"})


def test_bandit_slack_factor_interleaved():
    # step 1: C reports first, alone, so it continues; D (0.9) sets the best after A and B were judged.
    # step 2: best A 0.625, cut-off 0.625 / 1.25 = 0.5: B equal to the cut-off continues, C 0.3 stops.
    #         D has not reported step 2, so its 0.9 plays no part.
    # step 3: B reports first (alone) and continues.
    # step 4: best 0.75, cut-off 0.6: B 0.5 stops.
    stopped, reasons = _drive(BanditPolicy(slack_factor=0.25), BANDIT_SCRIPT)
    assert stopped == {"C": 2, "B": 4}
    assert reasons["B"] == ("bandit: iou 0.5 at interval 4 is not within slack_factor 0.25 of the best 0.75 "
                            "(cut-off 0.6)")


def test_bandit_evaluation_interval_and_delay_skip_steps():
    assert _drive(BanditPolicy(slack_factor=0.25, evaluation_interval=2, delay_evaluation=2), BANDIT_SCRIPT)[0] \
        == {"B": 4, "C": 4}
    assert _drive(BanditPolicy(slack_factor=0.25, evaluation_interval=3), BANDIT_SCRIPT)[0] == {"C": 3}
    assert _drive(BanditPolicy(slack_factor=0.25, delay_evaluation=4), BANDIT_SCRIPT)[0] == {}
    assert _drive(BanditPolicy(slack_factor=0.25, delay_evaluation=3), BANDIT_SCRIPT)[0] == {"B": 4, "C": 4}


def test_bandit_slack_amount_minimise_with_ties_at_the_cut_off():
    values = {"A": {1: 1.0, 2: 0.75, 3: 0.5},
              "B": {1: 1.125, 2: 0.875, 3: 0.75},
              "C": {1: 1.25, 2: 1.0, 3: 1.0}}
    script = _interleave(values, {1: "ABC", 2: "AB", 3: "AB"})
    stopped, reasons = _drive(BanditPolicy(slack_amount=0.125), script, maximize=False)
    # step 1: best 1.0, cut-off 1.125: B equal continues, C above stops; step 3: cut-off 0.625, B 0.75 stops
    assert stopped == {"C": 1, "B": 3}
    assert reasons["C"] == ("bandit: iou 1.25 at interval 1 is not within slack_amount 0.125 of the best 1 "
                            "(cut-off 1.125)")
    # read as a metric to maximise (and with B reporting step 3 before A), the other trial stops
    script = _interleave(values, {1: "ABC", 2: "AB", 3: "BA"})
    assert _drive(BanditPolicy(slack_amount=0.125), script, maximize=True)[0] == {"A": 3}


def test_bandit_slack_factor_minimise():
    values = {"A": {1: 0.5}, "B": {1: 0.625}, "C": {1: 0.75}}
    # cut-off 0.5 * 1.25 = 0.625: B equal continues, C stops
    assert _drive(BanditPolicy(slack_factor=0.25), _interleave(values, {1: "ABC"}), maximize=False)[0] == {"C": 1}


def test_bandit_factor_with_negative_values_never_stops_the_best():
    values = {"A": {1: -1.0}, "B": {1: -1.125}, "C": {1: -1.5}}
    # maximise: cut-off -1 - 1 * 0.25 / 1.25 = -1.2
    assert _drive(BanditPolicy(slack_factor=0.25), _interleave(values, {1: "ABC"}))[0] == {"C": 1}


def test_bandit_stops_a_diverged_run():
    values = {"A": {1: 0.5}, "B": {1: float("nan")}}
    stopped, reasons = _drive(BanditPolicy(slack_factor=0.5), _interleave(values, {1: "AB"}))
    assert stopped == {"B": 1} and "nan" in reasons["B"]


# -- Median stopping -------------------------------------------------------------------------------------
MEDIAN_VALUES = {
    "A": {1: 0.5, 2: 0.75, 3: 0.75, 4: 0.875},
    "B": {1: 0.25, 2: 0.4375, 3: 0.5, 4: 0.625},
    "C": {1: 0.375, 2: 0.375, 3: 0.375, 4: 0.5},
    "D": {1: 0.75, 2: 0.25},  # stalls after step 2
}
MEDIAN_SCRIPT = _interleave(MEDIAN_VALUES, {1: "ABCD", 2: "DCBA", 3: "BA", 4: "AB"})


def test_median_stopping_with_delay():
    # step 1 is not evaluated (delay 1).
    # step 2: D has no other report of step 2 -> continues. C: best 0.375 < median of {D: (0.75+0.25)/2 = 0.5}
    #         -> stops. B: best 0.4375 == median of {D 0.5, C 0.375} = 0.4375 -> continues (tie).
    # step 3: B first (alone) continues; A continues.
    # step 4: B's best 0.625 < A's running average (0.5+0.75+0.75+0.875)/4 = 0.71875 -> stops. (Were B's own
    #         average counted, the median of {0.71875, 0.453125} would be 0.5859 and B would continue.)
    stopped, reasons = _drive(MedianStoppingPolicy(delay_evaluation=1), MEDIAN_SCRIPT)
    assert stopped == {"C": 2, "B": 4}
    assert reasons["B"] == ("median stopping: best iou so far 0.625 at interval 4 is below the median 0.7188 of "
                            "the running averages of 1 other run")


def test_median_stopping_without_delay_and_with_interval():
    # step 1: A alone; B 0.25 < 0.5 stops; C 0.375 == median {0.5, 0.25} continues; D continues.
    # step 2: D first (alone); C 0.375 < D's average 0.5 stops.
    assert _drive(MedianStoppingPolicy(), MEDIAN_SCRIPT)[0] == {"B": 1, "C": 2}
    assert _drive(MedianStoppingPolicy(evaluation_interval=2), MEDIAN_SCRIPT)[0] == {"C": 2, "B": 4}
    assert _drive(MedianStoppingPolicy(evaluation_interval=4), MEDIAN_SCRIPT)[0] == {"B": 4}


def test_median_stopping_judges_the_best_value_so_far_not_the_last_one():
    values = {"A": {1: 0.5, 2: 0.5, 3: 0.5}, "B": {1: 0.75, 2: 0.25, 3: 0.25}, "C": {1: 0.25, 2: 0.375, 3: 0.375}}
    script = _interleave(values, {1: "ABC", 2: "ABC", 3: "ABC"})
    # B dropped to 0.25 but its best so far (0.75) beats the others' running averages; C never did.
    assert _drive(MedianStoppingPolicy(delay_evaluation=1), script)[0] == {"C": 2}
    assert _drive(MedianStoppingPolicy(delay_evaluation=1), [(t, k, 1 - v) for t, k, v in script],
                  maximize=False)[0] == {"C": 2}


def test_median_stopping_minimise_mirrors_maximise():
    mirrored = [(t, s, 1 - v) for t, s, v in MEDIAN_SCRIPT]
    stopped, reasons = _drive(MedianStoppingPolicy(delay_evaluation=1), mirrored, maximize=False)
    assert stopped == {"C": 2, "B": 4}
    assert "0.375 at interval 4 is above the median 0.2812" in reasons["B"]


# -- Truncation selection --------------------------------------------------------------------------------
TRUNCATION_VALUES = {
    "A": {1: 0.5, 2: 0.625, 3: 0.75},
    "B": {1: 0.25, 2: 0.375, 3: 0.5},
    "C": {1: 0.25, 2: 0.3125, 3: 0.875},
    "D": {1: 0.75, 2: 0.875, 3: 0.9375},
    "E": {1: 0.0625, 2: 0.125, 3: 0.25},
}
TRUNCATION_SCRIPT = _interleave(TRUNCATION_VALUES, {1: "ABCDE", 2: "DABCE", 3: "ABCDE"})


def test_truncation_selection_with_ties():
    # 34%: floor(n * 34 / 100) cut = 0 for n <= 2, 1 for n = 3..5.
    # step 1: C ties B at 0.25 with 3 reports: the later trial (C) is cut. D (n=4): the cut is C, D goes on.
    #         E (n=5): worst, cut.
    # step 2: D, A (n<=2) go on; B (n=3, worst 0.375) cut.
    stopped, reasons = _drive(TruncationSelectionPolicy(34), TRUNCATION_SCRIPT)
    assert stopped == {"C": 1, "E": 1, "B": 2}
    assert reasons["C"] == "truncation selection: iou 0.25 at interval 1 is among the lowest 34% (1 of 3 runs)"


def test_truncation_selection_interval_delay_and_minimise():
    # interval 2: at step 2, B (n=3), C (n=4: worse than B) and E (n=5) are each the worst when they report.
    assert _drive(TruncationSelectionPolicy(34, evaluation_interval=2), TRUNCATION_SCRIPT)[0] == \
        {"B": 2, "C": 2, "E": 2}
    assert _drive(TruncationSelectionPolicy(34, delay_evaluation=2), TRUNCATION_SCRIPT)[0] == {"E": 3}
    assert _drive(TruncationSelectionPolicy(34), _negate(TRUNCATION_SCRIPT), maximize=False)[0] == \
        {"C": 1, "E": 1, "B": 2}


def test_truncation_selection_percentage_is_floored():
    values = {t: {1: v} for t, v in zip("ABCDEF", [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625], strict=True)}
    script = _interleave(values, {1: "ABCDEF"})
    # 20%: nothing is cut before 5 trials reported; then the worst of 5 (E) and of 6 (F).
    assert _drive(TruncationSelectionPolicy(20), script)[0] == {"E": 1, "F": 1}
    # 50%: n=2 cuts 1 (B), n=3 cuts 1 (C), n=4 cuts 2 (D is among them), ...
    assert _drive(TruncationSelectionPolicy(50), script)[0] == {"B": 1, "C": 1, "D": 1, "E": 1, "F": 1}


def test_truncation_selection_exclude_finished_jobs():
    # G is a fast run that reports steps 1 and 2 and finishes before the others report step 1.
    script = [("G", 1, 0.25), ("G", 2, 0.25), ("G", FINISH),
              ("A", 1, 0.75), ("H", 1, 0.6875), ("D", 1, 0.625)]
    # finished runs count: G (finished, never stopped) takes the cut, D goes on
    assert _drive(TruncationSelectionPolicy(34), script)[0] == {}
    # finished runs excluded: among A, H, D the worst (D) is cut
    assert _drive(TruncationSelectionPolicy(34, exclude_finished_jobs=True), script)[0] == {"D": 1}


# -- the contract every policy keeps ---------------------------------------------------------------------
POLICIES = [
    BanditPolicy(slack_factor=0.1),
    BanditPolicy(slack_amount=0.05),
    MedianStoppingPolicy(),
    TruncationSelectionPolicy(50),
    TruncationSelectionPolicy(99, exclude_finished_jobs=True),
    NoTerminationPolicy(),
    SuccessiveHalvingPolicy(min_resource=1, reduction_factor=2),
    HyperbandPolicy(min_resource=1, reduction_factor=2, brackets=2),
]


def _random_histories(seed, n_trials=6, n_steps=8):
    rng = np.random.default_rng(seed)
    return {f"t{i}": TrialHistory(f"t{i}", {k: float(rng.uniform(0, 1)) for k in range(1, n_steps + 1)})
            for i in range(n_trials)}


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
@pytest.mark.parametrize("maximize", [True, False])
def test_contract_never_stops_a_trial_alone(policy, maximize):
    alone = {"t": TrialHistory("t", {k: v for k, v in enumerate([0.9, 0.1, 0.0, 0.5, float("nan")], start=1)})}
    for step in alone["t"].values:
        assert policy.decide("t", step, alone, maximize=maximize) == (Decision.CONTINUE, None)


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
def test_contract_never_decides_before_the_delay_or_off_the_interval(policy):
    delayed = dataclasses.replace(policy, delay_evaluation=3, evaluation_interval=2)
    for seed in range(5):
        histories = _random_histories(seed)
        for trial in histories:
            for step in range(1, 9):
                decision, reason = delayed.decide(trial, step, histories)
                if step <= 3 or step % 2:
                    assert (decision, reason) == (Decision.CONTINUE, None)
                else:
                    assert delayed.applies_at(step)


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
@pytest.mark.parametrize("maximize", [True, False])
def test_contract_is_deterministic_pure_and_explains_every_stop(policy, maximize):
    n_stops = 0
    for seed in range(5):
        histories = _random_histories(seed)
        before = copy.deepcopy(histories)
        for trial in histories:
            for step in range(1, 9):
                first = policy.decide(trial, step, histories, maximize=maximize)
                assert policy.decide(trial, step, copy.deepcopy(histories), maximize=maximize) == first
                decision, reason = first
                assert isinstance(decision, Decision)
                if decision is Decision.STOP:
                    n_stops += 1
                    assert f"at interval {step}" in reason
                else:
                    assert reason is None
        assert histories == before
    # every real policy stops something among 6 random trials over 8 steps; the null policy never does
    assert (n_stops == 0) == isinstance(policy, NoTerminationPolicy)


# Median stopping and successive halving are left out: they judge the best value so far, not the value at the step.
@pytest.mark.parametrize("policy", [p for p in POLICIES
                                    if not isinstance(p, (MedianStoppingPolicy, SuccessiveHalvingPolicy))], ids=repr)
def test_contract_the_best_trial_at_a_step_is_not_stopped_by_comparison_policies(policy):
    for seed in range(5):
        histories = _random_histories(seed)
        for step in range(1, 9):
            best = max(histories, key=lambda t: histories[t].values[step])
            assert policy.decide(best, step, histories)[0] is Decision.CONTINUE


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
def test_contract_round_trips_through_make_policy(policy):
    assert make_policy(policy.to_dict()) == policy
    assert make_policy(policy) is policy


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
def test_contract_decide_needs_the_report_it_is_asked_about(policy):
    histories = {"a": TrialHistory("a", {1: 0.5})}
    with pytest.raises(KeyError):
        policy.decide("b", 1, histories)
    with pytest.raises(ValueError, match="has not reported step 2"):
        policy.decide("a", 2, histories)


def test_decision_is_a_string_enum():
    assert Decision.STOP == "stop" and Decision("continue") is Decision.CONTINUE


# -- make_policy -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("config, expected", [
    (None, NoTerminationPolicy()),
    ({"type": None}, NoTerminationPolicy()),
    ("none", NoTerminationPolicy()),
    ({"type": "bandit", "slack_factor": 0.1}, BanditPolicy(slack_factor=0.1)),
    ({"type": "BanditPolicy", "slack_amount": 0.2, "evaluation_interval": 2, "delay_evaluation": 5},
     BanditPolicy(slack_amount=0.2, evaluation_interval=2, delay_evaluation=5)),
    ({"type": "median_stopping"}, MedianStoppingPolicy()),
    ({"type": "MedianStoppingPolicy", "delay_evaluation": 1}, MedianStoppingPolicy(delay_evaluation=1)),
    ("median", MedianStoppingPolicy()),
    ({"type": "truncation", "truncation_percentage": 20}, TruncationSelectionPolicy(20)),
    ({"type": "TruncationSelectionPolicy", "truncation_percentage": 10.0, "exclude_finished_jobs": "true"},
     TruncationSelectionPolicy(10, exclude_finished_jobs=True)),
    ({"type": "truncation-selection", "truncation_percentage": 99}, TruncationSelectionPolicy(99)),
])
def test_make_policy_accepts_spec_and_cloud_names(config, expected):
    assert make_policy(config) == expected


@pytest.mark.parametrize("config, needle", [
    ({"type": "bandit"}, "exactly one of slack_factor and slack_amount"),
    ({"type": "bandit", "slack_factor": 0.1, "slack_amount": 0.1}, "exactly one of slack_factor and slack_amount"),
    ({"type": "bandit", "slack_factor": 0}, "slack_factor must be a number greater than 0, got 0"),
    ({"type": "bandit", "slack_amount": -0.1}, "slack_amount must be a number greater than 0"),
    ({"type": "bandit", "slack_factor": "0.1"}, "slack_factor must be a number"),
    ({"type": "truncation_selection"}, "needs truncation_percentage"),
    ({"type": "truncation_selection", "truncation_percentage": 0},
     "truncation_percentage must be an integer in [1, 99], got 0"),
    ({"type": "truncation_selection", "truncation_percentage": 100}, "an integer in [1, 99], got 100"),
    ({"type": "truncation_selection", "truncation_percentage": 12.5}, "an integer in [1, 99], got 12.5"),
    ({"type": "truncation_selection", "truncation_percentage": True}, "an integer in [1, 99]"),
    ({"type": "truncation_selection", "truncation_percentage": 5, "exclude_finished_jobs": "maybe"},
     "exclude_finished_jobs must be true or false"),
    ({"type": "median_stopping", "evaluation_interval": 0}, "evaluation_interval must be an integer >= 1, got 0"),
    ({"type": "median_stopping", "delay_evaluation": -1}, "delay_evaluation must be an integer >= 0, got -1"),
    ({"type": "median_stopping", "evaluation_intervals": 2}, "unknown key 'evaluation_intervals'; did you mean "
                                                            "'evaluation_interval'?"),
    ({"type": "median_stopping", "slack_factor": 0.1}, "slack_factor applies to the bandit policy, not to "
                                                       "median_stopping"),
    ({"type": None, "delay_evaluation": 1}, "delay_evaluation applies to the bandit and median_stopping and "
                                            "truncation_selection and successive_halving and hyperband policies, "
                                            "not to none"),
    ({"type": "bandti", "slack_factor": 0.1}, "did you mean 'bandit'?"),
    ({"type": "truncaton", "truncation_percentage": 5}, "did you mean 'truncation_selection'?"),
    ({"type": "hyperbnd"}, "type must be one of bandit, median_stopping, truncation_selection, successive_halving, "
                           "hyperband or none"),
    (["bandit"], "expected a mapping with a type, got ['bandit']"),
])
def test_make_policy_validates(config, needle):
    with pytest.raises(ConfigError) as info:
        make_policy(config, source="sweep.yaml", line=7)
    assert str(info.value).startswith("sweep.yaml:7: early_termination_policy: "), str(info.value)
    assert needle in str(info.value)


def test_policies_validate_when_built_directly():
    with pytest.raises(ConfigError, match="exactly one of"):
        BanditPolicy()
    with pytest.raises(ConfigError, match="evaluation_interval must be an integer >= 1"):
        MedianStoppingPolicy(evaluation_interval=1.5)
    with pytest.raises(TypeError):
        TruncationSelectionPolicy()  # truncation_percentage is required
    assert BanditPolicy(0.2).slack_factor == 0.2  # slack_factor is the first positional argument
