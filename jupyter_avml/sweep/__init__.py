"""Sweeps: search spaces, samplers, early termination, and experiments run by a background driver.

* ``space``: the spec's expressions (``choice``, ``uniform``, ``loguniform``...) and ``SearchSpace``;
* ``sampling``: random, grid and Bayesian samplers (ask/tell);
* ``policies``: bandit, median stopping and truncation selection (pure decisions over histories);
* ``config``: the experiment configuration (run settings + sweep settings);
* ``experiment``: ``Experiment(name).submit(config)`` -> ``ExperimentHandle``; ``attach``, ``list_experiments``;
* ``driver``, ``worker``, ``slots``: the background processes and the resources they use;
* ``state``: the files any process reads to follow an experiment.
"""

from jupyter_avml.sweep.config import ExperimentConfig, parse_experiment, read_experiment
from jupyter_avml.sweep.experiment import (BestChild, Experiment, ExperimentHandle, attach, driver_alive,
                                           list_experiments)
from jupyter_avml.sweep.policies import (BanditPolicy, Decision, MedianStoppingPolicy, TruncationSelectionPolicy,
                                         make_policy)
from jupyter_avml.sweep.space import (SearchSpace, choice, lognormal, loguniform, normal, qlognormal, qloguniform,
                                      qnormal, quniform, randint, uniform)
from jupyter_avml.sweep.state import (CHILD_TERMINAL, EXPERIMENT_TERMINAL, ChildState, ExperimentState)

__all__ = [
    "Experiment", "ExperimentHandle", "BestChild", "attach", "list_experiments", "driver_alive",
    "ExperimentConfig", "parse_experiment", "read_experiment",
    "ExperimentState", "ChildState", "EXPERIMENT_TERMINAL", "CHILD_TERMINAL",
    "SearchSpace", "choice", "randint", "uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal",
    "lognormal", "qlognormal",
    "BanditPolicy", "MedianStoppingPolicy", "TruncationSelectionPolicy", "Decision", "make_policy",
]
