"""Models by the spec's names: the zoo (``zoo``: ``get_model_spec``, ``list_models``, ``register_model_spec``),
the families (``families``), the builders (``classification``, ``detection``, ``yolo``), weights and model files.
Builders import their libraries lazily."""

from jupyter_avml.models.families import ModelFamily, get_family, list_families, register_family
from jupyter_avml.models.zoo import ModelSpec, get_model_spec, list_models, register_model_spec

__all__ = ["ModelFamily", "ModelSpec", "get_family", "get_model_spec", "list_families", "list_models",
           "register_family", "register_model_spec"]
