"""torchvision detectors: one training step per registered model, settings, freezing, local and offline weights.

Every Faster R-CNN, Mask R-CNN and RetinaNet entry of the registry gets the per-model tests. Each network is
built once (a module-scoped fixture, so pytest runs a model's tests together and frees it before the next),
with 3 classes and ``min_size=64, max_size=128``; inputs are 2 random images of 96x128 px with 1-2 boxes.
"""

from __future__ import annotations

import copy
import time
import urllib.error
import urllib.request

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from jupyter_avml.errors import WeightsUnavailableError
from jupyter_avml.models import detection, get_model_spec, list_models
from jupyter_avml.models.detection import IMAGENET_MEAN, IMAGENET_STD, build_detector
from jupyter_avml.models.freeze import freeze_layer_groups

NUM_CLASSES = 3
H, W = 96, 128
SETTINGS = dict(min_size=64, max_size=128, box_score_thresh=0.25, box_nms_thresh=0.45, box_detections_per_img=7)
# The ResNet-FPN detectors; those on MobileNetV2 / EfficientNet-Lite0 backbones (pip-installed weights) have
# their per-model tests in tests/models/test_local_weights.py.
DETECTORS = [name for name in list_models("image-object-detection") + list_models("image-instance-segmentation")
             if name != "yolov5" and get_model_spec(name).backend.startswith("resnet")]
SLOW = {"fasterrcnn_resnet101_fpn", "fasterrcnn_resnet152_fpn", "maskrcnn_resnet101_fpn", "maskrcnn_resnet152_fpn"}
MODEL_PARAMS = [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in DETECTORS]
STEM_AND_LAYER1 = ("backbone.body.conv1.", "backbone.body.bn1.", "backbone.body.layer1.")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: tiny inputs gain nothing from more, and on shared CI cores the extra threads
    oversubscribe them (a Faster R-CNN step measured >10x slower with 2 threads on 2 busy cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _batch(with_masks: bool):
    """2 images [3, 96, 128] in [0, 1]; image 0 has one box, image 1 two; labels in 1..3 (pixels, x1y1x2y2)."""
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, H, W, generator=generator) for _ in range(2)]
    all_boxes = [torch.tensor([[10.0, 12.0, 60.0, 70.0]]), torch.tensor([[8.0, 20.0, 50.0, 90.0],
                                                                         [60.0, 30.0, 124.0, 88.0]])]
    all_labels = [torch.tensor([1]), torch.tensor([3, 2])]
    targets = []
    for boxes, labels in zip(all_boxes, all_labels, strict=True):
        target = {"boxes": boxes, "labels": labels}
        if with_masks:
            masks = torch.zeros(len(boxes), H, W, dtype=torch.uint8)
            for i, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
                masks[i, y1:y2, x1:x2] = 1
            target["masks"] = masks
        targets.append(target)
    return images, targets


def _class_head(model: nn.Module) -> nn.Module:
    if hasattr(model, "roi_heads"):
        return model.roi_heads.box_predictor.cls_score
    return model.head.classification_head.cls_logits


@pytest.fixture(scope="module", params=MODEL_PARAMS)
def built(request):
    spec = get_model_spec(request.param)
    torch.manual_seed(0)
    started = time.perf_counter()
    model = build_detector(spec, NUM_CLASSES, pretrained=False, **SETTINGS)
    print(f"{spec.name}: built in {time.perf_counter() - started:.2f} s")
    if hasattr(model, "rpn"):
        # Test speed only: the R-CNN box head (a 12544x1024 matmul per RoI) and Mask R-CNN's mask head (four
        # 256-channel 3x3 convolutions per positive RoI) dominate CPU time; 16 sampled RoIs per image in
        # training instead of 512, 150 proposals instead of 1000-2000.
        model.roi_heads.fg_bg_sampler.batch_size_per_image = 16
        model.rpn._pre_nms_top_n = model.rpn._post_nms_top_n = {"training": 150, "testing": 150}
    return spec, model


