"""The experiment settings that exist because users arrive from the cloud system (spec sections 1, 3 and 9).

* ``compute_target`` (required there, a GPU cluster): here children run on this machine, so it maps to the
  run setting ``device`` (``compute_target_device``); a cloud cluster is refused with what to use instead;
* ``primary_metric``: the task's own metric is accepted, another one is refused with the spec's message
  (``primary_metric_problem``);
* the newer generation's setting names (``config.params.ALIASES``) inside a search space
  (``canonical_space``);
* ``beyond_spec``: what an experiment does here that the cloud system refuses (shown by the dry run).

``sweep.config`` calls these while parsing, so YAML files and the Python API (``jupyter_avml.automl``) go
through the same code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jupyter_avml.config.loader import echo_value
from jupyter_avml.config.params import canonical_name
from jupyter_avml.errors import ConfigError

__all__ = ["LOCAL_TARGETS", "compute_target_device", "primary_metric_problem", "canonical_space", "beyond_spec",
           "apply"]

#: The ``compute_target`` values that mean "this machine, as ``device`` says".
LOCAL_TARGETS = ("local", "localhost")
_CHOICES = "'local' (this machine: its GPUs, or the CPU), 'cpu', 'cuda' or 'cuda:N'"


def compute_target_device(value: Any) -> str | None:
    """The ``device`` children get for a ``compute_target`` (None: this machine, ``device`` as configured).

    ``local``/``localhost`` -> None (``device`` decides: ``auto`` by default); ``cpu``, ``cuda``, ``cuda:N``,
    ``auto`` -> that device.

    Raises
    ------
    ConfigError
        for a cloud compute (a cluster name such as ``gpu-cluster``, or a compute object of the cloud SDK)
        and for ``ray``/``ray://...`` (not available yet), naming the value and what to use instead.
    """
    if not isinstance(value, str):
        name = getattr(value, "name", None)
        shown = f"{type(value).__name__} {echo_value(name, 60)}" if isinstance(name, str) else type(value).__name__
        raise ConfigError(f"compute_target is an object ({shown}), like a cloud compute target: those do not exist "
                          f"here, children run on this machine; use {_CHOICES}", field="compute_target", value=shown)
    text = value.strip().lower()
    if text in LOCAL_TARGETS:
        return None
    if re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        return text
    if text == "ray" or text.startswith("ray://"):
        raise ConfigError(f"compute_target {echo_value(value)}: a Ray cluster is the way to grow beyond this machine, "
                          f"but running children on one is not available yet; use {_CHOICES}",
                          field="compute_target", value=value)
    raise ConfigError(f"compute_target {echo_value(value)} looks like a cloud compute cluster, which does not exist "
                      f"here: children run on this machine; use {_CHOICES} (a Ray cluster is the way to grow, not "
                      f"available yet)", field="compute_target", value=value)


def primary_metric_problem(value: Any, task: str) -> str | None:
    """Why ``primary_metric`` cannot be used for ``task`` (None when it is the task's metric or not given).

    Case and ``_`` are ignored (the newer generation writes ``MeanAveragePrecision``); an enum's ``value``
    is read.
    """
    from jupyter_avml.tasks import ImageTask

    if value is None:
        return None
    expected = ImageTask.parse(task).primary_metric
    text = str(getattr(value, "value", value)).strip().lower().replace("_", "")
    if text == expected.replace("_", ""):
        return None
    return (f"primary_metric {echo_value(value)} is not supported for {ImageTask.parse(task).value}: its primary "
            f"metric is {expected} (another primary metric is not supported)")


def apply(data: Mapping[str, Any], fixed: dict[str, Any], task: str) -> None:
    """Check ``primary_metric`` and turn ``compute_target`` into ``fixed["device"]`` (in place).

    Raises
    ------
    ConfigError
        with ``field`` set to the key at fault.
    """
    problem = primary_metric_problem(data.get("primary_metric"), task)
    if problem:
        raise ConfigError(problem, field="primary_metric", value=data.get("primary_metric"))
    value = data.get("compute_target")
    if value is None:
        return
    device = compute_target_device(value)
    if device is None:
        return
    if "device" in fixed and str(fixed["device"]).strip().lower() != device:
        raise ConfigError(f"compute_target {value!r} runs children on {device!r} but device is set to "
                          f"{echo_value(fixed['device'])}; give one of them", field="compute_target", value=value)
    fixed["device"] = device


def canonical_space(space):
    """``space`` (a ``SearchSpace``) with the newer generation's parameter names renamed to ours.

    Raises
    ------
    ConfigError
        when a sub-space names one setting twice (by both names); ``field`` is the newer name.
    """
    from jupyter_avml.sweep.space import SearchSpace

    subspaces = []
    for sub in space.subspaces:
        renamed: dict[str, Any] = {}
        given_as: dict[str, str] = {}
        for key, expr in sub.items():
            name = canonical_name(key)
            if name in renamed:
                newer = key if key != name else given_as[name]
                raise ConfigError(f"{newer} is another name of {name}; give one of them", field=newer,
                                  value=str(expr))
            renamed[name], given_as[name] = expr, key
        subspaces.append(renamed)
    return SearchSpace(subspaces)


def beyond_spec(config) -> list[str]:
    """What experiment ``config`` (an ``ExperimentConfig``) does that the cloud system would refuse.

    Each is allowed here on purpose (docs/porting.md); the dry run lists them so that a user who ports the
    experiment back knows what to change.
    """
    notes = []
    if config.space.is_conditional and config.sampling in ("grid", "bayesian"):
        notes.append(f"{config.sampling} sampling of a conditional space (the cloud system samples one only at "
                     f"random)")
    if config.sampling == "bayesian" and config.has_policy:
        notes.append("bayesian sampling with an early termination policy (the cloud system refuses the pair)")
    if (config.policy_config or {}).get("type") == "median_stopping":
        notes.append("median stopping compares a run with the median of the OTHER runs' running averages (the "
                     "cloud system's median includes the run itself)")
    return notes
