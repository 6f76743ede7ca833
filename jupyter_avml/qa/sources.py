"""What the QA verbs are pointed at: a model (run, experiment child, registered model, file) or a dataset.

``resolve_model`` turns what the user typed into a ``ModelSource``: the path ``load_model`` loads, and the name
of the FiftyOne field its predictions go to, named after the run (``MODEL_RUNID8``, e.g. ``resnet18_7031584e``),
so the same run reached as a run id or as an experiment's child fills the same field, and two runs sit side by
side on the same samples. Registered models are named ``NAME_vVERSION``; a bare model file
``MODEL_FILEHASH8``.

``resolve_target`` is ``review``'s: a DATASET, an EXPERIMENT (its best child, or ``child``) or a RUN; for the
last two, the dataset is the run's ``training_data``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from jupyter_avml.errors import ConfigError, NotFoundError
from jupyter_avml.workspace import Workspace


@dataclass(frozen=True)
class ModelSource:
    """A model to predict with.

    ``path``: what ``load_model`` takes (a model file, a run folder or ``models:/NAME/VERSION``); ``field``:
    the FiftyOne field of its predictions; ``description``: how messages name it; ``run_id`` and
    ``experiment``/``child`` when known.
    """

    path: str
    field: str
    description: str
    run_id: str | None = None
    experiment: str | None = None
    child: int | None = None


def resolve_model(model, *, child: int | None = None,
                  workspace: str | os.PathLike | Workspace | None = None) -> ModelSource:
    """The ``ModelSource`` of ``model``: an experiment name (its best child, or ``child``), a run id (or a
    unique prefix of 6+ characters), ``models:/NAME/VERSION``, a ``BestChild``, or a model file / run folder.

    Raises
    ------
    NotFoundError : nothing of that name (the message says where to look); the experiment has no such child,
        or no child that finished with a model yet.
    """
    if isinstance(model, ModelSource):
        return model
    ws = Workspace.resolve(workspace)
    if hasattr(model, "run_id") and hasattr(model, "model_path") and hasattr(model, "child_id"):  # a BestChild
        return _run_source(ws, model.run_id, Path(model.model_path), model.model_name, child=model.child_id)
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigError(f"expected a run id, an experiment, models:/NAME/VERSION or a model file, got "
                          f"{type(model).__name__}", field="model", value=repr(model))
    text = os.fspath(model)
    if text.startswith("models:/"):
        from jupyter_avml.tracking.registry import parse_model_uri

        name, version = parse_model_uri(text)
        return ModelSource(text, f"{slug(name)}_v{version}", f"registered model {name} version {version}")
    experiment = _experiment(text, ws)
    if experiment is not None:
        return _child_source(experiment, child, ws)
    if child is not None:
        raise ConfigError(f"--child {child}: {text!r} is not an experiment of {ws.root} (child applies to an "
                          f"experiment)", field="child", value=child)
    run_dir = _run_dir(ws, text)
    if run_dir is not None:
        return _run_source(ws, run_dir.name, run_dir / "outputs" / "model.pt", None)
    path = Path(text).expanduser()
    if path.exists():
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
        return ModelSource(str(path), f"{slug(_model_name_of(path) or 'model')}_{digest}", f"model {path}")
    raise NotFoundError(f"{text!r} is not an experiment, a run, a registered model or a model file of {ws.root} "
                        f"(see `avml list`, `avml runs list`)")


def slug(text: str) -> str:
    """``text`` as a FiftyOne field name: letters, digits and ``_``, starting with a letter."""
    out = re.sub(r"[^A-Za-z0-9_]+", "_", str(text)).strip("_") or "model"
    return out if out[0].isalpha() else f"m_{out}"


def _experiment(name: str, ws: Workspace):
    from jupyter_avml.sweep import attach

    try:
        return attach(name, ws)
    except (NotFoundError, ConfigError, ValueError):
        return None


def _child_source(handle, child: int | None, ws: Workspace) -> ModelSource:
    if child is None:
        best = handle.get_best_child()  # none yet: NotFoundError saying so
        return _run_source(ws, best.run_id, Path(best.model_path), best.model_name, experiment=handle.name,
                           child=best.child_id)
    state = handle.state
    found = [c for c in state.children if c.id == child]
    if not found:
        listing = ", ".join(str(c.id) for c in state.children) or "none yet"
        raise NotFoundError(f"experiment {handle.name!r} has no child {child} (children: {listing})")
    entry = found[0]
    model_path = Path(entry.model_path) if entry.model_path else (
        ws.run_dir(entry.run_id) / "outputs" / "model.pt" if entry.run_id else None)
    if model_path is None or not model_path.is_file():
        raise NotFoundError(f"child {child} of experiment {handle.name!r} has no model ({entry.status}); review "
                            f"a child that finished with one, or the best child (no --child)")
    return _run_source(ws, entry.run_id, model_path, entry.model_name, experiment=handle.name, child=child)


def _run_source(ws: Workspace, run_id: str, model_path: Path, model_name: str | None, *,
                experiment: str | None = None, child: int | None = None) -> ModelSource:
    if not model_path.is_file():
        raise NotFoundError(f"run {run_id} has no model file ({model_path}): it did not finish with a model")
    model_name = model_name or _model_name_of(model_path) or "model"
    where = f"child {child} of experiment {experiment} (run {run_id})" if experiment else f"run {run_id}"
    return ModelSource(str(model_path), f"{slug(model_name)}_{run_id[:8]}", f"{where}, {model_name}", run_id,
                       experiment, child)


def _run_dir(ws: Workspace, run_id: str) -> Path | None:
    """The folder of run ``run_id`` (a unique prefix of 6+ characters is enough), or None."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{6,64}", run_id):
        return None
    try:
        from jupyter_avml.runs import find_run_dir  # where run folders live once training is split in layers
    except ImportError:
        from jupyter_avml.training.run import find_run_dir
    try:
        return find_run_dir(ws, run_id)
    except NotFoundError as exc:
        if "matches" in str(exc):  # an ambiguous prefix: say so rather than "not found"
            raise
        return None