def test_settings_and_class_count_reach_the_model(built):
    spec, model = built
    assert model.transform.min_size == (64,) and model.transform.max_size == 128
    assert tuple(model.transform.image_mean) == IMAGENET_MEAN and tuple(model.transform.image_std) == IMAGENET_STD
    if spec.name.startswith("retinanet"):
        assert (model.score_thresh, model.nms_thresh, model.detections_per_img) == (0.25, 0.45, 7)
        assert model.head.classification_head.num_classes == NUM_CLASSES + 1
        anchors = model.head.classification_head.num_anchors
        assert model.head.classification_head.cls_logits.out_channels == anchors * (NUM_CLASSES + 1)
    else:
        heads = model.roi_heads
        assert (heads.score_thresh, heads.nms_thresh, heads.detections_per_img) == (0.25, 0.45, 7)
        assert heads.box_predictor.cls_score.out_features == NUM_CLASSES + 1
        assert heads.box_predictor.bbox_pred.out_features == 4 * (NUM_CLASSES + 1)
    if spec.name.startswith("maskrcnn"):
        assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == NUM_CLASSES + 1
    # trainable_backbone_layers defaults to all: layers_to_freeze is the only freezing rule.
    assert all(p.requires_grad for p in model.parameters())
    # From scratch there are no statistics to freeze: trainable BatchNorm (torchvision's rule).
    assert type(model.backbone.body.bn1) is nn.BatchNorm2d


def test_one_training_step(built):
    spec, model = built
    model = copy.deepcopy(model)
    model.train()
    images, targets = _batch(with_masks=spec.name.startswith("maskrcnn"))
    expected = {"classification", "bbox_regression"} if spec.name.startswith("retinanet") else \
        {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    if spec.name.startswith("maskrcnn"):
        expected.add("loss_mask")
    stem_before = model.backbone.body.conv1.weight.detach().clone()
    head_before = _class_head(model).weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)

    started = time.perf_counter()
    losses = model(images, targets)
    assert set(losses) == expected
    total = sum(losses.values())
    assert total.ndim == 0 and torch.isfinite(total)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    print(f"{spec.name}: training step in {time.perf_counter() - started:.2f} s, loss {total.item():.3f}")

    assert not torch.equal(model.backbone.body.conv1.weight, stem_before)
    assert not torch.equal(_class_head(model).weight, head_before)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def _calibrated(model: nn.Module, with_masks: bool) -> nn.Module:
    """Running BatchNorm statistics of the test batch (one train-mode pass, no update of the weights).

    A network from scratch has running statistics mean 0 / variance 1; in eval mode a deep ResNet then
    amplifies its activations by orders of magnitude (1e7 at ResNet-152's output) and proposals overflow.
    Training sets the statistics; this test only needs sensible ones.
    """
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one pass sets exactly the batch statistics
    images, targets = _batch(with_masks)
    model.train()
    with torch.no_grad():
        model(images, targets)
    return model


def test_eval_returns_boxes_labels_scores_in_image_pixels(built):
    spec, model = built
    model = _calibrated(copy.deepcopy(model), with_masks=spec.name.startswith("maskrcnn")).eval()
    # Every detection scoring above 0: with random weights, label 0 (background) would surely be among 100 of
    # them if it could be predicted (RetinaNet scores it with its own sigmoid; the R-CNNs drop its column).
    # 10 for the R-CNNs only because Mask R-CNN's mask head and mask pasting cost seconds per hundred on a CPU.
    if hasattr(model, "roi_heads"):
        model.roi_heads.score_thresh, model.roi_heads.detections_per_img = 0.0, 10
    else:
        model.score_thresh, model.detections_per_img = 0.0, 100
    images, _ = _batch(with_masks=False)
    with torch.no_grad():
        outputs = model(images)
    assert len(outputs) == 2
    for output in outputs:
        keys = {"boxes", "labels", "scores"} | ({"masks"} if spec.name.startswith("maskrcnn") else set())
        assert set(output) == keys
        n = len(output["boxes"])
        assert 0 < n <= 100
        assert output["boxes"].shape == (n, 4) and output["scores"].shape == (n,)
        assert output["labels"].dtype == torch.int64
        assert output["labels"].min() >= 1 and output["labels"].max() <= NUM_CLASSES
        assert torch.all(output["scores"][:-1] >= output["scores"][1:])
        # Boxes come back in the input image's pixels (the 64-px resize is undone).
        boxes = output["boxes"]
        assert boxes[:, 0::2].min() >= 0 and boxes[:, 0::2].max() <= W
        assert boxes[:, 1::2].min() >= 0 and boxes[:, 1::2].max() <= H
        if "masks" in output:
            assert output["masks"].shape == (n, 1, H, W)
            assert output["masks"].min() >= 0 and output["masks"].max() <= 1


