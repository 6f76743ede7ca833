"""The runs of a submitted experiment, with the cloud SDK's methods: the parent ``AutoMLRun`` and child ``Run``s.

The parent is a sweep (``sweep.ExperimentHandle``); every method reads the sweep's files afresh, so a run
object stays right while the sweep goes on and after a kernel restart (``Experiment.get_runs``). A child is
one configuration: its files are its run folder (``<workspace>/runs/<run_id>/``), its model
``outputs/model.pt``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from jupyter_avml.config.loader import echo_value
from jupyter_avml.errors import AvmlError, ConfigError, NotFoundError

__all__ = ["AutoMLRun", "Run", "RegisteredModel"]

MODEL_PATH = "outputs/model.pt"


@dataclass(frozen=True)
class RegisteredModel:
    """A version of a registered model (the cloud SDK's ``Model``).

    Load it with ``load_model(task, model.download())``, or ``load_model(task, model.uri, workspace=ws)``.
    """

    name: str
    version: int
    run_id: str
    tags: dict[str, str] = field(default_factory=dict)
    workspace: str | None = None

    @property
    def id(self) -> str:
        """``NAME:VERSION``, as the cloud SDK writes a model id."""
        return f"{self.name}:{self.version}"

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``: what ``load_model`` and ``avml`` take."""
        return f"models:/{self.name}/{self.version}"

    def download(self, target_dir: str | os.PathLike = ".", exist_ok: bool = False, **_ignored: Any) -> str:
        """Copy the model file into ``target_dir`` as ``model.pt``; returns its path.

        Raises ``ConfigError`` when the file is there already, unless ``exist_ok``.
        """
        from jupyter_avml.tracking.registry import download_registered_model

        source = download_registered_model(self.uri, self.workspace)
        target = Path(target_dir) / "model.pt"
        if target.exists() and not exist_ok:
            raise ConfigError(f"{target} exists; pass exist_ok=True to replace it", field="target_dir",
                              value=str(target_dir))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return str(target)


class Run:
    """One child of an experiment: one configuration, trained as one run.

    Parameters
    ----------
    parent:
        The ``AutoMLRun`` it belongs to.
    child_id:
        Its number in the experiment (0, 1, ...).
    """

    def __init__(self, parent: AutoMLRun, child_id: int):
        self.parent = parent
        self.child_id = int(child_id)

    # -- what it is -------------------------------------------------------------------------------------
    @property
    def _child(self):
        return self.parent.handle.state.child(self.child_id)

    @property
    def id(self) -> str:
        """The run id (the MLflow run id and the run folder's name); ``<experiment>_<n>`` before it starts."""
        return self._child.run_id or f"{self.parent.id}_{self.child_id}"

    @property
    def status(self) -> str:
        return self._child.status

    def get_status(self) -> str:
        """``queued``, ``running``, ``completed``, ``early_terminated``, ``stopped``, ``failed`` or ``invalid``."""
        return self.status

    @property
    def properties(self) -> dict[str, Any]:
        """``model_name``, ``score`` (its best primary metric), ``primary_metric``, ``iteration`` (its number),
        ``status``, ``best_epoch``, and the sampled ``hyperparameters``."""
        child, state = self._child, self.parent.handle.state
        return {"model_name": child.model_name or str(child.params.get("model_name", "")),
                "score": child.best_value, "primary_metric": state.primary_metric, "iteration": child.id,
                "status": child.status, "best_epoch": child.best_epoch, "hyperparameters": dict(child.params),
                "run_id": child.run_id}

    @property
    def run_dir(self) -> Path:
        """The run folder (raises ``NotFoundError`` before the child started)."""
        child = self._child
        if not child.run_id:
            raise NotFoundError(f"child {self.child_id} of experiment {self.parent.id!r} has not started yet "
                                f"(status {child.status}): it has no files")
        return self.parent.workspace.run_dir(child.run_id)

    # -- metrics and files ------------------------------------------------------------------------------
    def get_metrics(self, name: str | None = None) -> dict[str, Any]:
        """Metrics by name: a list with one value per evaluated epoch (one value: the value itself), as the
        cloud SDK returns metrics logged once per epoch. ``train_loss`` and ``learning_rate`` are per epoch.

        ``name`` keeps that metric only. Before the run writes its outputs, the primary metric of each
        evaluated epoch comes from the experiment's state.
        """
        series: dict[str, list[Any]] = {}
        history = _read_json(self.run_dir / "outputs" / "metrics.json").get("per_epoch") if self._child.run_id \
            else None
        if isinstance(history, list):
            for entry in history:
                if not isinstance(entry, dict):
                    continue
                for key in ("train_loss", "learning_rate"):
                    if isinstance(entry.get(key), (int, float)):
                        series.setdefault(key, []).append(entry[key])
                for key, value in (entry.get("metrics") or {}).items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        series.setdefault(key, []).append(value)
        else:
            metric = self.parent.handle.state.primary_metric
            values = [value for _, value in self._child.metric_history]
            if values:
                series[metric] = values
        out = {key: (values[0] if len(values) == 1 else values) for key, values in series.items()}
        if name is not None:
            return {name: out[name]} if name in out else {}
        return out

    def get_file_names(self) -> list[str]:
        """Every file of the run folder, as paths relative to it (``outputs/model.pt``...), sorted."""
        root = self.run_dir
        if not root.is_dir():
            return []
        return sorted(path.relative_to(root).as_posix() for path in root.rglob("*")
                      if path.is_file() and not path.name.startswith(".") and _inside(path, root))

    def download_file(self, name: str, output_file_path: str | os.PathLike | None = None, **_ignored: Any) -> str:
        """Copy the run's file ``name`` (e.g. ``outputs/model.pt``) to ``output_file_path`` (a file or an
        existing folder; default: the current folder, same file name). Returns the path written.

        Raises ``NotFoundError`` listing the run's files when it has no such file.
        """
        source = self._file(name)
        target = Path(output_file_path) if output_file_path is not None else Path(source.name)
        if target.is_dir():
            target = target / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return str(target)

    def download_files(self, prefix: str = "", output_directory: str | os.PathLike | None = None,
                       append_prefix: bool = True, **_ignored: Any) -> list[str]:
        """Copy every file whose name starts with ``prefix`` into ``output_directory`` (default: the current
        folder), keeping the relative paths (without ``prefix`` when ``append_prefix`` is false)."""
        out_dir = Path(output_directory) if output_directory is not None else Path.cwd()
        written = []
        for name in self.get_file_names():
            if not name.startswith(prefix):
                continue
            relative = name if append_prefix or not prefix else name[len(prefix):].lstrip("/")
            written.append(self.download_file(name, out_dir / relative))
        return written

    def _file(self, name: str) -> Path:
        text = str(name).replace("\\", "/").lstrip("/")
        parts = PurePosixPath(text).parts
        root = self.run_dir
        # Only the run's own files: no "..", and no link that leads out of the run folder.
        if not parts or ".." in parts or not _is_file_inside(root / text, root):
            names = self.get_file_names()
            shown = ", ".join(names[:20]) + (f" ... ({len(names)} files)" if len(names) > 20 else "")
            raise NotFoundError(f"run {self.id} has no file {echo_value(name)} (files: {shown or 'none yet'})")
        return root / text

    # -- the model --------------------------------------------------------------------------------------
    def register_model(self, model_name: str, model_path: str = MODEL_PATH, tags: dict[str, Any] | None = None,
                       properties: dict[str, Any] | None = None, description: str | None = None,
                       **_ignored: Any) -> RegisteredModel:
        """Register this run's model in the workspace's model registry as a new version of ``model_name``.

        ``model_path`` is the run's model file, ``outputs/model.pt``. ``tags`` and ``properties`` become tags
        of the version. Load it back with ``load_model(model.uri)``.
        """
        from jupyter_avml.tracking.registry import register_run_model

        if str(model_path).replace("\\", "/").strip("/") != MODEL_PATH:
            self._file(model_path)  # a file that does not exist is named as such first
            raise ConfigError(f"model_path {echo_value(model_path)}: the model of a run is {MODEL_PATH} (the file "
                              f"load_model reads); register that one", field="model_path", value=model_path)
        self._file(MODEL_PATH)
        extra = {**(properties or {}), **(tags or {}), "avml.experiment": self.parent.id,
                 "avml.child": self.child_id}
        version = register_run_model(self._child.run_id, model_name, workspace=self.parent.workspace,
                                     tags=extra, description=description)
        return RegisteredModel(model_name, version, self._child.run_id, {k: str(v) for k, v in extra.items()},
                               str(self.parent.workspace.root))

    def get_details(self) -> dict[str, Any]:
        child = self._child
        return {"runId": self.id, "status": child.status, "properties": self.properties, "reason": child.reason,
                "error": child.error, "startTime": child.started, "endTime": child.ended}

    def __repr__(self) -> str:
        child = self._child
        score = "" if child.best_value is None else f", score={child.best_value:.4f}"
        return f"Run(experiment={self.parent.id!r}, child={child.id}, {child.model_name or '?'}, {child.status}{score})"


class AutoMLRun:
    """The parent run of a submitted experiment: its children, its best child, waiting for it.

    ``handle`` is the sweep (``jupyter_avml.sweep.ExperimentHandle``) for everything else: ``stop``,
    ``resume``, ``children`` (a DataFrame), ``observed_state``...
    """

    def __init__(self, handle, experiment=None):
        self.handle = handle
        self.experiment = experiment

    @property
    def id(self) -> str:
        """The experiment's name in the workspace (``experiments/<id>``)."""
        return self.handle.name

    @property
    def workspace(self):
        return self.handle.workspace

    @property
    def status(self) -> str:
        """The state's status; ``interrupted`` when unfinished with no driver (``handle.resume()`` goes on)."""
        return self.handle.status

    def get_status(self) -> str:
        return self.status

    @property
    def properties(self) -> dict[str, Any]:
        state = self.handle.state
        return {"task": state.task, "primary_metric": state.primary_metric, "sampling": state.sampling,
                "iterations": state.iterations, "best_child": state.best_child, "parent_run_id": state.parent_run_id}

    def wait_for_completion(self, show_output: bool = False, wait_post_processing: bool = False,
                            raise_on_error: bool = True, timeout: float | None = None) -> dict[str, Any]:
        """Block until the experiment ends; returns ``get_details()``.

        With ``show_output`` the live dashboard is shown in a notebook (a leaderboard printed as it changes in
        a terminal). ``wait_post_processing`` is accepted for the cloud signature (nothing runs after the last
        child here). With ``raise_on_error`` an experiment that ended without any model (every child failed
        or was invalid) raises ``AvmlError`` with the first child's error.
        """
        handle = self.handle
        if show_output and _in_notebook():
            from IPython.display import display

            from jupyter_avml.dashboard import open_dashboard

            display(open_dashboard(handle.name, handle.workspace, controller=handle))
            state = handle.wait(timeout=timeout)
        elif show_output:
            from jupyter_avml.cli.sweep import follow

            state = follow(handle) if timeout is None else handle.wait(timeout=timeout)
        else:
            state = handle.wait(timeout=timeout)
        if raise_on_error and not state.succeeded:
            errors = [c.error for c in state.children if c.error]
            first = f"; first error: {errors[0].splitlines()[0]}" if errors else ""
            counts = ", ".join(f"{v} {k}" for k, v in sorted(state.counts().items())) or "no children"
            raise AvmlError(f"experiment {self.id!r} ended {state.status} without a model ({counts}){first}")
        return self.get_details()

    def get_details(self) -> dict[str, Any]:
        state = self.handle.state
        return {"runId": self.id, "status": state.status, "properties": self.properties, "reason": state.reason,
                "error": state.error, "startTime": state.started, "endTime": state.ended,
                "children": state.counts()}

    def get_children(self) -> list[Run]:
        """Every child, in order."""
        return [Run(self, child.id) for child in self.handle.state.children]

    def get_best_child(self, metric: str | None = None) -> Run:
        """The child with the best primary metric among those that finished with a model.

        ``metric`` may name the primary metric only (another one is refused, as the spec refuses another
        primary metric). Raises ``NotFoundError`` when no child has a model yet.
        """
        state = self.handle.state
        if metric is not None and str(metric).strip().lower() != state.primary_metric:
            raise ConfigError(f"get_best_child: the best child is chosen by the primary metric {state.primary_metric}"
                              f", got metric={echo_value(metric)}", field="metric", value=metric)
        return Run(self, self.handle.get_best_child().child_id)

    def register_model(self, model_name: str, description: str | None = None, tags: dict[str, Any] | None = None,
                       **_ignored: Any) -> RegisteredModel:
        """Register the best child's model (``get_best_child().register_model(...)``)."""
        return self.get_best_child().register_model(model_name, tags=tags, description=description)

    def cancel(self) -> bool:
        """Stop the experiment cleanly (its running children stop; finished ones keep their models)."""
        return self.handle.stop("canceled by user")

    def __repr__(self) -> str:
        return f"AutoMLRun({self.handle!r})"


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, links resolved, lies inside ``root``."""
    return path.resolve().is_relative_to(root.resolve())


def _is_file_inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is a file inside ``root`` (False for names the file system refuses, e.g. too long)."""
    try:
        return path.is_file() and _inside(path, root)
    except (OSError, ValueError):
        return False


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (a widget can be shown)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
