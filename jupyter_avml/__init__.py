"""jupyter_avml: AutoML for computer vision, local and notebook-native.

Importing this package is cheap: torch, mlflow and fiftyone load only when a function needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "ImageTask": "jupyter_avml.tasks",
    "AutoMLImageConfig": "jupyter_avml.config",
    "Workspace": "jupyter_avml.workspace",
    "AvmlError": "jupyter_avml.errors",
    "ConfigError": "jupyter_avml.errors",
    "DataError": "jupyter_avml.errors",
    "list_models": "jupyter_avml.models",
    "train": "jupyter_avml.training.run",
    "resume": "jupyter_avml.training.run",
    "load_model": "jupyter_avml.inference.predictor",
    "validate_jsonl": "jupyter_avml.data.validate",
    "read_dataset": "jupyter_avml.data.validate",
    "convert": "jupyter_avml.data.convert",
    "make_shapes": "jupyter_avml.data.shapes",
    "register_dataset": "jupyter_avml.data.dataset_registry",
    "get_dataset": "jupyter_avml.data.dataset_registry",
    "list_datasets": "jupyter_avml.data.dataset_registry",
}

__all__ = sorted(_LAZY) + ["__version__", "load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jupyter_avml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython) -> None:
    """``%load_ext jupyter_avml``: register the ``%avml`` / ``%%avml`` magics."""
    from jupyter_avml.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext jupyter_avml`` (and ``%reload_ext``)."""
    from jupyter_avml.magics import unload_ipython_extension as _unload

    _unload(ipython)
