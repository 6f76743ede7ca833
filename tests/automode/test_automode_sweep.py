"""AutoMode in a sweep: it chooses children (portfolio, then refinement), runs them and stops them (successive
halving, the budget); first with the scheduler alone and a fake clock, then once through the real driver."""

from __future__ import annotations

import time

import pytest

from jupyter_avml.sweep import Experiment
from jupyter_avml.sweep.config import parse_experiment
from jupyter_avml.sweep.sampling import make_sampler
from jupyter_avml.sweep.scheduler import Scheduler
from jupyter_avml.sweep.state import ExperimentState
from tests.sweep.test_experiment import kill_leftovers
from tests.sweep.test_scheduler import FakeClock

TINY = {"task": "image-classification", "device": "cpu", "pretrained": 0, "train_crop_size": 32,
        "valid_crop_size": 32, "valid_resize_size": 32, "number_of_epochs": 3, "early_stopping": 0,
        "cpu_threads": 1, "log_every_n_batches": 1}


def _scheduler(shapes, clock, **extra) -> Scheduler:
    spec = parse_experiment({**TINY, "training_data": str(shapes), "iterations": 6, "timeout_minutes": 2, **extra})
    state = ExperimentState(name="auto", task=spec.task, primary_metric=spec.primary_metric)
    scheduler = Scheduler(spec, state, make_sampler(spec.sampling, spec.space, seed=spec.seed), clock=clock)
    scheduler.begin(resume=False, concurrency=2)
    return scheduler


def _start(scheduler):
    child = scheduler.next_child()
    scheduler.dispatched(child, resume_run=None)
    scheduler.on_run_id(child.id, f"run-{child.id}")
    return child


def test_automode_chooses_stops_and_refines_within_the_budget(shapes):
    clock = FakeClock()
    scheduler = _scheduler(shapes, clock)
    plan = scheduler.spec.automode
    assert scheduler.spec.policy_config == {"type": "hyperband", "min_resource": 1, "reduction_factor": 3.0,
                                            "brackets": 2, "evaluation_interval": 1, "delay_evaluation": 0}
    a, b = _start(scheduler), _start(scheduler)
    assert [a.params, b.params] == plan.portfolio[:2] and (a.why, b.why) == tuple(plan.whys[:2])
    # a (child 0) and c (child 2) are in bracket 0, judged from epoch 1; b (child 1) in bracket 1, from epoch 3
    assert scheduler.on_epoch(a.id, 1, {"accuracy": 0.5}, 0.5) is None
    assert scheduler.on_epoch(b.id, 1, {"accuracy": 0.3}, 0.3) is None
    c = _start(scheduler)
    assert c.params == plan.portfolio[2]
    stop = scheduler.on_epoch(c.id, 1, {"accuracy": 0.2}, 0.2)
    assert stop is not None and stop.status == "early_terminated"
    assert stop.reason.startswith("hyperband (bracket 0): accuracy 0.2 (best so far) at interval 1 is not in the top "
                                  "1 of the 2 runs that reached this rung")
    scheduler.on_finished(c.id, "early_terminated", best_value=0.2, best_epoch=1, reason=stop.reason)
    d = _start(scheduler)  # the portfolio holds 5 entries (6 iterations, a quarter of them refine)
    assert d.params == plan.portfolio[3]
    for epoch, value in ((2, 0.7), (3, 0.8)):
        scheduler.on_epoch(a.id, epoch, {"accuracy": value}, value)
    scheduler.on_finished(a.id, "completed", best_value=0.8, best_epoch=3)
    clock.advance(121)  # the budget (2 minutes) runs out: running children stop, nothing more starts
    requests = scheduler.check_deadline()
    assert sorted(requests) == [b.id, d.id]
    assert scheduler.next_child() is None
    for child in (b, d):
        scheduler.on_finished(child.id, "stopped", reason="experiment timeout")
    assert scheduler.done() and scheduler.finish()[0] == "timed_out"
    assert scheduler.state.best_child == a.id
    assert scheduler.state.child(c.id).reason == stop.reason


def test_after_the_portfolio_comes_the_refinement(shapes):
    clock = FakeClock()
    scheduler = _scheduler(shapes, clock, iterations=3)
    plan = scheduler.spec.automode
    assert len(plan.portfolio) == 3
    for value in (0.6, 0.9):
        child = _start(scheduler)
        scheduler.on_epoch(child.id, 1, {"accuracy": value}, value)
        scheduler.on_finished(child.id, "completed", best_value=value, best_epoch=1)
    third = _start(scheduler)
    assert third.params == plan.portfolio[2]
    scheduler.on_finished(third.id, "failed", error="boom")
    assert scheduler.next_child() is None  # iterations 3: the portfolio used them all
    longer = _scheduler(shapes, FakeClock(), iterations=4, number_of_epochs=1)
    for value in (0.6, 0.9, 0.7):
        child = _start(longer)
        longer.on_epoch(child.id, 1, {"accuracy": value}, value)
        longer.on_finished(child.id, "completed", best_value=value, best_epoch=1)
    refined = _start(longer)
    assert refined.why.startswith("Bayesian refinement (TPE) around child 1 (best so far: 0.9000, complete)")
    assert refined.params["model_name"] == longer.spec.automode.portfolio[1]["model_name"]


@pytest.mark.slow(seconds=25)
def test_automode_through_the_driver(shapes, workspace):
    config = {**TINY, "training_data": str(shapes), "number_of_epochs": 2, "iterations": 3, "cpu_slots": 2,
              "timeout_minutes": 3, "early_termination_policy": {"type": "successive_halving", "min_resource": 1}}
    started = time.time()
    try:
        handle = Experiment("auto", workspace).submit(config)
        state = handle.wait(timeout=300)
    finally:
        kill_leftovers(workspace)
    assert time.time() - started < 180 + 60  # within the budget (and the driver's stop grace)
    assert state.status in ("completed", "timed_out") and state.sampling == "auto"
    assert state.early_termination_policy["type"] == "successive_halving"  # the user's policy, not AutoMode's
    assert len(state.children) == 3 and all(child.finished for child in state.children)
    plan = parse_experiment(handle.folder / "experiment.yaml").automode  # the plan the driver ran
    assert [child.why for child in state.children] == plan.whys[:3]
    assert [dict(child.params) for child in state.children] == plan.portfolio[:3]
    assert any(child.status == "completed" for child in state.children)
    for child in state.children:
        if child.status == "early_terminated":
            assert child.reason.startswith("successive halving: ")
