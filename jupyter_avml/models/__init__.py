"""Model registry keyed by the spec's names; builders import their libraries lazily."""

from jupyter_avml.models.registry import ModelSpec, get_model_spec, list_models, register_model

__all__ = ["ModelSpec", "get_model_spec", "list_models", "register_model"]