def _model_name_of(path: Path) -> str | None:
    """The ``model_name`` a run folder recorded (``run.json``), without loading the model."""
    import json

    folder = path.parent.parent if path.name == "model.pt" and path.parent.name == "outputs" else path
    try:
        return str(json.loads((folder / "run.json").read_text(encoding="utf-8")).get("model_name") or "") or None
    except (OSError, ValueError, AttributeError):
        return None


# -- review targets -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReviewTarget:
    """What ``review`` opens: the dataset (anything ``to_fiftyone`` takes), its task, and the model, if any."""

    dataset: object
    task: str | None
    model: ModelSource | None


def resolve_target(target, *, child: int | None = None, task: str | None = None,
                   workspace: str | os.PathLike | Workspace | None = None) -> ReviewTarget:
    """DATASET, EXPERIMENT or RUN -> ``ReviewTarget``. A model's dataset is its run's ``training_data``."""
    ws = Workspace.resolve(workspace)
    text = os.fspath(target) if isinstance(target, (str, os.PathLike)) else None
    if text is not None and not text.startswith("models:/") and _experiment(text, ws) is None \
            and _run_dir(ws, text) is None:
        if child is not None:
            raise ConfigError(f"--child {child}: {text!r} is not an experiment of {ws.root}", field="child",
                              value=child)
        return ReviewTarget(text, task, None)  # a dataset (to_fiftyone says when it is not one either)
    source = resolve_model(target, child=child, workspace=ws)
    config = _training_config(source, ws)
    return ReviewTarget(config["training_data"], config["task"], source)


def _training_config(source: ModelSource, ws: Workspace) -> dict:
    """``{"training_data": ..., "task": ...}`` of the run behind ``source``: its ``config.yaml`` when the run folder
    is known, else the configuration saved in the model file (``load_model``)."""
    from jupyter_avml.config import AutoMLImageConfig

    config_file = ws.run_dir(source.run_id) / "config.yaml" if source.run_id else None
    if config_file is not None and config_file.is_file():
        config = AutoMLImageConfig.from_yaml(config_file)
    else:
        from jupyter_avml import load_model

        config = load_model(source.path, device="cpu", workspace=ws).config
    return {"training_data": config.training_data, "task": config.task_type.value}
