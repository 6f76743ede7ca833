"""``AutoMLImageConfig`` as the cloud SDK spells it: one experiment (a sweep), its run and sweep settings.

::

    config = AutoMLImageConfig(task=ImageTask.IMAGE_OBJECT_DETECTION, compute_target="local",
                               training_data="train.jsonl", validation_data="valid.jsonl",
                               hyperparameter_sampling=GridParameterSampling({'model_name': choice('yolov5')}),
                               iterations=1)

The arguments become the mapping an experiment YAML holds (``experiment_settings``), validated at once by
``sweep.config.parse_experiment``: the same checks, messages and defaults as ``avml sweep FILE``. (The
single-run configuration, ``jupyter_avml.config.AutoMLImageConfig``, is what each child trains.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from jupyter_avml.errors import ConfigError

__all__ = ["AutoMLImageConfig", "experiment_settings"]


def experiment_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The experiment mapping ``sweep.config`` reads, from the cloud API's arguments.

    A sampling object (``GridParameterSampling(...)``) becomes ``sampling`` + ``search_space``; an
    ``ImageTask`` its value; a path object a string; ``None`` values are dropped (not set).
    """
    from jupyter_avml.automl._sampling import HyperParameterSampling
    from jupyter_avml.tasks import ImageTask

    out: dict[str, Any] = {}
    for key, value in settings.items():
        if value is None:
            continue
        if isinstance(value, HyperParameterSampling):
            if key not in ("hyperparameter_sampling", "sampling"):
                raise ConfigError(f"{key}: a {type(value).__name__} goes to hyperparameter_sampling", field=key,
                                  value=repr(value))
            for name, item in value.settings().items():
                if name in out or name in settings and settings[name] is not None:
                    raise ConfigError(f"hyperparameter_sampling={type(value).__name__}(...) already gives {name}; "
                                      f"do not set {name} too", field=name, value=repr(item))
                out[name] = item
            continue
        if isinstance(value, ImageTask):
            value = value.value
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        out[key] = value
    return out


class AutoMLImageConfig:
    """An experiment (a sweep) configured with the cloud SDK's arguments (spec sections 8 and 9).

    Parameters
    ----------
    task:
        ``ImageTask.IMAGE_CLASSIFICATION``... or its value.
    compute_target:
        Where children run: ``"local"`` (this machine: its GPUs, or the CPU; the default), ``"cpu"``,
        ``"cuda"`` or ``"cuda:N"``. A cloud cluster is refused with what to use instead.
    training_data, validation_data:
        JSONL files, or ``dataset:NAME[:VERSION]`` of the workspace's dataset registry. Without
        ``validation_data``, ``split_ratio`` of the training data is held out.
    hyperparameter_sampling:
        ``GridParameterSampling({...})``, ``RandomParameterSampling({...})``, ``BayesianParameterSampling({...})``.
        Without it, one child trains the given settings (``iterations`` 1).
    iterations, max_concurrent_iterations:
        The most configurations to try (1..1000), and to train at once (1..100; default all at once, bounded
        by this machine's slots).
    primary_metric:
        The task's primary metric (``accuracy``, ``iou``, ``mean_average_precision``); another is refused.
    early_termination_policy:
        ``BanditPolicy(...)``, ``MedianStoppingPolicy(...)``, ``TruncationSelectionPolicy(...)``.
    experiment_timeout_hours:
        The budget (default 7 days, at most 60).
    arguments:
        Fixed settings of every child, ``["--early_stopping", 1, "--evaluation_frequency", 2]``.
    **settings:
        Any run setting (hyperparameters, ``model_name``, ``seed``, ``pretrained``..., also by the newer
        generation's names, e.g. ``validation_data_size``) and the other experiment settings
        (``trial_timeout_minutes``, ``cpu_slots``...).

    Raises
    ------
    ConfigError
        naming the setting and the value, exactly as for an experiment YAML file.
    """

    # The cloud SDK's order of arguments, so that positional calls port too.
    def __init__(self, task: Any = None, compute_target: Any = None, training_data: Any = None,
                 hyperparameter_sampling: Any = None, iterations: int | None = None,
                 max_concurrent_iterations: int | None = None, experiment_timeout_hours: float | None = None,
                 early_termination_policy: Any = None, validation_data: Any = None,
                 arguments: list | Mapping | None = None, *, primary_metric: str | None = None, **settings: Any):
        from jupyter_avml.sweep.config import parse_experiment

        given = dict(task=task, compute_target=compute_target, training_data=training_data,
                     validation_data=validation_data, hyperparameter_sampling=hyperparameter_sampling,
                     iterations=iterations, max_concurrent_iterations=max_concurrent_iterations,
                     primary_metric=primary_metric, early_termination_policy=early_termination_policy,
                     experiment_timeout_hours=experiment_timeout_hours, arguments=arguments)
        self._settings = experiment_settings({**given, **settings})
        self._experiment = parse_experiment(self._settings)

    @property
    def experiment_config(self):
        """The validated ``sweep.config.ExperimentConfig`` (what ``Experiment.submit`` runs)."""
        return self._experiment

    @property
    def task(self):
        """The ``ImageTask``."""
        from jupyter_avml.tasks import ImageTask

        return ImageTask(self._experiment.task)

    @property
    def primary_metric(self) -> str:
        return self._experiment.primary_metric

    @property
    def iterations(self) -> int:
        return self._experiment.iterations

    def settings(self) -> dict[str, Any]:
        """The experiment settings as given (``None`` values left out), before validation filled defaults."""
        return dict(self._settings)

    def to_yaml(self) -> str:
        """The experiment as a YAML file for ``avml sweep FILE`` (data paths absolute, expressions as text)."""
        return self._experiment.to_yaml()

    def dry_run(self, name: str = "dry-run", workspace: Any = None, *, check_data: bool = True):
        """What the experiment would do, without starting it (as ``avml sweep --dry-run``)."""
        from jupyter_avml.cli.dry_run import DryRun

        return DryRun(name, self._experiment, workspace, check_data=check_data)

    def __repr__(self) -> str:
        spec = self._experiment
        return (f"AutoMLImageConfig(task={spec.task!r}, sampling={spec.sampling!r}, iterations={spec.iterations}, "
                f"primary_metric={spec.primary_metric!r})")