def test_freezing_two_groups_freezes_exactly_stem_and_layer1(built):
    spec, model = built
    model = copy.deepcopy(model)
    frozen = freeze_layer_groups(model, spec, 2)
    expected = {name for name, _ in model.named_parameters() if name.startswith(STEM_AND_LAYER1)}
    assert set(frozen) == expected
    assert {"backbone.body.conv1.weight", "backbone.body.layer1.0.conv1.weight"} <= expected
    for name, param in model.named_parameters():
        assert param.requires_grad == (name not in expected), name


def test_every_detector_group_matches_parameters(built):
    spec, model = built
    model = copy.deepcopy(model)
    frozen = freeze_layer_groups(model, spec, len(spec.layer_groups))
    backbone_body = {name for name, _ in model.named_parameters() if name.startswith("backbone.body.")}
    assert set(frozen) == backbone_body
    assert any(p.requires_grad for name, p in model.named_parameters() if name.startswith("backbone.fpn."))


@pytest.mark.parametrize("name, builder", [
    ("fasterrcnn_resnet50_fpn", torchvision.models.detection.fasterrcnn_resnet50_fpn),
    ("maskrcnn_resnet50_fpn", torchvision.models.detection.maskrcnn_resnet50_fpn),
    ("retinanet_resnet50_fpn", torchvision.models.detection.retinanet_resnet50_fpn),
])
def test_resnet50_detectors_have_the_architecture_of_torchvision_coco_models(name, builder):
    """The COCO checkpoints load only into torchvision's exact architecture: same tensor names and shapes."""
    ours = build_detector(get_model_spec(name), NUM_CLASSES, pretrained=False, **SETTINGS).state_dict()
    reference = builder(weights=None, weights_backbone=None, num_classes=91).state_dict()
    class_heads = detection.CLASS_HEAD_PREFIXES
    assert set(ours) == set(reference)
    assert {k: v.shape for k, v in ours.items() if not k.startswith(class_heads)} == \
        {k: v.shape for k, v in reference.items() if not k.startswith(class_heads)}


# -- local weights -------------------------------------------------------------------------------------------

def _backbone_and_rpn(state: dict) -> dict:
    return {k: v for k, v in state.items()
            if k.startswith(("backbone.", "rpn.", "roi_heads.box_head.")) and not k.endswith("num_batches_tracked")}


