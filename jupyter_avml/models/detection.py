"""Faster R-CNN, Mask R-CNN and RetinaNet with ResNet-FPN backbones (torchvision), spec section 4; the same
detectors on MobileNetV2 and EfficientNet-Lite0 backbones are built by ``detection_backbones.py``.

Contract of the networks built here (torchvision's detection API):

- input: a list of ``float32`` tensors ``[3, H, W]`` with values in ``[0, 1]``, one per image, any sizes.
  The model normalises and resizes them itself (``model.transform``, a ``GeneralizedRCNNTransform``):
  per-channel ImageNet mean/std, then a resize so that the shorter side is ``min_size`` unless the longer
  side would exceed ``max_size``. Boxes are mapped back to the input image's pixels on output.
- training targets: one dict per image with ``boxes`` (``float32 [N, 4]``, absolute pixels ``x1, y1, x2, y2``
  of the input image), ``labels`` (``int64 [N]``, **1..C**: label 0 is torchvision's background) and, for
  Mask R-CNN, ``masks`` (``uint8 [N, H, W]``, one binary mask per box). In train mode the model returns a dict
  of losses (sum them for the total).
- eval mode returns one dict per image: ``boxes`` (as above), ``labels`` (1..C), ``scores`` (descending) and,
  for Mask R-CNN, ``masks`` (``float32 [N, 1, H, W]`` probabilities).

Pretrained weights come through torchvision's weights API (downloaded once into ``torch.hub.get_dir()``,
i.e. ``$TORCH_HOME/hub/checkpoints``): the COCO detector for the ResNet-50 models that torchvision ships
(Faster R-CNN v1, Mask R-CNN v1, RetinaNet v1), the ImageNet ResNet otherwise. Offline, the build fails
within seconds with a ``WeightsUnavailableError`` that says how to proceed.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from jupyter_avml.errors import WeightsUnavailableError
from jupyter_avml.models.detection_backbones import LIGHT_BACKBONES, build_light_detector
from jupyter_avml.models.weights import (  # noqa: F401  (unreachable_reason: looked up here, tests replace it)
    describe_error,
    download_file,
    guidance,
    load_state_dict_checked,
    unreachable_reason,
)
from jupyter_avml.models.weights_files import read_state_dict
from jupyter_avml.models.zoo import ModelSpec

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ARCHITECTURES = ("fasterrcnn", "maskrcnn", "retinanet")
RESNET_DEPTHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")

# Parameters whose shape depends on the number of classes: replaced (re-initialised) when the class count
# changes, and always when starting from COCO (COCO's classes are not the user's).
CLASS_HEAD_PREFIXES = (
    "roi_heads.box_predictor.",
    "roi_heads.mask_predictor.mask_fcn_logits.",
    "head.classification_head.cls_logits.",
)


def _coco_weights(architecture: str, backbone: str):
    """torchvision's COCO weights enum member for this detector, or None when torchvision has none."""
    if backbone != "resnet50":
        return None
    detection = torchvision.models.detection
    return {
        "fasterrcnn": detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
        "maskrcnn": detection.MaskRCNN_ResNet50_FPN_Weights.COCO_V1,
        "retinanet": detection.RetinaNet_ResNet50_FPN_Weights.COCO_V1,
    }[architecture]


def _imagenet_weights(backbone: str):
    return torchvision.models.get_model_weights(backbone).IMAGENET1K_V1


class BackgroundFreeRetinaNet(RetinaNet):
    """torchvision's RetinaNet whose predictions never carry label 0 (background).

    RetinaNet scores every class with an independent sigmoid, so with ``C + 1`` classes the background
    column could surface as a detection at a low score threshold. It is never a positive target (labels
    are 1..C), so at inference it is masked out before thresholding; training is unchanged.
    """

    def postprocess_detections(self, head_outputs, anchors, image_shapes):
        masked = dict(head_outputs)
        masked["cls_logits"] = [logits.index_fill(-1, torch.tensor([0], device=logits.device), float("-inf"))
                                for logits in head_outputs["cls_logits"]]
        return super().postprocess_detections(masked, anchors, image_shapes)


