"""Serving a trained model: the MLflow model and scoring file of every run, an HTTP service, deployments.

The public API (what the CLI, the magics and users call), imported on first use (MLflow, Starlette and torch are
heavy; ``import jupyter_avml.serving`` is not):

* ``package_model(outputs_dir)``: the run's ``outputs/`` becomes an MLflow pyfunc model, with the spec's scoring
  file and its environment file (called at the end of every run);
* ``ServedModel(MODEL)``: what MODEL names (a run id, a path, ``models:/NAME/VERSION``, a registered name) and its
  predictors per inference settings; ``create_app`` / ``serve`` / ``ServiceThread``: the HTTP service;
  ``ServiceLimits``: its bounds;
* ``deploy`` / ``stop_deployment`` / ``list_deployments``: services in the background;
* ``predict_files`` / ``score_jsonl``: offline predictions.

Layout (one job per module):

* ``packaging``, ``pyfunc``, ``scoring_file``, ``environment``: what a run leaves for deployment;
* ``model_source``: MODEL resolved, predictors by settings, metadata;
* ``payload``: request bodies (raw bytes, JSON, MLflow's inputs); ``decode``: image bytes within the pixel limit;
  ``batching``: micro-batches on a worker thread; ``app``: the Starlette routes, key, errors, request log;
  ``limits``; ``errors``: ``RequestError`` (4xx/503 answers); ``server``: uvicorn on a bound socket;
* ``deployments``: the deployments folder, launcher, stop, list; ``service_process``: a deployment's process;
  ``client``: request snippets and a small client;
* ``offline``: ``avml predict`` and ``avml score``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "package_model": "jupyter_avml.serving.packaging",
    "ServedModel": "jupyter_avml.serving.model_source",
    "resolve_model_reference": "jupyter_avml.serving.model_source",
    "create_app": "jupyter_avml.serving.app",
    "serve": "jupyter_avml.serving.server",
    "ServiceThread": "jupyter_avml.serving.server",
    "ServiceLimits": "jupyter_avml.serving.limits",
    "RequestError": "jupyter_avml.serving.errors",
    "deploy": "jupyter_avml.serving.deployments",
    "stop_deployment": "jupyter_avml.serving.deployments",
    "list_deployments": "jupyter_avml.serving.deployments",
    "predict_files": "jupyter_avml.serving.offline",
    "score_jsonl": "jupyter_avml.serving.offline",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jupyter_avml.serving' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