def test_pretrained_weights_of_another_class_count_keep_all_but_the_predictor(tmp_path):
    spec = get_model_spec("fasterrcnn_resnet18_fpn")
    torch.manual_seed(1)
    source = build_detector(spec, 5, pretrained=False, **SETTINGS)
    path = tmp_path / "model.pt"
    # The layout of jupyter_avml's exported model.pt: the weights under "state_dict" beside plain values.
    torch.save({"format": "jupyter_avml.model/1", "class_names": list("abcde"), "state_dict": source.state_dict()},
               path)
    torch.manual_seed(2)
    model = build_detector(spec, NUM_CLASSES, pretrained_weights=str(path), **SETTINGS)

    loaded, expected = model.state_dict(), _backbone_and_rpn(source.state_dict())
    assert expected and all(torch.equal(loaded[k], v) for k, v in expected.items())
    predictor = model.roi_heads.box_predictor
    assert predictor.cls_score.weight.shape == (NUM_CLASSES + 1, 1024)
    assert predictor.bbox_pred.weight.shape == (4 * (NUM_CLASSES + 1), 1024)
    # Trained statistics are kept frozen, as torchvision does when fine-tuning a detector.
    assert isinstance(model.backbone.body.bn1, FrozenBatchNorm2d)
    assert torch.equal(model.backbone.body.bn1.running_var, source.backbone.body.bn1.running_var)
    # FrozenBatchNorm2d has no parameters: freezing the stem group freezes conv1 alone, then layer1.
    frozen = freeze_layer_groups(model, spec, 2)
    assert "backbone.body.conv1.weight" in frozen and not any(n.startswith("backbone.body.bn1.") for n in frozen)
    assert set(frozen) == {n for n, _ in model.named_parameters() if n.startswith(STEM_AND_LAYER1)}


def test_pretrained_weights_with_the_same_class_count_load_the_predictor_too(tmp_path):
    spec = get_model_spec("retinanet_resnet50_fpn")
    torch.manual_seed(1)
    source = build_detector(spec, NUM_CLASSES, pretrained=False, **SETTINGS)
    with torch.no_grad():
        source.head.classification_head.cls_logits.weight.add_(1.0)
    path = tmp_path / "retinanet.pth"
    torch.save(source.state_dict(), path)
    model = build_detector(spec, NUM_CLASSES, pretrained_weights=str(path), **SETTINGS)
    assert torch.equal(model.head.classification_head.cls_logits.weight,
                       source.head.classification_head.cls_logits.weight)


