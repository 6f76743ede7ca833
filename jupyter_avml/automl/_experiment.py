"""``Workspace`` and ``Experiment`` as the cloud SDK spells them: ``Experiment(ws, name).submit(config)``.

In the cloud system an experiment is a named group of runs: submitting twice adds a second parent run. Here
an experiment folder holds one sweep, so each ``submit`` creates the sweep ``<name>`` if it is free, else
``<name>-2``, ``<name>-3``...; ``get_runs()`` lists them all. The parent run's ``id`` is that sweep's name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from jupyter_avml.config.loader import echo_value
from jupyter_avml.errors import ConfigError
from jupyter_avml.workspace import Workspace as _Workspace

__all__ = ["Workspace", "Experiment"]

MAX_SUBMISSIONS = 10_000


class Workspace(_Workspace):
    """The workspace folder (``jupyter_avml.workspace.Workspace``) with the cloud SDK's constructor."""

    @classmethod
    def from_config(cls, path: str | os.PathLike | None = None, **_ignored: Any) -> Workspace:
        """The workspace at ``path``: a folder (default: ``$AVML_WORKSPACE``, else ``./avml-workspace``).

        The cloud reads a ``config.json`` naming a subscription; here the workspace is a local folder, so
        ``path`` names it (``auth`` and the other cloud arguments are ignored).
        """
        return cls.resolve(path)


class Experiment:
    """A named experiment of a workspace: ``Experiment(ws, "name").submit(config)`` starts a sweep.

    Parameters
    ----------
    workspace:
        A ``Workspace``, a folder path, or None (``$AVML_WORKSPACE`` or ``./avml-workspace``).
    name:
        1-95 letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit.
    """

    def __init__(self, workspace: Any = None, name: str | None = None, **_ignored: Any):
        from jupyter_avml.sweep.experiment import NAME_RE

        if name is None:
            raise ConfigError("Experiment(workspace, name): name is required", field="name")
        if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > 95:
            raise ConfigError(f"experiment name must be 1-95 letters, digits, '.', '_' or '-' (starting with a letter "
                              f"or digit), got {echo_value(name, 120)}", field="name", value=name)
        self.name = name
        self.workspace = Workspace.resolve(workspace)

    def submit(self, config: Any, tags: Mapping[str, Any] | None = None, **_ignored: Any):
        """Validate ``config`` and start it in the background; returns the parent run (``AutoMLRun``) at once.

        ``config`` is an ``AutoMLImageConfig``, a job of the newer generation (``image_classification(...)``),
        a mapping of experiment settings or an experiment YAML path. Call ``run.wait_for_completion()`` to
        wait for it.

        Raises
        ------
        ConfigError, DataError
            as ``avml sweep`` would: the configuration or the data cannot train any child.
        """
        from jupyter_avml.automl._config import AutoMLImageConfig, experiment_settings
        from jupyter_avml.automl._jobs import ImageJob
        from jupyter_avml.automl._runs import AutoMLRun
        from jupyter_avml.sweep.config import parse_experiment
        from jupyter_avml.sweep.experiment import Experiment as Sweep

        if isinstance(config, ImageJob):
            config = config.to_config()
        if isinstance(config, AutoMLImageConfig):
            spec = config.experiment_config
        elif isinstance(config, Mapping):
            spec = parse_experiment(experiment_settings(config))
        else:
            spec = parse_experiment(config)
        for attempt in range(1, MAX_SUBMISSIONS + 1):
            name = self.name if attempt == 1 else f"{self.name}-{attempt}"
            sweep = Sweep(name, self.workspace)
            if (self.workspace.experiments_dir / name).exists():
                continue
            try:
                handle = sweep.submit(spec)
            except ConfigError as exc:
                if exc.field == "name" and (self.workspace.experiments_dir / name).exists():
                    continue  # taken meanwhile by another submission
                raise
            return AutoMLRun(handle, self)
        raise ConfigError(f"experiment {self.name!r} has {MAX_SUBMISSIONS} runs already; use another name",
                          field="name", value=self.name)

    def get_runs(self) -> list:
        """The parent runs submitted under this name, oldest first."""
        from jupyter_avml.automl._runs import AutoMLRun
        from jupyter_avml.sweep.experiment import ExperimentHandle, list_experiments

        pattern = re.compile(re.escape(self.name) + r"(-\d+)?")
        return [AutoMLRun(ExperimentHandle(state.name, self.workspace), self)
                for state in list_experiments(self.workspace) if pattern.fullmatch(state.name)]

    def __repr__(self) -> str:
        return f"Experiment(workspace={str(self.workspace.root)!r}, name={self.name!r})"
