"""The model zoo: one entry (``ModelSpec``) per spec model name (``resnet50``, ``fasterrcnn_resnet34_fpn``,
``yolov5``...), registered with ``register_model_spec`` and looked up with ``get_model_spec`` / ``list_models``.

An entry carries the tasks it serves, its family (``models.families``: which settings apply, what trains and
what predicts it), its own defaults (overriding the task's), its layer groups for ``layers_to_freeze`` and a
builder. Builders are named by import path so that reading the zoo never imports torch.

The spec's models (``models.catalog``) are loaded on the first use of the zoo, whatever was registered before.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jupyter_avml.errors import ConfigError
from jupyter_avml.tasks import ImageTask


@dataclass(frozen=True)
class ModelSpec:
    """What jupyter_avml knows about one model name.

    name: the spec's user-facing name.
    family: a family of ``models.families``: ``timm`` (classification), ``torchvision`` (Faster/Mask R-CNN,
    RetinaNet) or ``yolov5``.
    backend: the name of the architecture in the backing library (e.g. timm's ``vit_base_patch16_224``).
    builder: ``"module:function"`` building the network; see each family's module for its signature.
    defaults: hyperparameter defaults of this model that differ from the task's (spec sections 5-6).
    layer_groups: parameter-name prefixes per group, stem first, for ``layers_to_freeze``.
    fine_tune_frozen: how many leading layer groups a fine-tune from pretrained weights freezes (AutoMode sets
        it as ``layers_to_freeze``): the stem and the stages up to stride 4, torchvision's rule for detection
        backbones (``trainable_backbone_layers=3``); 0 for none.
    local_weights: a ``local_weights.LocalWeights``: the pip package whose file ``pretrained: 1`` loads (no hub);
        None when the library's own download is used.
    parameters_millions: the network's size (with one class for detectors; YOLO at its default size).
    """

    name: str
    tasks: frozenset[ImageTask]
    family: str
    backend: str
    builder: str
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    layer_groups: tuple[tuple[str, ...], ...] = ()
    fine_tune_frozen: int = 0
    fixed_input_size: bool = False
    local_weights: Any = None
    parameters_millions: float | None = None

    def build_fn(self) -> Callable:
        module_name, _, attr = self.builder.partition(":")
        return getattr(importlib.import_module(module_name), attr)

    def defaults_for(self, task: ImageTask) -> dict[str, Any]:
        """Per-model defaults; a key ``"<task value>:<param>"`` applies to one task only."""
        out = {}
        for key, value in self.defaults.items():
            task_part, sep, param = key.rpartition(":")
            if not sep:
                out[key] = value
            elif task_part == task.value:
                out[param] = value
        return out


_REGISTRY: dict[str, ModelSpec] = {}
_catalog = "unloaded"  # -> "loading" -> "loaded"


def register_model_spec(spec: ModelSpec) -> ModelSpec:
    """Add an entry; a duplicate name (the spec's models included) or an unknown family is a programming error."""
    from jupyter_avml.models.families import get_family

    _ensure_catalog()  # first, so that a name of the catalogue is a duplicate now, not when it loads later
    get_family(spec.family)
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_catalog() -> None:
    """Load the spec's models once (a no-op while the catalogue registers them)."""
    global _catalog
    if _catalog != "unloaded":
        return
    _catalog = "loading"
    try:
        importlib.import_module("jupyter_avml.models.catalog")
    except BaseException:
        _catalog = "unloaded"
        raise
    _catalog = "loaded"


def list_models(task: ImageTask | str | None = None) -> list[str]:
    """Model names, in registration order, optionally only those serving ``task``."""
    _ensure_catalog()
    if task is None:
        return list(_REGISTRY)
    task = ImageTask.parse(task)
    return [name for name, spec in _REGISTRY.items() if task in spec.tasks]


def get_model_spec(name: str, task: ImageTask | str | None = None) -> ModelSpec:
    """The entry for ``name``; unknown names and task mismatches raise ``ConfigError`` with a hint."""
    _ensure_catalog()
    spec = _REGISTRY.get(str(name).strip().lower()) if isinstance(name, str) else None
    if spec is None:
        candidates = list_models(task) if task is not None else list(_REGISTRY)
        close = difflib.get_close_matches(str(name), candidates, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known models: {', '.join(candidates)}"
        raise ConfigError(f"unknown model_name {name!r}{hint}", field="model_name", value=name)
    if task is not None:
        task = ImageTask.parse(task)
        if task not in spec.tasks:
            kinds = " and ".join(sorted(TASK_NOUN[t] for t in spec.tasks))
            raise ConfigError(f"{spec.name} is {_article(kinds)} {kinds} model; task is {task.value}",
                              field="model_name", value=name)
    return spec


TASK_NOUN = {
    ImageTask.IMAGE_CLASSIFICATION: "image classification",
    ImageTask.IMAGE_CLASSIFICATION_MULTILABEL: "multi-label image classification",
    ImageTask.IMAGE_OBJECT_DETECTION: "object detection",
    ImageTask.IMAGE_INSTANCE_SEGMENTATION: "instance segmentation",
}


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"
