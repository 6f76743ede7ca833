"""The model registry against the spec (sections 4-5), in the style of torchvision's naming-convention tests.

Classification entries are also checked against timm: their ``arch.tag`` exists with hub weights, and their
layer groups cover the built network in order, stem first. The networks are built on the meta device (names
and shapes only, no memory, no initialisation), so this file stays fast.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch

from jupyter_avml.errors import ConfigError
from jupyter_avml.models import ModelSpec, get_model_spec, list_models, register_model_spec
from jupyter_avml.models.catalog import CLASSIFIER_BUILDER
from jupyter_avml.tasks import ImageTask

MC = ImageTask.IMAGE_CLASSIFICATION
ML = ImageTask.IMAGE_CLASSIFICATION_MULTILABEL
OD = ImageTask.IMAGE_OBJECT_DETECTION
IS = ImageTask.IMAGE_INSTANCE_SEGMENTATION

# Spec section 4, table "Models", in its order.
SPEC_CLASSIFICATION = ["mobilenetv2", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnest50",
                       "resnest101", "seresnext", "vits16r224", "vitb16r224", "vitl16r224"]
SPEC_DETECTION = ["yolov5", "fasterrcnn_resnet18_fpn", "fasterrcnn_resnet34_fpn", "fasterrcnn_resnet50_fpn",
                  "fasterrcnn_resnet101_fpn", "fasterrcnn_resnet152_fpn", "retinanet_resnet50_fpn"]
SPEC_SEGMENTATION = ["maskrcnn_resnet18_fpn", "maskrcnn_resnet34_fpn", "maskrcnn_resnet50_fpn",
                     "maskrcnn_resnet101_fpn", "maskrcnn_resnet152_fpn"]
SPEC_TASKS = {**{name: {MC, ML} for name in SPEC_CLASSIFICATION}, **{name: {OD} for name in SPEC_DETECTION},
              **{name: {IS} for name in SPEC_SEGMENTATION}}
# Beyond the spec (issue 14): models whose ImageNet weights install with pip, after the spec's, in this order.
EXTRA_CLASSIFICATION = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
EXTRA_DETECTION = ["fasterrcnn_mobilenetv2_fpn", "retinanet_mobilenetv2_fpn", "fasterrcnn_efficientnet_lite0_fpn",
                   "retinanet_efficientnet_lite0_fpn"]
EXTRA_SEGMENTATION = ["maskrcnn_mobilenetv2_fpn", "maskrcnn_efficientnet_lite0_fpn"]
EXTRA_TASKS = {**{name: {MC, ML} for name in EXTRA_CLASSIFICATION}, **{name: {OD} for name in EXTRA_DETECTION},
               **{name: {IS} for name in EXTRA_SEGMENTATION}}

# Number of layer groups (spec section 5's table; mobilenetv2 as torchvision's features.0 ... features.18).
GROUP_COUNTS = {"mobilenetv2": 19, "resnet18": 5, "resnet34": 5, "resnet50": 5, "resnet101": 5, "resnet152": 5,
                "resnest50": 5, "resnest101": 5, "seresnext": 5, "vits16r224": 13, "vitb16r224": 13,
                "vitl16r224": 25, "efficientnet_lite0": 9, "efficientnet_lite1": 9, "efficientnet_lite2": 9}

CLASSIFIERS = list_models(MC)


# -- the registry matches the spec -------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SPEC_TASKS))
def test_every_spec_model_is_registered_for_its_tasks(name):
    spec = get_model_spec(name)
    assert spec.name == name
    assert set(spec.tasks) == SPEC_TASKS[name]
    for task in SPEC_TASKS[name]:
        assert get_model_spec(name, task) is spec


@pytest.mark.parametrize("task, expected", [(MC, SPEC_CLASSIFICATION + EXTRA_CLASSIFICATION),
                                            (ML, SPEC_CLASSIFICATION + EXTRA_CLASSIFICATION),
                                            (OD, SPEC_DETECTION + EXTRA_DETECTION),
                                            (IS, SPEC_SEGMENTATION + EXTRA_SEGMENTATION)])
def test_list_models_per_task_is_the_spec_table_then_the_extras(task, expected):
    assert list_models(task) == expected
    assert list_models(task.value) == expected


def test_list_models_lists_each_name_once():
    names = list_models()
    assert len(names) == len(set(names))
    assert set(names) == set(SPEC_TASKS) | set(EXTRA_TASKS)


@pytest.mark.parametrize("name", list(EXTRA_TASKS))
def test_every_extra_model_has_local_weights_and_serves_its_tasks(name):
    spec = get_model_spec(name)
    assert set(spec.tasks) == EXTRA_TASKS[name]
    assert spec.local_weights is not None and len(spec.local_weights.sha256) == 64
    assert spec.parameters_millions is None or spec.parameters_millions > 0


@pytest.mark.parametrize("name", list(SPEC_TASKS) + list(EXTRA_TASKS))
def test_naming_conventions(name):
    spec = get_model_spec(name)
    assert re.fullmatch(r"[a-z][a-z0-9_]*", spec.name), "names are lower-case identifiers"
    assert re.fullmatch(r"[a-z_][a-z0-9_.]*:[a-z_][a-z0-9_]*", spec.builder), "builder is 'module:function'"
    assert spec.description
    assert spec.layer_groups, "every model supports layers_to_freeze"
    for group in spec.layer_groups:
        assert group and all(isinstance(prefix, str) and prefix for prefix in group)
    # A task-scoped default names a task this model serves.
    for key in spec.defaults:
        task_part, sep, _ = key.rpartition(":")
        if sep:
            assert ImageTask.parse(task_part) in spec.tasks, key


def test_lookup_ignores_case_and_surrounding_spaces():
    assert get_model_spec("  ResNet50 ").name == "resnet50"


@pytest.mark.parametrize("typo, suggestion", [("resnet51", "resnet50"), ("vitb16", "vitb16r224"),
                                              ("mobilenet_v2", "mobilenetv2"), ("seresnet", "seresnext"),
                                              ("fasterrcnn_resnet50", "fasterrcnn_resnet50_fpn")])
def test_unknown_name_suggests_the_closest(typo, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'") as info:
        get_model_spec(typo)
    assert info.value.field == "model_name"
    assert typo in str(info.value)


def test_unknown_name_without_a_close_match_lists_the_task_models():
    with pytest.raises(ConfigError, match="known models: ") as info:
        get_model_spec("zzzz", MC)
    for name in SPEC_CLASSIFICATION:
        assert name in str(info.value)
    assert "yolov5" not in str(info.value)


@pytest.mark.parametrize("name, task", [("yolov5", MC), ("resnet50", OD), ("maskrcnn_resnet50_fpn", OD),
                                        ("fasterrcnn_resnet50_fpn", IS)])
def test_model_of_another_task_is_a_config_error(name, task):
    with pytest.raises(ConfigError, match=f"task is {task.value}"):
        get_model_spec(name, task)


def test_duplicate_registration_raises_and_keeps_the_first():
    original = get_model_spec("resnet50")
    with pytest.raises(ValueError, match="already registered"):
        register_model_spec(replace(original, description="impostor"))
    assert get_model_spec("resnet50") is original


# Spec section 5: per-model defaults that differ from the task's.
@pytest.mark.parametrize("name, task, expected", [
    ("vits16r224", MC, {"training_batch_size": 128, "validation_batch_size": 128, "learning_rate": 0.0125}),
    ("vitb16r224", MC, {"training_batch_size": 48, "validation_batch_size": 48, "learning_rate": 0.0125}),
    ("vitl16r224", MC, {"training_batch_size": 10, "validation_batch_size": 10, "learning_rate": 0.001}),
    ("vits16r224", ML, {"training_batch_size": 128, "validation_batch_size": 128, "learning_rate": 0.025}),
    ("vitb16r224", ML, {"training_batch_size": 48, "validation_batch_size": 48, "learning_rate": 0.025}),
    ("vitl16r224", ML, {"training_batch_size": 10, "validation_batch_size": 10, "learning_rate": 0.002}),
    ("resnet50", MC, {}),
    ("yolov5", OD, {"number_of_epochs": 30, "training_batch_size": 16, "validation_batch_size": 16,
                    "learning_rate": 0.01, "box_score_thresh": 0.1}),
])
def test_model_defaults_follow_the_spec(name, task, expected):
    assert get_model_spec(name).defaults_for(task) == expected


@pytest.mark.parametrize("name", SPEC_DETECTION[1:] + SPEC_SEGMENTATION)
def test_torchvision_detectors_freeze_the_resnet_backbone_stem_first(name):
    groups = get_model_spec(name).layer_groups
    assert groups[0] == ("backbone.body.conv1.", "backbone.body.bn1.")
    assert list(groups[1:]) == [(f"backbone.body.layer{i}.",) for i in range(1, 5)]


# -- classification entries against timm -------------------------------------------------------------------
def _meta_model(spec: ModelSpec, num_classes: int = 3):
    from jupyter_avml.models.classification import build_classifier

    with torch.device("meta"):  # parameter names and shapes without allocating or initialising
        return build_classifier(spec, num_classes, pretrained=False)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_entry_uses_the_classification_builder(name):
    from jupyter_avml.models.classification import build_classifier

    spec = get_model_spec(name)
    assert spec.family == "timm"
    assert spec.builder == CLASSIFIER_BUILDER
    assert spec.build_fn() is build_classifier


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_backend_is_a_timm_tag_with_hub_weights(name):
    import timm

    spec = get_model_spec(name)
    architecture, sep, tag = spec.backend.partition(".")
    assert sep and tag, "the backend pins timm's pretrained tag: 'architecture.tag'"
    assert architecture in timm.list_models()
    assert spec.backend in timm.list_pretrained()
    cfg = timm.models.get_pretrained_cfg(spec.backend, allow_unregistered=False)
    assert cfg.hf_hub_id == f"timm/{spec.backend}"
    assert cfg.num_classes == 1000 and cfg.input_size[0] == 3
    # The spec's input-size constraint (ViT) is the architecture's, as timm declares it.
    assert spec.fixed_input_size == bool(cfg.fixed_input_size)


@pytest.mark.parametrize("name", ["vits16r224", "vitb16r224", "vitl16r224"])
def test_vits_are_patch16_224_with_augreg_in21k_weights(name):
    spec = get_model_spec(name)
    size = {"s": "small", "b": "base", "l": "large"}[name[3]]
    architecture, _, tag = spec.backend.partition(".")
    assert architecture == f"vit_{size}_patch16_224"
    assert tag.startswith("augreg") and tag.endswith("in21k_ft_in1k")


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_layer_groups_cover_the_network_in_order_stem_first(name):
    spec = get_model_spec(name)
    assert len(spec.layer_groups) == GROUP_COUNTS[name]
    model = _meta_model(spec)
    names = [param_name for param_name, _ in model.named_parameters()]

    owner: dict[str, int] = {}
    for index, group in enumerate(spec.layer_groups):
        matched = [n for n in names if n.startswith(group)]
        assert matched, f"group {index} {group} matches no parameter"
        for prefix in group:
            assert any(n.startswith(prefix) for n in names), f"prefix {prefix!r} of group {index} matches nothing"
        for n in matched:
            assert n not in owner, f"{n} is in groups {owner[n]} and {index}"
            owner[n] = index

    # In module (registration) order, the grouped parameters come first, group by group; what follows is the
    # head (the classifier, with ViT's final norm), which layers_to_freeze never freezes.
    sequence = [owner.get(n) for n in names]
    grouped = [i for i in sequence if i is not None]
    assert grouped == sorted(grouped), "groups are in module order"
    tail = sequence[len(grouped):]
    assert sequence[:len(grouped)] == grouped and all(i is None for i in tail), \
        f"parameters outside the groups before the head: {[n for n in names[:len(grouped)] if n not in owner]}"

    head = {f"{model.pretrained_cfg['classifier']}.{p}" for p in ("weight", "bias")}
    tail_names = set(names[len(grouped):])
    assert head <= tail_names, "the classifier is the last, ungrouped part"
    assert len(tail_names - head) <= 4, f"more than a final norm outside the groups: {sorted(tail_names - head)}"
    # The first group is the stem: it holds the network's input convolution.
    assert owner[model.pretrained_cfg["first_conv"] + ".weight"] == 0
    assert owner[names[0]] == 0


# -- the zoo loads the spec's models whatever was registered first --------------------------------------------
_FIRST_REGISTRATION = """
import json
from jupyter_avml.models import ModelSpec, get_model_spec, list_models, register_model_spec
from jupyter_avml.tasks import ImageTask

