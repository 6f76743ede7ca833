"""The cloud SDK's sampling objects (``azureml.train.hyperdrive``): a parameter space and how to sample it.

``GridParameterSampling({'model_name': choice('yolov5')})`` stands for the experiment settings
``{"sampling": "grid", "search_space": {...}}``: ``settings()`` gives them, and ``sweep.config`` reads them as
it reads a YAML file (one code path; the expressions are ``sweep.space``'s own objects). The space is checked
when the object is built, so an error points at the line that wrote it: an unknown expression, ``uniform``
under grid sampling, ``loguniform`` under Bayesian sampling.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from jupyter_avml.config.loader import echo_value
from jupyter_avml.errors import ConfigError

__all__ = ["HyperParameterSampling", "GridParameterSampling", "RandomParameterSampling",
           "BayesianParameterSampling"]


class HyperParameterSampling:
    """A parameter space and the sampling of it (base of the three samplings).

    Parameters
    ----------
    parameter_space:
        ``{parameter: expression}``: expressions are ``choice(...)``, ``uniform(...)``... (or their text);
        a fixed value stays fixed. A list of such mappings (or a ``choice`` of sub-space dicts) is a
        conditional space.
    properties:
        Accepted for the cloud signature; must be empty (the run setting ``seed`` seeds the sampler).
    """

    #: ``hyperparameter_sampling`` as the experiment configuration names it.
    sampling: ClassVar[str] = ""
    #: The cloud SDK's attribute.
    SAMPLING_NAME: ClassVar[str] = ""

    def __init__(self, parameter_space: Mapping[str, Any] | list, properties: Mapping[str, Any] | None = None):
        from jupyter_avml.sweep.cloud_settings import canonical_space
        from jupyter_avml.sweep.space import SearchSpace

        name = type(self).__name__
        if not isinstance(parameter_space, (Mapping, list, tuple)):
            raise ConfigError(f"{name}: parameter_space is a dict {{parameter: expression}}, got "
                              f"{type(parameter_space).__name__}", field="hyperparameter_sampling",
                              value=repr(parameter_space))
        if properties:
            raise ConfigError(f"{name}: properties {echo_value(dict(properties))} are not used here; the run setting "
                              f"seed seeds the sampler", field="properties", value=dict(properties))
        try:
            self.space = canonical_space(SearchSpace.from_config(parameter_space))
            self._check(self.space)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc.message}", field=exc.field, value=exc.value) from None
        self.parameter_space = parameter_space

    def _check(self, space) -> None:
        """The sampling's own rule on the space (spec section 9); raises ``ConfigError``."""

    def settings(self) -> dict[str, Any]:
        """The experiment settings this sampling stands for."""
        return {"sampling": self.sampling, "search_space": self.parameter_space}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.space.to_config()!r})"


class RandomParameterSampling(HyperParameterSampling):
    """Random sampling: any expression, and conditional spaces."""

    sampling = "random"
    SAMPLING_NAME = "RANDOM"


class GridParameterSampling(HyperParameterSampling):
    """Grid sampling: every combination of the ``choice`` values (only ``choice``, spec section 9)."""

    sampling = "grid"
    SAMPLING_NAME = "GRID"

    def _check(self, space) -> None:
        space.grid_size()  # each expression gives its grid values: anything but choice() raises


class BayesianParameterSampling(HyperParameterSampling):
    """Bayesian sampling (Optuna's TPE): ``choice``, ``uniform`` and ``quniform`` only (spec section 9)."""

    sampling = "bayesian"
    SAMPLING_NAME = "BayesianOptimization"

    def _check(self, space) -> None:
        from jupyter_avml.sweep.sampling import check_bayesian_space

        check_bayesian_space(space)