def parse_detector_name(spec: ModelSpec) -> tuple[str, str]:
    """``(architecture, backbone)`` of a registry entry, e.g. ``("maskrcnn", "resnet34")``."""
    architecture = spec.name.split("_", 1)[0]
    if architecture not in ARCHITECTURES or (spec.backend not in RESNET_DEPTHS and spec.backend not in LIGHT_BACKBONES):
        raise ValueError(f"{spec.name} is not a torchvision detector entry "
                         f"(architecture {architecture!r}, backend {spec.backend!r})")
    return architecture, spec.backend


def build_detector(spec: ModelSpec, num_classes: int, *, pretrained: bool = True,
                   pretrained_weights: str | None = None, min_size: int = 600, max_size: int = 1333,
                   box_score_thresh: float = 0.3, box_nms_thresh: float = 0.5, box_detections_per_img: int = 100,
                   trainable_backbone_layers: int | None = None) -> nn.Module:
    """Build a torchvision Faster R-CNN, Mask R-CNN or RetinaNet with a ResNet-FPN backbone.

    Parameters
    ----------
    spec
        A registry entry of family ``torchvision`` (``fasterrcnn_resnet{18..152}_fpn``,
        ``maskrcnn_resnet{18..152}_fpn``, ``retinanet_resnet50_fpn``).
    num_classes
        Number of object classes **without** background. The network is built with ``num_classes + 1``
        outputs (torchvision's convention): label 0 is background, targets and predictions use 1..C.
    pretrained
        Start from trained weights: COCO for the ResNet-50 detectors (class-dependent heads replaced for
        ``num_classes``), the ImageNet ResNet backbone for the other depths. Downloaded through torchvision
        into ``torch.hub.get_dir()``; raises ``WeightsUnavailableError`` within seconds when that is
        impossible (offline and not cached, download error, unreadable cache file).
    pretrained_weights
        Path to a local state dict, used instead of any download (``pretrained`` is then ignored): a whole
        detector (ours or a torchvision checkpoint; heads with another class count are re-initialised),
        a ``jupyter_avml`` ``model.pt`` (its ``state_dict``), a ``{"model": state_dict}`` training
        checkpoint, or a bare ImageNet ResNet (loaded into the backbone). Tensors whose shape does not fit
        outside the class-dependent heads raise ``WeightsUnavailableError`` listing them.
    min_size, max_size
        Resize bounds of ``model.transform`` (pixels): shorter side to ``min_size``, longer side at most
        ``max_size``.
    box_score_thresh, box_nms_thresh, box_detections_per_img
        Inference post-processing: minimum score, NMS IoU threshold (per class), detections kept per
        image. RetinaNet names them ``score_thresh``, ``nms_thresh``, ``detections_per_img``.
    trainable_backbone_layers
        torchvision's own backbone freezing (0-5, counted from ``layer4``). ``None`` means 5: everything
        trainable, so that ``layers_to_freeze`` (``freeze_layer_groups``) is the one freezing rule.

    Returns
    -------
    torch.nn.Module
        ``FasterRCNN``, ``MaskRCNN`` or ``BackgroundFreeRetinaNet`` (a ``RetinaNet``), in train mode. See the
        module docstring for the input/output contract.

    Notes
    -----
    Normalisation: whenever the backbone starts from trained weights (``pretrained`` or
    ``pretrained_weights``) its BatchNorm layers are ``FrozenBatchNorm2d`` (fixed statistics and affine,
    as torchvision does for detection, since batches of 1-2 images cannot estimate statistics). From
    scratch there are no statistics to keep, and a deep ResNet without normalisation diverges, so the
    backbone uses trainable ``BatchNorm2d`` (torchvision's rule too). The two load each other's state
    dicts (``BatchNorm2d`` only adds ``num_batches_tracked``, filled in when absent) and in eval mode compute
    the same function, so a trained model runs when built with ``pretrained=False`` and given its weights by
    ``load_state_dict``; the one difference is the variance epsilon: 0 after torchvision's COCO v1 weights
    (``overwrite_eps``, as torchvision does), 1e-5 otherwise.
    """
    architecture, backbone = parse_detector_name(spec)
    if backbone in LIGHT_BACKBONES:  # MobileNetV2 / EfficientNet-Lite0 with their pip-installed weights
        return build_light_detector(spec, num_classes, pretrained=pretrained, pretrained_weights=pretrained_weights,
                                    min_size=min_size, max_size=max_size, box_score_thresh=box_score_thresh,
                                    box_nms_thresh=box_nms_thresh, box_detections_per_img=box_detections_per_img)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{spec.name}: num_classes must be a positive int (classes without background), "
                         f"got {num_classes!r}")
    if trainable_backbone_layers is None:
        trainable_backbone_layers = 5
    if not 0 <= trainable_backbone_layers <= 5:
        raise ValueError(f"{spec.name}: trainable_backbone_layers must be in 0..5, got {trainable_backbone_layers}")

    # Weights are read before building, so that an offline failure costs no model construction.
    state, source, coco_v1 = None, None, False
    if pretrained_weights is not None:
        state, source = read_state_dict(pretrained_weights), str(Path(pretrained_weights).expanduser())
    elif pretrained:
        coco = _coco_weights(architecture, backbone)
        weights = coco if coco is not None else _imagenet_weights(backbone)
        what = f"{spec.name}: COCO weights" if coco is not None else f"{spec.name}: ImageNet {backbone} weights"
        state, source, coco_v1 = fetch_torchvision_weights(weights, what), weights.url, coco is not None
        if coco_v1:
            # COCO's 91 classes are not the user's: the class-dependent heads always start afresh.
            state = {k: v for k, v in state.items() if not k.startswith(CLASS_HEAD_PREFIXES)}

    model = _construct(architecture, backbone, num_classes + 1, trainable_backbone_layers,
                       frozen_norm=state is not None, min_size=min_size, max_size=max_size,
                       box_score_thresh=box_score_thresh, box_nms_thresh=box_nms_thresh,
                       box_detections_per_img=box_detections_per_img)
    if state is not None:
        load_detector_state(model, state, source=source, what=f"{spec.name} (torchvision, {backbone}-FPN)")
    if coco_v1:
        # torchvision's v1 COCO checkpoints were trained with eps=0 in the frozen BatchNorm (vision#2933).
        torchvision.models.detection._utils.overwrite_eps(model, 0.0)
    return model


