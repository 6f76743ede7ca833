"""The newer generation's job builders (``azure.ai.ml.automl``): ``image_object_detection(...)`` and its setters.

::

    job = image_object_detection(training_data="train.jsonl", validation_data="valid.jsonl",
                                 target_column_name="label", primary_metric="mean_average_precision")
    job.set_limits(timeout_minutes=60, max_trials=10, max_concurrent_trials=2)
    job.set_training_parameters(early_stopping=True, number_of_epochs=5)
    job.extend_search_space([SearchSpace(model_name=Choice(["yolov5"]), learning_rate=Uniform(0.0001, 0.01))])
    job.set_sweep(sampling_algorithm="random", early_termination=BanditPolicy(evaluation_interval=2,
                                                                              slack_factor=0.2))
    run = job.submit()          # or Experiment(ws, name).submit(job)

A job is a builder of the experiment mapping in the newer generation's own section names (``limits``,
``sweep``, ``training_parameters``, a list of sub-spaces for ``search_space``), which ``sweep.config`` reads
as it reads a YAML file: there is no second implementation. Setting names are the newer ones or ours
(``config.params.ALIASES``: ``image_size`` = ``img_size``...). ``Choice``, ``Uniform``... build the same
expression objects as ``choice``, ``uniform``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyter_avml.config.loader import echo_value
from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.space import (
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
from jupyter_avml.tasks import ImageTask

__all__ = ["ImageJob", "SearchSpace", "image_classification", "image_classification_multilabel",
           "image_object_detection", "image_instance_segmentation", "Choice", "Randint", "Uniform", "QUniform",
           "LogUniform", "QLogUniform", "Normal", "QNormal", "LogNormal", "QLogNormal"]


# -- the newer generation's expressions: the same objects as choice(), uniform()... ----------------------------
def Choice(values: list | tuple):  # noqa: N802 - the cloud SDK's name
    """``choice(*values)``."""
    return choice(*values)


def Randint(upper: int):  # noqa: N802
    """``randint(upper)``."""
    return randint(upper)


def Uniform(min_value: float, max_value: float):  # noqa: N802
    """``uniform(min_value, max_value)``."""
    return uniform(min_value, max_value)


def QUniform(min_value: float, max_value: float, q: float):  # noqa: N802
    """``quniform(min_value, max_value, q)``."""
    return quniform(min_value, max_value, q)


def LogUniform(min_value: float, max_value: float):  # noqa: N802
    """``loguniform(min_value, max_value)``: the bounds are EXPONENTS, as in ``loguniform``."""
    return loguniform(min_value, max_value)


def QLogUniform(min_value: float, max_value: float, q: float):  # noqa: N802
    """``qloguniform(min_value, max_value, q)``: the bounds are EXPONENTS."""
    return qloguniform(min_value, max_value, q)


def Normal(mu: float, sigma: float):  # noqa: N802
    """``normal(mu, sigma)``."""
    return normal(mu, sigma)


def QNormal(mu: float, sigma: float, q: float):  # noqa: N802
    """``qnormal(mu, sigma, q)``."""
    return qnormal(mu, sigma, q)


def LogNormal(mu: float, sigma: float):  # noqa: N802
    """``lognormal(mu, sigma)``."""
    return lognormal(mu, sigma)


def QLogNormal(mu: float, sigma: float, q: float):  # noqa: N802
    """``qlognormal(mu, sigma, q)``."""
    return qlognormal(mu, sigma, q)


class SearchSpace(dict):
    """One sub-space of a conditional search space: ``SearchSpace(model_name=Choice([...]), ...)``."""

    def __init__(self, **parameters: Any):
        super().__init__(parameters)


# -- the job ---------------------------------------------------------------------------------------------------
class ImageJob:
    """An AutoML image job of the newer generation, built by ``image_classification(...)`` and its siblings.

    Parameters are those of the builders; ``compute`` is a ``compute_target`` (``"local"``, ``"cpu"``,
    ``"cuda:N"``); ``experiment_name`` names the experiment ``submit`` creates (default ``automl-image``).
    """

    def __init__(self, task: ImageTask, *, training_data: Any, validation_data: Any = None,
                 validation_data_size: float | None = None, target_column_name: str = "label",
                 primary_metric: Any = None, compute: Any = None, experiment_name: str | None = None,
                 name: str | None = None, tags: dict | None = None, **_ignored: Any):
        if target_column_name != "label":
            raise ConfigError(f"target_column_name {echo_value(target_column_name)}: the JSONL rows hold the label in "
                              f"'label' (spec section 2)", field="target_column_name", value=target_column_name)
        self.task = task
        self.experiment_name = experiment_name
        self.name = name
        self.tags = dict(tags or {})
        self._settings: dict[str, Any] = {"task": task.value, "training_data": data_path(training_data),
                                          "validation_data": data_path(validation_data),
                                          "validation_data_size": validation_data_size,
                                          "primary_metric": primary_metric, "compute_target": compute}
        self.limits: dict[str, Any] = {}
        self.sweep: dict[str, Any] = {}
        self.training_parameters: dict[str, Any] = {}
        self.search_space: list[dict[str, Any]] = []

    def set_limits(self, *, max_trials: int | None = None, max_concurrent_trials: int | None = None,
                   timeout_minutes: float | None = None, trial_timeout_minutes: float | None = None,
                   **_ignored: Any) -> None:
        """The most trials, at once, the budget in minutes, and the most minutes one trial may train."""
        given = dict(max_trials=max_trials, max_concurrent_trials=max_concurrent_trials,
                     timeout_minutes=timeout_minutes, trial_timeout_minutes=trial_timeout_minutes)
        self.limits.update({k: v for k, v in given.items() if v is not None})

    def set_training_parameters(self, **parameters: Any) -> None:
        """Fixed settings of every trial, by the newer names or ours (``image_size=...`` or ``img_size=...``)."""
        self.training_parameters.update({k: v for k, v in parameters.items() if v is not None})

    def set_sweep(self, *, sampling_algorithm: str = "random", early_termination: Any = None,
                  **_ignored: Any) -> None:
        """``random``, ``grid`` or ``bayesian`` sampling, and an early termination policy."""
        self.sweep = {"sampling_algorithm": getattr(sampling_algorithm, "value", sampling_algorithm)}
        if early_termination is not None:
            self.sweep["early_termination"] = early_termination

    def extend_search_space(self, value: dict | list) -> None:
        """Add one sub-space (a ``SearchSpace``) or a list of them."""
        spaces = value if isinstance(value, (list, tuple)) else [value]
        for space in spaces:
            if not isinstance(space, dict):
                raise ConfigError(f"extend_search_space takes SearchSpace(...) objects, got {type(space).__name__}",
                                  field="search_space", value=repr(space))
            self.search_space.append(dict(space))

    def settings(self) -> dict[str, Any]:
        """The experiment mapping (as an experiment YAML would hold it)."""
        out = {k: v for k, v in self._settings.items() if v is not None}
        if self.limits:
            out["limits"] = dict(self.limits)
        if self.sweep:
            out["sweep"] = dict(self.sweep)
        if self.training_parameters:
            out["training_parameters"] = dict(self.training_parameters)
        if self.search_space:
            out["search_space"] = [dict(s) for s in self.search_space]
        if self.experiment_name:
            out["experiment_name"] = self.experiment_name
        return out

    def experiment_config(self):
        """The validated ``sweep.config.ExperimentConfig``."""
        from jupyter_avml.sweep.config import parse_experiment

        return parse_experiment(self.settings())

    def submit(self, workspace: Any = None):
        """``Experiment(workspace, experiment_name).submit(self)``: returns the parent run."""
        from jupyter_avml.automl._experiment import Experiment

        return Experiment(workspace, self.experiment_name or "automl-image").submit(self)

    def __repr__(self) -> str:
        return f"ImageJob({self.task.value}, {len(self.search_space)} sub-space(s), limits={self.limits})"


def data_path(value: Any) -> str | None:
    """A JSONL path from what the newer generation passes as data: a path, an ``Input(path=...)``, or an
    MLTable folder (its ``MLTable`` file names the JSONL file)."""
    if value is None:
        return None
    path = getattr(value, "path", value)
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise ConfigError(f"data must be a JSONL path (or an MLTable folder), got {type(value).__name__}",
                          field="training_data", value=repr(value))
    folder = Path(path)
    if folder.is_dir() and os.path.lexists(folder / "MLTable"):  # (a link to anything: read_config_file says what)
        return str(_mltable_file(folder / "MLTable"))
    return path


def _mltable_file(mltable: Path) -> Path:
    """The one JSONL file an MLTable file names (``paths: [{file: ./train.jsonl}]``)."""
    from jupyter_avml.config.loader import read_config_file

    data, lines = read_config_file(mltable, what="MLTable file")
    entries = data.get("paths")
    files = [e["file"] for e in entries if isinstance(e, dict) and isinstance(e.get("file"), str)] \
        if isinstance(entries, list) else []
    if len(files) != 1:
        raise ConfigError(f"expected one 'paths: - file: DATA.jsonl' entry, got {echo_value(entries)}", field="paths",
                          value=entries, source=str(mltable), line=lines.get("paths"))
    file = Path(files[0].removeprefix("file://"))
    return file if file.is_absolute() else (mltable.parent / file).resolve()


def _builder(task: ImageTask):
    def build(*, training_data: Any, target_column_name: str = "label", primary_metric: Any = None,
              validation_data: Any = None, validation_data_size: float | None = None, **kwargs: Any) -> ImageJob:
        return ImageJob(task, training_data=training_data, target_column_name=target_column_name,
                        primary_metric=primary_metric, validation_data=validation_data,
                        validation_data_size=validation_data_size, **kwargs)

    build.__doc__ = (f"An AutoML job of the task {task.value} (``ImageJob``). ``training_data``: a JSONL path, "
                     f"an ``Input(path=...)`` or an MLTable folder; ``validation_data_size`` is ``split_ratio``; "
                     f"``compute``, ``experiment_name``, ``tags`` as in the cloud SDK.")
    return build


image_classification = _builder(ImageTask.IMAGE_CLASSIFICATION)
image_classification_multilabel = _builder(ImageTask.IMAGE_CLASSIFICATION_MULTILABEL)
image_object_detection = _builder(ImageTask.IMAGE_OBJECT_DETECTION)
image_instance_segmentation = _builder(ImageTask.IMAGE_INSTANCE_SEGMENTATION)
for _name, _fn in (("image_classification", image_classification),
                   ("image_classification_multilabel", image_classification_multilabel),
                   ("image_object_detection", image_object_detection),
                   ("image_instance_segmentation", image_instance_segmentation)):
    _fn.__name__ = _fn.__qualname__ = _name
