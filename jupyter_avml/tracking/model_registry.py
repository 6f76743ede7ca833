"""The MLflow Model Registry: register a run's model (``register_run_model``, by run id), get it back by URI.

A registered model ``NAME`` has versions 1, 2, ... Each version points at the run's ``outputs`` artifact folder,
an MLflow pyfunc model around ``model.pt`` (``serving.packaging``), so that
``mlflow.pyfunc.load_model("models:/NAME/VERSION")`` loads it. A version carries tags a deployment needs without
opening the file: ``task``, ``model_name``, ``primary_metric``, ``primary_metric_value``, ``labels`` (the class
names, JSON), ``config`` (the resolved configuration, JSON) and the caller's tags (a sweep adds
``avml.experiment``/``avml.child`` for its best child: resolving an experiment to a run is the sweep's job, this
module knows runs only).

``load_model("models:/NAME/VERSION")`` (or ``models:/NAME/latest``) resolves through
``download_registered_model``: the artifact's ``model.pt`` itself when it is local, else a copy downloaded into
``<workspace>/cache/models/NAME/VERSION/``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from jupyter_avml.errors import ConfigError, NotFoundError
from jupyter_avml.workspace import Workspace

__all__ = ["register_run_model", "download_registered_model", "list_registered_models", "parse_model_uri"]

MODEL_ARTIFACT = "outputs/model.pt"
_URI_RE = re.compile(r"^models:/(?P<name>[^/]+)/(?P<version>[^/]+)/?$")


def _tracker(workspace: Workspace, tracking_uri: str | None = None):
    from jupyter_avml.tracking.store import Tracker

    return Tracker(workspace, tracking_uri)


def register_run_model(run_id: str, name: str, *, workspace: str | os.PathLike | Workspace | None = None,
                       tags: dict[str, Any] | None = None, description: str | None = None) -> int:
    """Register the model of run ``run_id`` (a unique prefix of 6+ characters is enough) as a new version of
    ``name``; ``tags`` are added to the version's tags. Returns the version number (1, 2, ...)."""
    from jupyter_avml.runs.folder import find_run_dir, read_run_json

    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise ConfigError(f"a registered model name is a non-empty string without '/', got {name!r}",
                          field="model_name", value=name)
    ws = Workspace.resolve(workspace)
    extra_tags = dict(tags or {})
    run_dir = find_run_dir(ws, run_id)
    run_id = run_dir.name
    model_file = run_dir / MODEL_ARTIFACT
    if not model_file.is_file():
        raise NotFoundError(f"run {run_id} has no model file ({model_file})")
    info = read_run_json(run_dir)
    config = _read_yaml(run_dir / "config.yaml")
    labels = _read_json(run_dir / "outputs" / "labels.json", [])
    metrics = _read_json(run_dir / "outputs" / "metrics.json", {})
    tracker = _tracker(ws, config.get("tracking_uri"))
    client = tracker.client
    from jupyter_avml.serving.packaging import logged_mlflow_model

    source = logged_mlflow_model(tracker, run_id, model_file.parent)  # the outputs folder: an MLflow model

    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, tags={"task": info.get("task") or config.get("task", "")})
        except MlflowException:  # created meanwhile by another process
            client.get_registered_model(name)
    value = info.get("primary_metric_value", metrics.get("primary_metric_value"))
    tags = {
        "task": info.get("task") or config.get("task", ""),
        "model_name": info.get("model_name") or config.get("model_name", ""),
        "primary_metric": info.get("primary_metric") or metrics.get("primary_metric", ""),
        "primary_metric_value": "" if value is None else repr(float(value)),
        "labels": json.dumps(labels),
        "config": json.dumps(config, default=str),
        "avml.run_id": run_id,
        **{k: str(v) for k, v in extra_tags.items()},
    }
    version = client.create_model_version(name, source, run_id=run_id, tags=tags, description=description)
    return int(version.version)


def parse_model_uri(uri: str) -> tuple[str, str]:
    """``models:/NAME/VERSION`` or ``models:/NAME/latest`` -> ``(NAME, VERSION or "latest")``."""
    match = _URI_RE.match(str(uri).strip())
    if not match:
        raise ConfigError(f"a registered model URI is models:/NAME/VERSION or models:/NAME/latest, got {uri!r}",
                          field="model_uri", value=uri)
    version = match.group("version")
    if version.lower() != "latest" and not version.isdigit():
        raise ConfigError(f"model version must be a number or 'latest', got {version!r} in {uri!r}",
                          field="model_uri", value=uri)
    return unquote(match.group("name")), version.lower()


def download_registered_model(uri: str, workspace: str | os.PathLike | Workspace | None = None) -> Path:
    """The local ``model.pt`` of a registered model version (downloaded into the workspace cache if needed).

    Raises ``NotFoundError`` naming the registered models (or versions) that exist.
    """
    from mlflow.exceptions import MlflowException

    name, version = parse_model_uri(uri)
    ws = Workspace.resolve(workspace)
    tracker = _tracker(ws)
    client = tracker.client
    versions = _versions(client, name)
    if not versions:
        known = [m["name"] for m in list_registered_models(ws)]
        raise NotFoundError(f"no registered model {name!r} (registered models: {', '.join(known) or 'none'})")
    number = max(versions) if version == "latest" else int(version)
    if number not in versions:
        raise NotFoundError(f"registered model {name!r} has no version {number} "
                            f"(versions: {', '.join(str(v) for v in sorted(versions))})")
    try:
        model_version = client.get_model_version(name, str(number))
    except MlflowException as exc:
        raise NotFoundError(f"cannot read {uri}: {exc}") from None
    source = model_version.source
    local = _local_path(source)
    if local is not None and local.is_dir() and (local / "model.pt").is_file():  # an MLflow model folder
        return local / "model.pt"
    if local is not None and local.is_file():
        return local
    target = ws.ensure("cache", "models", _safe(name), str(number))
    cached = target / "model.pt"
    if cached.is_file():
        return cached
    import mlflow.artifacts

    downloaded = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(target),
                                                          tracking_uri=tracker.uri))
    if downloaded.is_dir():
        found = sorted(downloaded.rglob("model.pt"))
        if not found:
            raise NotFoundError(f"{uri}: no model.pt in the downloaded artifact {source}")
        downloaded = found[0]
    if downloaded != cached:
        os.replace(downloaded, cached)
    return cached


def list_registered_models(workspace: str | os.PathLike | Workspace | None = None) -> list[dict[str, Any]]:
    """``[{"name", "latest_version", "versions", "tags"}]`` for every registered model, by name."""
    ws = Workspace.resolve(workspace)
    client = _tracker(ws).client
    out = []
    for model in client.search_registered_models(max_results=1000):
        versions = _versions(client, model.name)
        out.append({"name": model.name, "latest_version": max(versions) if versions else None,
                    "versions": sorted(versions), "tags": dict(model.tags or {})})
    return sorted(out, key=lambda m: m["name"])


def _versions(client, name: str) -> list[int]:
    escaped = name.replace("'", "\\'")
    return [int(v.version) for v in client.search_model_versions(f"name='{escaped}'", max_results=10000)]


def _local_path(uri: str) -> Path | None:
    """The file a ``file:`` URI or a plain path names; ``None`` for remote URIs."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(uri)
    return None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}