def batchnorm_eps(model: nn.Module) -> float:
    """The variance epsilon of the backbone's BatchNorm layers (what a model file records for the predictor)."""
    for module in model.backbone.body.modules():
        if isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            return float(module.eps)
    return 1e-5


def coco_v1_batchnorm_eps(spec: ModelSpec, *, pretrained: bool, pretrained_weights: str | None) -> float:
    """``build_detector``'s rule for the epsilon: 0 when the build starts from torchvision's COCO v1 weights,
    else torch's default 1e-5 (for model files that do not record it)."""
    if not pretrained or pretrained_weights:
        return 1e-5
    return 0.0 if _coco_weights(*parse_detector_name(spec)) is not None else 1e-5


def _construct(architecture: str, backbone: str, num_outputs: int, trainable_layers: int, *, frozen_norm: bool,
               min_size: int, max_size: int, box_score_thresh: float, box_nms_thresh: float,
               box_detections_per_img: int) -> nn.Module:
    """The same networks as torchvision's ``*_resnet50_fpn`` builders, for any ResNet depth, untrained."""
    norm_layer = FrozenBatchNorm2d if frozen_norm else nn.BatchNorm2d
    common = dict(min_size=min_size, max_size=max_size, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))
    if architecture == "retinanet":
        # As retinanet_resnet50_fpn (v1): P3-P5 from the ResNet (P2 would make too many anchors) + P6, P7.
        body = resnet_fpn_backbone(backbone_name=backbone, weights=None, norm_layer=norm_layer,
                                   trainable_layers=trainable_layers, returned_layers=[2, 3, 4],
                                   extra_blocks=LastLevelP6P7(256, 256))
        return BackgroundFreeRetinaNet(body, num_outputs, score_thresh=box_score_thresh, nms_thresh=box_nms_thresh,
                                       detections_per_img=box_detections_per_img, **common)
    body = resnet_fpn_backbone(backbone_name=backbone, weights=None, norm_layer=norm_layer,
                               trainable_layers=trainable_layers)
    cls = MaskRCNN if architecture == "maskrcnn" else FasterRCNN
    return cls(body, num_classes=num_outputs, box_score_thresh=box_score_thresh, box_nms_thresh=box_nms_thresh,
               box_detections_per_img=box_detections_per_img, **common)


