"""The scheduler alone, with a fake clock: queue, proposals, results, the policy, stops, the deadline, the best."""

from __future__ import annotations

import pytest

from jupyter_avml.sweep.config import parse_experiment
from jupyter_avml.sweep.sampling import make_sampler
from jupyter_avml.sweep.scheduler import Scheduler, trial_record
from jupyter_avml.sweep.state import ExperimentState


class FakeClock:
    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("{}\n")  # parsing the configuration only checks that the file exists
    return path


def make(data, clock, previous_seconds=0.0, **sweep) -> Scheduler:
    config = {"task": "image-classification", "training_data": str(data), "model_name": "resnet18",
              "sampling": "grid", "iterations": 4, "timeout_minutes": 1,
              "search_space": {"learning_rate": "choice(0.01, 0.02, 0.03, 0.04)"}, **sweep}
    spec = parse_experiment(config)
    state = ExperimentState(name="unit", task=spec.task, primary_metric=spec.primary_metric)
    scheduler = Scheduler(spec, state, make_sampler(spec.sampling, spec.space, seed=spec.seed),
                          previous_seconds=previous_seconds, clock=clock)
    scheduler.begin(resume=False, concurrency=2)
    return scheduler


def start(scheduler: Scheduler, count: int) -> list:
    children = []
    for _ in range(count):
        child = scheduler.next_child()
        scheduler.dispatched(child, resume_run=None)
        scheduler.on_run_id(child.id, f"run-{child.id}")
        children.append(child)
    return children


def test_the_deadline_is_what_is_left_of_the_budget(data):
    clock = FakeClock()
    scheduler = make(data, clock, previous_seconds=20)  # a resumed session: 60 s budget, 20 s already used
    a, b = start(scheduler, 2)
    assert scheduler.state.status == "running" and scheduler.state.started == 1_000.0
    clock.advance(39)
    assert scheduler.check_deadline() == {} and scheduler.ending is None
    clock.advance(2)
    requests = scheduler.check_deadline()
    assert sorted(requests) == [a.id, b.id]
    assert {(r.status, r.reason) for r in requests.values()} == {("stopped", "experiment timeout")}
    assert scheduler.ending == ("timed_out", "experiment timeout (budget 60 s)")
    assert scheduler.next_child() is None and scheduler.remaining() == 0
    for child in (a, b):
        scheduler.on_finished(child.id, "stopped", reason="experiment timeout", best_value=0.5, best_epoch=1)
    assert scheduler.done()
    assert scheduler.finish() == ("timed_out", "experiment timeout (budget 60 s)")
    assert scheduler.state.ended == clock.now and scheduler.state.best_child == a.id


def test_a_worker_that_does_not_stop_in_time_is_killed_and_its_child_ends_as_asked(data):
    clock = FakeClock()
    scheduler = make(data, clock)
    child, other = start(scheduler, 2)
    request = scheduler.request_stop(child.id, "stopped", "stopped by user")
    assert (request.status, request.reason, request.time) == ("stopped", "stopped by user", clock.now)
    assert scheduler.request_stop(child.id, "stopped", "again") is None  # asked once
    clock.advance(299)
    assert scheduler.overdue_stops(300) == []
    clock.advance(2)
    assert scheduler.overdue_stops(300) == [child.id] and scheduler.overdue_stops(300) == []
    scheduler.on_lost(child.id, "worker killed by signal 9 (SIGKILL)", "worker killed by signal 9 (SIGKILL); log")
    assert child.status == "stopped" and child.reason.startswith("stopped by user (worker killed by signal 9")
    scheduler.on_lost(other.id, "worker exited with code 1", "ValueError: bad image (worker exited with code 1)")
    assert other.status == "failed" and other.error.startswith("ValueError: bad image")
    assert scheduler.running == set()


def test_a_queued_child_asked_to_stop_is_closed_at_once(data):
    scheduler = make(data, FakeClock())
    first = scheduler.next_child()
    scheduler.pending.append(first.id)  # as after a resume
    first.status = "queued"
    assert scheduler.request_stop(first.id, "stopped", "not this one") is None
    assert first.status == "stopped" and first.reason == "not this one" and scheduler.pending == []