def test_weights_of_another_depth_are_refused_naming_the_tensors(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(build_detector(get_model_spec("fasterrcnn_resnet18_fpn"), NUM_CLASSES, pretrained=False,
                              **SETTINGS).state_dict(), path)
    with pytest.raises(WeightsUnavailableError) as error:
        build_detector(get_model_spec("fasterrcnn_resnet34_fpn"), NUM_CLASSES, pretrained_weights=str(path),
                       **SETTINGS)
    message = str(error.value)
    assert str(path) in message and "missing" in message and "backbone.body.layer1.2." in message


def test_a_bare_imagenet_resnet_loads_into_the_backbone(tmp_path):
    resnet = torchvision.models.resnet34(weights=None)
    path = tmp_path / "resnet34-b627a593.pth"
    torch.save(resnet.state_dict(), path)
    model = build_detector(get_model_spec("maskrcnn_resnet34_fpn"), NUM_CLASSES, pretrained_weights=str(path),
                           **SETTINGS)
    body = model.backbone.body.state_dict()
    assert all(torch.equal(body[k], v) for k, v in resnet.state_dict().items()
               if not k.startswith("fc.") and not k.endswith("num_batches_tracked"))


def test_a_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(WeightsUnavailableError, match="nowhere.pth"):
        build_detector(get_model_spec("fasterrcnn_resnet18_fpn"), NUM_CLASSES, pretrained_weights=str(missing))


# -- downloads -----------------------------------------------------------------------------------------------

@pytest.fixture
def offline(tmp_path, monkeypatch, no_network):
    """An empty torch hub cache (TORCH_HOME) and no network; returns the list of hosts the code tried to reach."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return no_network


@pytest.mark.parametrize("name, url", [
    ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"),
    ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"),
    ("retinanet_resnet50_fpn", "retinanet_resnet50_fpn_coco-eeacb38b.pth"),
    ("fasterrcnn_resnet18_fpn", "resnet18-f37072fd.pth"),
    ("maskrcnn_resnet152_fpn", "resnet152-394f9c45.pth"),
])
def test_offline_pretrained_fails_fast_with_guidance(name, url, offline, tmp_path):
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as error:
        build_detector(get_model_spec(name), NUM_CLASSES, pretrained=True)
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert f"https://download.pytorch.org/models/{url}" in message
    assert "pretrained: false" in message and "pretrained_weights: PATH" in message
    assert "download.pytorch.org" in message and str(tmp_path / "torch") in message
    assert offline == [("getaddrinfo", "download.pytorch.org")]
    assert not (tmp_path / "torch").exists()  # nothing written into the cache


def test_cached_imagenet_weights_are_used_without_network(offline, tmp_path):
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    resnet = torchvision.models.resnet18(weights=None)
    torch.save(resnet.state_dict(), cache / weights.url.rsplit("/", 1)[1])

    model = build_detector(get_model_spec("fasterrcnn_resnet18_fpn"), NUM_CLASSES, pretrained=True, **SETTINGS)
    assert offline == []
    assert torch.equal(model.backbone.body.conv1.weight, resnet.conv1.weight)
    assert torch.equal(model.backbone.body.layer4[1].bn2.running_mean, resnet.layer4[1].bn2.running_mean)
    assert isinstance(model.backbone.body.bn1, FrozenBatchNorm2d)


@pytest.mark.slow
def test_cached_coco_weights_load_with_a_new_predictor(offline, tmp_path):
    weights = torchvision.models.detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(3)
    coco = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    torch.save(coco.state_dict(), cache / weights.url.rsplit("/", 1)[1])

    model = build_detector(get_model_spec("fasterrcnn_resnet50_fpn"), NUM_CLASSES, pretrained=True, **SETTINGS)
    assert offline == []
    loaded, expected = model.state_dict(), _backbone_and_rpn(coco.state_dict())
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    assert model.roi_heads.box_predictor.cls_score.weight.shape == (NUM_CLASSES + 1, 1024)
    # torchvision's v1 COCO weights were trained with eps=0 in their frozen BatchNorm.
    assert model.backbone.body.bn1.eps == 0.0


@pytest.mark.parametrize("failure", [urllib.error.URLError("timed out"), ConnectionResetError(104, "reset by peer")])
def test_a_failed_download_becomes_weights_unavailable(failure, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(detection, "unreachable_reason", lambda url, timeout=3.0: None)  # the host answers...

    def failing_download(request, timeout=None):  # ...but the transfer breaks
        assert timeout == 30.0  # a timeout for this request (no process-wide socket default)
        raise failure

    monkeypatch.setattr(urllib.request, "urlopen", failing_download)
    with pytest.raises(WeightsUnavailableError) as error:
        build_detector(get_model_spec("fasterrcnn_resnet34_fpn"), NUM_CLASSES, pretrained=True)
    message = str(error.value)
    assert "download of https://download.pytorch.org/models/resnet34-b627a593.pth" in message
    assert type(failure).__name__ in message and "pretrained: false" in message
    assert [p for p in (tmp_path / "torch").rglob("*") if p.is_file()] == []  # no partial or temporary file


def test_a_damaged_cache_file_is_named(offline, tmp_path):
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    damaged = cache / "resnet18-f37072fd.pth"
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError) as error:
        build_detector(get_model_spec("maskrcnn_resnet18_fpn"), NUM_CLASSES, pretrained=True)
    assert str(damaged) in str(error.value) and "delete it" in str(error.value)


def test_unreachable_reason_reports_a_resolver_failure(offline):
    reason = detection.unreachable_reason("https://example.invalid/file.pth")
    assert reason is not None and "example.invalid" in reason


@pytest.mark.parametrize("num_classes", [0, -1, 2.5])
def test_num_classes_must_be_a_positive_int(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        build_detector(get_model_spec("fasterrcnn_resnet18_fpn"), num_classes, pretrained=False)


def test_only_torchvision_entries_are_accepted():
    with pytest.raises(ValueError, match="yolov5"):
        build_detector(get_model_spec("yolov5"), NUM_CLASSES, pretrained=False)


def test_the_registry_entries_resolve_to_these_builders():
    from jupyter_avml.models.yolo import build_yolo

    assert all(get_model_spec(name).build_fn() is build_detector for name in DETECTORS)
    assert get_model_spec("yolov5").build_fn() is build_yolo
    assert len(DETECTORS) == 11
