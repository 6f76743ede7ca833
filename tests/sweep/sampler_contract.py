"""The contract every sampler keeps, as a reusable test class (like Optuna's ``testing/pytest_samplers.py``).

A test module subclasses ``SamplerContract`` and sets ``make(space, seed)`` and ``spaces`` (the spaces that
sampler takes, conditional ones included); every test below then runs for it:

* determinism: the same seed gives the same sequence, a different seed another one;
* purity: ``propose(number, history)`` depends only on its arguments (asking twice changes nothing);
* resume: a fresh sampler given the recorded history proposes exactly what the first one proposes next,
  so an interrupted sweep continues the same sequence;
* the space: every proposal is a configuration of the sub-space it names (every parameter, each value one
  its expression can give), and the parameters of a sub-space never appear with another's;
* bounded samplers (``max_trials``) propose that many distinct configurations, then ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from jupyter_avml.sweep.sampling import Sampler, Trial, TrialRecord
from jupyter_avml.sweep.space import SearchSpace

TRIALS = 14  # past the Bayesian sampler's 10 start-up trials, so that TPE itself is exercised


def objective(params: dict) -> float:
    """A cheap deterministic score of a configuration (numbers count, other values by their text)."""
    score = 0.0
    for key, value in sorted(params.items()):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            score -= (float(value) - 0.3) ** 2
        else:
            score += (sum(map(ord, repr(value))) % 7) / 10
        score += len(key) / 100
    return score


def record(trial: Trial, index: int) -> TrialRecord:
    """The record of a finished trial, with every outcome a sweep records: complete, pruned, failed."""
    kind = index % 4
    if kind == 3:
        return TrialRecord(trial.number, trial.params, "failed", None, trial.subspace)
    if kind == 2:
        value = objective(trial.params) - 1
        return TrialRecord(trial.number, trial.params, "pruned", value, trial.subspace, ((1, value),))
    return TrialRecord(trial.number, trial.params, "complete", objective(trial.params), trial.subspace)


def run(sampler: Sampler, count: int = TRIALS, history: list[TrialRecord] | None = None,
        start: int = 0) -> tuple[list[Trial], list[TrialRecord]]:
    """Propose ``count`` trials from ``start``, recording each as finished before the next (as a sweep with
    one slot does)."""
    history = list(history or [])
    trials = []
    for number in range(start, start + count):
        trial = sampler.propose(number, history)
        if trial is None:
            break
        trials.append(trial)
        history.append(record(trial, number))
    return trials, history


class SamplerContract:
    """Subclass with ``make`` (a ``(space, seed) -> Sampler`` static method) and ``spaces`` (a list)."""

    make: Callable[[SearchSpace, int], Sampler]
    spaces: list

    def samplers(self, seed: int = 3):
        for config in self.spaces:
            space = SearchSpace.from_config(config)
            yield space, type(self).make(space, seed)

    def test_the_same_seed_gives_the_same_sequence(self):
        for config in self.spaces:
            space = SearchSpace.from_config(config)
            first, _ = run(type(self).make(space, 5))
            again, _ = run(type(self).make(space, 5))
            other, _ = run(type(self).make(space, 6))
            assert [(t.number, t.params, t.subspace) for t in first] == \
                [(t.number, t.params, t.subspace) for t in again]
            if len(first) > 1:
                assert [t.params for t in first] != [t.params for t in other]

    def test_propose_depends_only_on_its_arguments(self):
        for _, sampler in self.samplers():
            _, history = run(sampler, 5)
            once = sampler.propose(5, history)
            assert sampler.propose(2, history[:2]).params == sampler.propose(2, history[:2]).params
            twice = sampler.propose(5, history)
            assert (once is None and twice is None) or (once.params, once.subspace) == (twice.params, twice.subspace)

    def test_a_fresh_sampler_given_the_history_continues_the_same_sequence(self):
        for config in self.spaces:
            space = SearchSpace.from_config(config)
            whole, _ = run(type(self).make(space, 7))
            cut = len(whole) // 2
            _, history = run(type(self).make(space, 7), cut)  # the first session, then its driver dies
            rest, _ = run(type(self).make(space, 7), len(whole) - cut, history=history, start=cut)
            assert [t.params for t in whole] == [t.params for t in whole[:cut]] + [t.params for t in rest]

    def test_a_running_trial_in_the_history_is_allowed(self):
        for _, sampler in self.samplers():
            trials, history = run(sampler, 3)
            running = [TrialRecord(t.number, t.params, subspace=t.subspace) for t in trials]
            nxt = sampler.propose(3, running)
            assert nxt is None or nxt.number == 3

    def test_every_proposal_is_a_configuration_of_its_subspace(self):
        for space, sampler in self.samplers():
            trials, _ = run(sampler, 40)
            assert trials, "the sampler proposed nothing"
            for trial in trials:
                assert 0 <= trial.subspace < len(space.subspaces)
                assert space.contains(trial.params, trial.subspace), (trial.params, trial.subspace)
                assert all(not isinstance(v, float) or math.isfinite(v) for v in trial.params.values())

    def test_a_bounded_sampler_gives_distinct_configurations_then_none(self):
        for _, sampler in self.samplers():
            if sampler.max_trials is None:
                continue
            trials, _ = run(sampler, sampler.max_trials + 3)
            assert len(trials) == sampler.max_trials
            assert len({repr(sorted(t.params.items())) for t in trials}) == sampler.max_trials
            assert sampler.propose(sampler.max_trials, []) is None