# -- weights ---------------------------------------------------------------------------------------------

#: torch.hub's convention: the file name carries the first hexadecimal digits of its SHA-256 after its last "-".
HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")


def torchvision_cache_file(weights) -> Path:
    """Where torch.hub keeps (or will keep) the file of a torchvision weights enum member."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def fetch_torchvision_weights(weights, what: str) -> dict[str, torch.Tensor]:
    """The state dict of a torchvision weights enum member, from the hub cache or downloaded into it.

    Raises ``WeightsUnavailableError`` (naming ``what``, the URL and the cache folder) when the file is not
    cached and the download host cannot be reached, when the download fails, or when the file is unreadable.
    """
    url = weights.url
    cached = torchvision_cache_file(weights)
    if not cached.is_file():
        reason = unreachable_reason(url)
        if reason is not None:
            raise WeightsUnavailableError(
                f"{what} are not in the torch hub cache ({cached.parent}) and cannot be downloaded from {url}: "
                f"{reason}. {guidance(url)} Or copy that file into {cached.parent}.")
        log.info("downloading %s to %s", url, cached)
        found = HASH_IN_NAME.search(cached.name)
        try:
            # A timeout per request (torch.hub's downloader has none; no process-wide default is changed).
            download_file(url, cached, sha256_prefix=found.group(1) if found else None)
        except (OSError, RuntimeError) as exc:  # urllib/socket errors, a hash mismatch
            raise WeightsUnavailableError(f"{what}: download of {url} into {cached.parent} failed "
                                          f"({describe_error(exc)}). {guidance(url)}") from exc
    try:
        return read_state_dict(cached, field=what)
    except WeightsUnavailableError as exc:
        raise WeightsUnavailableError(f"{exc}; delete it to download it again. {guidance(url)}") from None


def load_detector_state(model: nn.Module, state: dict[str, torch.Tensor], *, source: str, what: str) -> list[str]:
    """Load a detector's state dict, or a bare ImageNet ResNet's into the backbone, checking every tensor.

    A whole-detector state may differ from the model only in the class-dependent heads
    (``CLASS_HEAD_PREFIXES``: another class count), which keep their fresh initialisation. A bare ResNet
    (``conv1.weight``, ``layer1...``, ``fc...``; what ``torchvision.models.resnet*`` saves) must match
    ``backbone.body`` exactly, its classifier ``fc`` aside. Any other missing, unexpected or reshaped tensor
    raises ``WeightsUnavailableError`` naming them. Returns the names of the re-initialised tensors.
    """
    # BatchNorm's batch counter is not a weight (FrozenBatchNorm2d has none): never a reason to refuse a file.
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    is_detector = any(k.startswith(("backbone.", "rpn.", "roi_heads.", "head.")) for k in state)
    if not is_detector and "conv1.weight" in state:
        body_state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        load_state_dict_checked(model.backbone.body, body_state, source=source, what=f"the ResNet backbone of {what}")
        return []
    heads = tuple(prefix.rstrip(".") for prefix in CLASS_HEAD_PREFIXES)
    return load_state_dict_checked(model, state, source=source, what=what, head_modules=heads)
