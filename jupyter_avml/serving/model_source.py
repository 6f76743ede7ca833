"""The model a service (or ``avml predict``/``score``) serves: what MODEL names, and its predictors.

MODEL is, in this order: a registered model URI ``models:/NAME/VERSION`` (or ``/latest``); a path (a
``model.pt``, a run's ``outputs`` or run folder, an MLflow model folder, an ONNX export folder); a run id of the
workspace (or a unique prefix of 6+ characters); the name of a registered model (its latest version).

A ``ServedModel`` loads the model once with its own settings (the training values) and keeps up to
``cache_size`` more predictors for the per-request settings asked most recently (loading one is a model build:
per-request settings are for trying a threshold, not for changing it on every request).
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from jupyter_avml.errors import ConfigError, NotFoundError
from jupyter_avml.serving.errors import RequestError, bad_request

# What a run id or a registered model's name may look like (anything else is taken as a path).
_RUN_OR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def resolve_model_reference(reference: str | os.PathLike, workspace=None) -> str:
    """What ``load_model`` should be given for MODEL (see the module docstring); ``NotFoundError`` naming
    what was tried otherwise."""
    text = os.fspath(reference).strip()
    if not text:
        raise NotFoundError("no model given: name a run id, a path, models:/NAME/VERSION or a registered model")
    if text.startswith("models:/"):
        return text
    path = Path(text).expanduser()
    if path.exists():
        return str(path.resolve())
    if not _RUN_OR_NAME.match(text):
        raise NotFoundError(f"no model at {path} (no such file or folder)")
    from jupyter_avml.runs.folder import find_run_dir
    from jupyter_avml.workspace import Workspace

    ws = Workspace.resolve(workspace)
    try:
        return str(find_run_dir(ws, text))
    except NotFoundError:
        pass
    from jupyter_avml.tracking.model_registry import list_registered_models

    names = [m["name"] for m in list_registered_models(ws)]
    if text in names:
        return f"models:/{text}/latest"
    known = f"registered models: {', '.join(names)}" if names else "no registered models"
    raise NotFoundError(f"{text!r} is not a file, a run of {ws.root} or a registered model ({known}); "
                        f"give a path, a run id or models:/NAME/VERSION")


def setting_names(predictor) -> tuple[str, ...]:
    """The inference settings a predictor's model takes (its family's, for PyTorch and ONNX alike)."""
    from jupyter_avml.models.families import get_family

    return tuple(get_family(predictor.config.model_spec.family).inference_settings)


def settings_of(predictor) -> dict[str, Any]:
    """``{setting: value}`` of a predictor (the values it predicts with)."""
    return {name: _plain(getattr(predictor.config, name, None)) for name in setting_names(predictor)}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class ServedModel:
    """A model and its predictors by settings.

    Parameters
    ----------
    reference:
        MODEL (see the module docstring).
    workspace:
        Where run ids and registered names are looked up.
    device:
        ``cpu``, ``cuda``, ``auto``...
    cache_size:
        Predictors kept for per-request settings, besides the default one.
    """

    def __init__(self, reference: str | os.PathLike, *, workspace=None, device: str = "auto", cache_size: int = 4):
        from jupyter_avml.inference.predictor import load_model

        self.reference = os.fspath(reference)
        self.workspace = workspace
        self.device = device
        self.cache_size = int(cache_size)
        self.source = resolve_model_reference(reference, workspace)
        self.default = load_model(self.source, device=device, workspace=workspace)
        self.names = setting_names(self.default)
        self.defaults = settings_of(self.default)
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def task(self) -> str:
        return self.default.task.value

    @property
    def labels(self) -> list[str]:
        return list(self.default.class_names)

    def settings_key(self, settings: dict[str, Any]) -> tuple:
        """The canonical form of per-request settings: ``()`` for the model's own; ``RequestError`` 400 for
        an unknown setting or a value outside its range (the message gives the range)."""
        if not settings:
            return ()
        unknown = sorted(set(settings) - set(self.names))
        if unknown:
            raise bad_request("unknown_setting", f"{unknown[0]} is not an inference setting of this {self.task} "
                                                 f"model; its settings: {', '.join(self.names)}")
        from jupyter_avml.config import AutoMLImageConfig

        try:
            config = AutoMLImageConfig.from_dict({**self.default.config.to_dict(), **settings})
        except ConfigError as exc:
            raise bad_request("bad_setting", exc.message if getattr(exc, "message", None) else str(exc)) from None
        changed = {name: getattr(config, name) for name in settings}
        return tuple(sorted((k, _hashable(v)) for k, v in changed.items() if _plain(v) != self.defaults.get(k)))

    def predictor(self, key: tuple):
        """The predictor for a ``settings_key`` (loaded on first use; call it off the event loop)."""
        if not key:
            return self.default
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        from jupyter_avml.inference.predictor import load_model

        try:
            predictor = load_model(self.source, device=self.device, workspace=self.workspace,
                                   **{k: _plain(v) for k, v in key})
        except ConfigError as exc:  # e.g. a setting an ONNX export fixed at export time
            raise bad_request("bad_setting", str(exc)) from None
        with self._lock:
            self._cache[key] = predictor
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return predictor

    def predict(self, key: tuple, images: list) -> list[dict[str, Any]]:
        """Predictions for PIL RGB images with the settings ``key`` names."""
        return self.predictor(key).predict(list(images))

    def metadata(self) -> dict[str, Any]:
        """What ``GET /metadata`` says: task, labels, settings with their ranges, versions."""
        from jupyter_avml import __version__
        from jupyter_avml.config.params import PARAMS

        settings = {}
        for name in self.names:
            param = PARAMS.get(name)
            settings[name] = {"default": self.defaults.get(name),
                              "range": param.range_text() if param is not None else None,
                              "doc": param.doc if param is not None else None}
        return {"task": self.task, "model_name": self.default.model_name, "labels": self.labels,
                "settings": settings, "model": self.reference, "source": self.source,
                "runtime": getattr(self.default, "runtime", "pytorch"),
                "version": {"jupyter_avml": __version__, "model": _model_version(self.source)}}


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _model_version(source: str) -> str | None:
    """``NAME/VERSION`` of a registered model, else None."""
    if source.startswith("models:/"):
        return source[len("models:/"):].rstrip("/")
    return None


def as_request_error(exc: BaseException) -> RequestError | None:
    """A prediction failure that is the request's fault (an image the model cannot read) as a 400."""
    from jupyter_avml.errors import DataError

    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, (DataError, ConfigError)):
        return bad_request("bad_image" if isinstance(exc, DataError) else "bad_setting", str(exc))
    return None
