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


def _vit_groups(depth: int) -> tuple[tuple[str, ...], ...]:
    return (("patch_embed.", "cls_token", "pos_embed"),) + tuple((f"blocks.{i}.",) for i in range(depth))


def _vit_defaults(batch: int, lr_multiclass: float, lr_multilabel: float) -> dict:
    return {"training_batch_size": batch, "validation_batch_size": batch,
            f"{MC}:learning_rate": lr_multiclass, f"{ML}:learning_rate": lr_multilabel}


def _classifier(name, backend, description, groups, defaults=None, fixed_input_size=False):
    register_model_spec(ModelSpec(name=name, tasks=CLS, family="timm", backend=backend, builder=CLASSIFIER_BUILDER,
                             description=description, defaults=defaults or {}, layer_groups=groups,
                             fixed_input_size=fixed_input_size))


# timm's mobilenetv2_100 stages hold 1, 2, 3, 4, 3, 3, 1 inverted residual blocks; one group per block keeps
# the original's 19 groups (torchvision features.0 stem, features.1-17 blocks, features.18 head conv).
MOBILENETV2_GROUPS = ((("conv_stem.", "bn1."),)
                      + tuple((f"blocks.{stage}.{block}.",)
                              for stage, depth in enumerate((1, 2, 3, 4, 3, 3, 1)) for block in range(depth))
                      + (("conv_head.", "bn2."),))

_classifier("mobilenetv2", "mobilenetv2_100.ra_in1k", "MobileNetV2: light, for mobile", MOBILENETV2_GROUPS)
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
    layer_groups=tuple((f"model.{i}.",) for i in range(10))))

for _depth in (18, 34, 50, 101, 152):
    register_model_spec(ModelSpec(
        name=f"fasterrcnn_resnet{_depth}_fpn", tasks=OD, family="torchvision", backend=f"resnet{_depth}",
        builder=DETECTOR_BUILDER, description=f"Faster R-CNN, ResNet-{_depth}-FPN backbone (two-stage)",
        layer_groups=DETECTOR_GROUPS))
register_model_spec(ModelSpec(
    name="retinanet_resnet50_fpn", tasks=OD, family="torchvision", backend="resnet50", builder=DETECTOR_BUILDER,
    description="RetinaNet, ResNet-50-FPN (focal loss for class imbalance)", layer_groups=DETECTOR_GROUPS))
for _depth in (18, 34, 50, 101, 152):
    register_model_spec(ModelSpec(
        name=f"maskrcnn_resnet{_depth}_fpn", tasks=IS, family="torchvision", backend=f"resnet{_depth}",
        builder=DETECTOR_BUILDER, description=f"Mask R-CNN, ResNet-{_depth}-FPN backbone",
        layer_groups=DETECTOR_GROUPS))