def test_every_metric_of_an_epoch_is_recorded_and_the_primary_one_drives_the_best(data):
    scheduler = make(data, FakeClock())
    child, = start(scheduler, 1)
    scheduler.on_run_started(child.id, "resnet18", 3)
    scheduler.on_epoch(child.id, 1, {}, None, train_loss=2.0)  # not evaluated
    scheduler.on_epoch(child.id, 2, {"accuracy": 0.5, "precision_score_macro": 0.4}, 0.5, train_loss=1.5)
    scheduler.on_epoch(child.id, 2, {"accuracy": 0.9}, 0.9, train_loss=1.0)  # a resumed run repeats an epoch
    assert child.intermediate_values == [[1, "train_loss", 2.0], [2, "accuracy", 0.5],
                                         [2, "precision_score_macro", 0.4], [2, "train_loss", 1.5]]
    assert child.metric_history == [[2, 0.5]] and (child.best_value, child.best_epoch) == (0.5, 2)
    assert child.metric_values("precision_score_macro") == [(2, 0.4)]
    assert (child.epoch, child.number_of_epochs) == (2, 3) and scheduler.state.best_child == child.id


def test_the_policy_decides_at_each_evaluation(data):
    scheduler = make(data, FakeClock(), early_termination_policy={"type": "bandit", "slack_factor": 0.1})
    good, bad = start(scheduler, 2)
    assert scheduler.on_epoch(good.id, 1, {"accuracy": 0.9}, 0.9) is None
    request = scheduler.on_epoch(bad.id, 1, {"accuracy": 0.5}, 0.5)
    assert request.status == "early_terminated" and request.reason.startswith("bandit: accuracy 0.5")
    assert scheduler.on_epoch(bad.id, 2, {"accuracy": 0.4}, 0.4) is None  # already asked
    scheduler.on_finished(bad.id, "early_terminated", reason=request.reason, best_value=0.5, best_epoch=1)
    assert bad.status == "early_terminated" and scheduler.state.best_child == good.id


def test_the_sampler_learns_each_outcome_from_the_children(data):
    scheduler = make(data, FakeClock(), iterations=5, search_space={"learning_rate": "choice(0.01, 0.02, 0.03, "
                                                                                     "0.04, 0.05)"})
    done, cut, failed, running = start(scheduler, 4)
    scheduler.on_epoch(done.id, 1, {"accuracy": 0.7}, 0.7)
    scheduler.on_finished(done.id, "completed", best_value=0.7, best_epoch=1)
    scheduler.on_epoch(cut.id, 1, {"accuracy": 0.3}, 0.3)
    scheduler.on_epoch(cut.id, 2, {"accuracy": 0.2}, 0.2)
    scheduler.on_finished(cut.id, "early_terminated", best_value=0.3, best_epoch=1)
    scheduler.on_lost(failed.id, "worker exited with code 1")
    records = [trial_record(c) for c in scheduler.state.children]
    assert [(r.state, r.value) for r in records] == [("complete", 0.7), ("pruned", 0.2), ("failed", None),
                                                     ("running", None)]
    assert records[1].intermediate == ((1, 0.3), (2, 0.2))
    assert scheduler.state.best_child == done.id
    # a failed child never becomes the best, even with a value
    failed.best_value = 0.99
    scheduler.update_best()
    assert scheduler.state.best_child == done.id


def test_resume_requeues_the_unfinished_children_and_refuses_a_fresh_start_over_them(data):
    clock = FakeClock()
    first = make(data, clock)
    finished, interrupted = start(first, 2)
    first.on_finished(finished.id, "completed", best_value=0.6, best_epoch=1)
    state = first.state
    again = Scheduler(first.spec, state, make_sampler("grid", first.spec.space), clock=clock)
    with pytest.raises(RuntimeError, match="already has children; resume it instead"):
        again.begin(resume=False, concurrency=2)
    again.begin(resume=True, concurrency=2)
    assert again.pending == [interrupted.id] and interrupted.status == "queued" and interrupted.run_id == "run-1"
    assert finished.status == "completed" and again.unfinished() == 1 + 2
    assert again.next_child() is interrupted  # it runs again first, in its run
    assert [again.next_child().id for _ in range(2)] == [2, 3]
