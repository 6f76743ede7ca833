"""Sweeps: search spaces, samplers, early termination, and experiments run by a background driver.

The public API (what the CLI, the magics and users call) is exported here:

* ``Experiment(name).submit(config)`` -> ``ExperimentHandle``; ``attach``, ``list_experiments``,
  ``default_experiment_name``, ``driver_alive``; a handle's ``state``, ``observed_state`` (``interrupted``
  when the driver is gone), ``succeeded``, ``resume_hint``, ``get_best_child()`` -> ``BestChild``...;
* the configuration: ``ExperimentConfig``, ``parse_experiment``, ``read_experiment``, ``load_yaml_nested``;
* the state: ``ExperimentState``, ``ChildState``, the status constants, ``DamagedStateError``,
  ``observe``/``resume_hint`` (``status.py``);
* search spaces (``choice``, ``uniform``...), samplers (``make_sampler``) and policies (``make_policy``).

Layout (machinery in the modules, each one job):

* ``expressions``: one class per search expression (sampling, ranges, grid and Bayesian mappings);
  ``space``: parsing expression text and ``SearchSpace``;
* ``sampling``: random, grid and Bayesian samplers (``propose(number, history)``; ask/tell);
* ``policies``: bandit, median stopping and truncation selection (pure decisions over histories);
* ``config``: the experiment configuration; ``preflight``: checks made before the first child;
* ``experiment``: the user-facing handles; ``launcher``: starting a driver;
* ``folder``: every file of an experiment's folder; ``state``: ``state.json``'s content; ``status``: what
  readers show when the driver is gone or the state is damaged;
* ``driver``: the background loop, composing ``scheduler`` (pure decisions), an ``executor`` (where children
  run; ``processes``: local worker processes, ``worker``: one of them, ``slots``: GPUs and CPU shares) and
  ``bookkeeping`` (MLflow parent and orphan runs).
"""

from jupyter_avml.sweep.config import ExperimentConfig, load_yaml_nested, parse_experiment, read_experiment
from jupyter_avml.sweep.experiment import (
    BestChild,
    Experiment,
    ExperimentHandle,
    attach,
    default_experiment_name,
    driver_alive,
    list_experiments,
)
from jupyter_avml.sweep.folder import DamagedStateError
from jupyter_avml.sweep.policies import (
    BanditPolicy,
    Decision,
    MedianStoppingPolicy,
    TruncationSelectionPolicy,
    make_policy,
)
from jupyter_avml.sweep.sampling import make_sampler
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
from jupyter_avml.sweep.state import (
    CHILD_TERMINAL,
    CHILD_WITH_MODEL,
    DAMAGED,
    EXPERIMENT_TERMINAL,
    INTERRUPTED,
    ChildState,
    ExperimentState,
)
from jupyter_avml.sweep.status import observe, resume_hint

__all__ = [
    "Experiment", "ExperimentHandle", "BestChild", "attach", "list_experiments", "driver_alive",
    "default_experiment_name",
    "ExperimentConfig", "parse_experiment", "read_experiment", "load_yaml_nested",
    "ExperimentState", "ChildState", "EXPERIMENT_TERMINAL", "CHILD_TERMINAL", "CHILD_WITH_MODEL", "INTERRUPTED",
    "DAMAGED", "DamagedStateError", "observe", "resume_hint",
    "SearchSpace", "choice", "randint", "uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal",
    "lognormal", "qlognormal", "make_sampler",
    "BanditPolicy", "MedianStoppingPolicy", "TruncationSelectionPolicy", "Decision", "make_policy",
]