report = dict()
try:
    register_model_spec(ModelSpec(name={name!r}, tasks=frozenset({{ImageTask.IMAGE_CLASSIFICATION}}), family="timm",
                                  backend="resnet18.a1_in1k",
                                  builder="jupyter_avml.models.classification:build_classifier"))
except ValueError as exc:
    report["error"] = str(exc)
report["models"] = list_models()
print(json.dumps(report))
"""


def _first_registration(name: str) -> dict:
    """Register a model before anything else touches the zoo, in a fresh interpreter."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", _FIRST_REGISTRATION.format(name=name)], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(repo)})
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_registering_a_model_first_keeps_the_built_in_models():
    report = _first_registration("my_resnet")
    assert "error" not in report
    assert report["models"][:len(SPEC_TASKS)] == list(SPEC_TASKS) or set(SPEC_TASKS) <= set(report["models"])
    assert report["models"][-1] == "my_resnet" and len(report["models"]) == len(SPEC_TASKS) + len(EXTRA_TASKS) + 1


def test_registering_a_built_in_name_first_is_a_duplicate_at_once():
    report = _first_registration("resnet50")
    assert "resnet50" in report["error"] and "already registered" in report["error"]
    assert set(SPEC_TASKS) <= set(report["models"])


def test_a_model_of_an_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown model family 'keras'"):
        register_model_spec(ModelSpec(name="kerasnet", tasks=frozenset({MC}), family="keras", backend="x",
                                      builder=CLASSIFIER_BUILDER))
    assert "kerasnet" not in list_models()
