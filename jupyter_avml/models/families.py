"""Model families: what differs between timm classifiers, torchvision detectors and ultralytics' YOLO, in one
record per family, registered once and looked up by the family name (``ModelSpec.family``).

A family record says:

* ``scopes``: which settings apply to its models (the scopes of ``config.params``: a setting given for a model
  outside its scopes is an error, so that a sweep never searches a value that is then ignored);
* ``trainer``: what trains it, by import path (nothing is imported before it is needed): a ``Recipe`` trained
  by the shared engine (``trainer_kind="recipe"``), or a runner with its own loop (``trainer_kind="runner"``,
  ultralytics' trainer);
* ``predictor``: the ``Predictor`` class that ``load_model`` builds for its model files, by import path;
* ``inference_settings``: the settings ``load_model`` lets a caller change (the others are the training's).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

# The scope names of config.params (kept as plain strings here: models sits below config).
ALL, CLASSIFICATION, TORCHVISION_DETECTION, YOLO, DETECTION = "all", "classification", "torchvision", "yolov5", \
    "detection"


@dataclass(frozen=True)
class ModelFamily:
    """One family of models and the parts of the system that depend on it (see the module docstring)."""

    name: str
    description: str
    scopes: frozenset[str]
    trainer: str
    trainer_kind: Literal["recipe", "runner"]
    predictor: str
    inference_settings: tuple[str, ...]
    weights_origin: str  # "module:function(spec, workspace, model_size) -> WeightsOrigin": where pretrained comes from

    def trainer_class(self) -> type:
        return _import(self.trainer)

    def predictor_class(self) -> type:
        return _import(self.predictor)

    def weights_origin_function(self):
        return _import(self.weights_origin)


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add a family; a duplicate name is a programming error."""
    if family.name in _FAMILIES:
        raise ValueError(f"model family {family.name!r} is already registered")
    if family.trainer_kind not in ("recipe", "runner"):
        raise ValueError(f"{family.name}: trainer_kind must be 'recipe' or 'runner', got {family.trainer_kind!r}")
    _FAMILIES[family.name] = family
    return family


def get_family(name: str) -> ModelFamily:
    """The record of family ``name``; ``ValueError`` naming the known families otherwise."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r} (families: {', '.join(_FAMILIES)})") from None


def list_families() -> list[str]:
    return list(_FAMILIES)


def _import(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


register_family(ModelFamily(
    name="timm", description="image classifiers (multi-class and multi-label) from timm",
    scopes=frozenset({ALL, CLASSIFICATION}),
    trainer="jupyter_avml.training.classification:ClassificationRecipe", trainer_kind="recipe",
    predictor="jupyter_avml.inference.classification:ClassificationPredictor",
    inference_settings=("valid_resize_size", "valid_crop_size"),
    weights_origin="jupyter_avml.models.weights_origin:timm_origin"))
register_family(ModelFamily(
    name="torchvision", description="Faster R-CNN, Mask R-CNN and RetinaNet with ResNet-FPN backbones (torchvision)",
    scopes=frozenset({ALL, TORCHVISION_DETECTION, DETECTION}),
    trainer="jupyter_avml.training.detection:DetectionRecipe", trainer_kind="recipe",
    predictor="jupyter_avml.inference.detection:DetectionPredictor",
    inference_settings=("min_size", "max_size", "box_score_thresh", "box_nms_thresh", "box_detections_per_img",
                        "tile_grid_size", "tile_overlap_ratio", "tile_predictions_nms_thresh"),
    weights_origin="jupyter_avml.models.weights_origin:torchvision_origin"))
register_family(ModelFamily(
    name="yolov5", description="YOLOv5 through ultralytics' own trainer",
    scopes=frozenset({ALL, YOLO, DETECTION}),
    trainer="jupyter_avml.training.yolo:YoloRunner", trainer_kind="runner",
    predictor="jupyter_avml.inference.yolo:YoloPredictor",
    inference_settings=("img_size", "model_size", "box_score_thresh", "box_iou_thresh"),
    weights_origin="jupyter_avml.models.weights_origin:yolo_origin"))
