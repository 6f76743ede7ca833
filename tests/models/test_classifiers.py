"""timm classifiers: one training step per registered model, layer freezing, local and offline weights.

Every entry of ``list_models("image-classification")`` gets the per-model tests. Each network is built once
(a module-scoped fixture, so pytest runs a model's tests together and frees it before the next) and every test
trains a deep copy, comparing against the untouched original. Inputs are 2 images of 32 px (ViTs built with
``img_size=32``: a 2x2 patch grid).
"""

from __future__ import annotations

import copy
import time

import pytest
import timm
import torch
import torch.nn.functional as F

from jupyter_avml.errors import WeightsUnavailableError
from jupyter_avml.models import get_model_spec, list_models
from jupyter_avml.models.classification import build_classifier, classifier_data_config, weights_url
from jupyter_avml.models.freeze import freeze_layer_groups

NUM_CLASSES = 3
IMG = 32
SLOW = {"resnet101", "resnet152", "resnest101", "seresnext", "vitb16r224", "vitl16r224"}
CLASSIFIERS = list_models("image-classification")
MODEL_PARAMS = [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in CLASSIFIERS]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: tiny inputs gain nothing from more, and on shared CI cores the extra threads
    oversubscribe them (this file measured 4x slower with 2 threads on 2 busy cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _batch(size: int = IMG):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, size, size, generator=generator)
    labels = torch.tensor([0, NUM_CLASSES - 1])
    return images, labels


def _train_step(model, images, labels, lr: float = 1.0):
    """Forward, cross-entropy, backward, one SGD step over the trainable parameters."""
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    optimizer.zero_grad()
    logits = model(images)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    optimizer.step()
    return logits.detach(), loss.detach()


def _group_of(spec, name: str) -> int | None:
    for index, group in enumerate(spec.layer_groups):
        if name.startswith(group):
            return index
    return None


@pytest.fixture(scope="module", params=MODEL_PARAMS)
def built(request):
    """``(spec, pristine model)``: built once per model; tests train copies of it."""
    spec = get_model_spec(request.param)
    torch.manual_seed(0)
    return spec, build_classifier(spec, NUM_CLASSES, pretrained=False, img_size=IMG)


def _assert_trained(spec, model, pristine, frozen: set[str]):
    """Frozen parameters untouched; every other one reached by the gradient and moved where it was non-zero."""
    before = dict(pristine.named_parameters())
    moved_groups = set()
    for name, param in model.named_parameters():
        if name in frozen:
            assert param.grad is None, f"frozen {name} got a gradient"
            assert torch.equal(param, before[name]), f"frozen {name} changed"
            continue
        assert param.grad is not None, f"{name} is not reached by the loss"
        changed = not torch.equal(param, before[name])
        # timm zero-initialises the last BatchNorm of each residual branch, so in the first step the layers
        # inside the branch get an exactly-zero gradient; everything with a gradient must move.
        if param.grad.abs().max() > 0:
            assert changed, f"{name} has a gradient but did not change"
        if changed:
            moved_groups.add(_group_of(spec, name))
    trainable_groups = {i for i in range(len(spec.layer_groups))
                        if not any(_group_of(spec, n) == i for n in frozen)}
    assert trainable_groups | {None} <= moved_groups, "every trainable group and the head learn"


def test_build_and_one_training_step(built):
    spec, pristine = built
    model = copy.deepcopy(pristine)
    assert model.get_classifier().out_features == NUM_CLASSES
    images, labels = _batch()
    logits, loss = _train_step(model, images, labels)
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(loss)
    _assert_trained(spec, model, pristine, frozen=set())


def test_freezing_two_groups_freezes_exactly_them(built):
    spec, pristine = built
    model = copy.deepcopy(pristine)
    names = [n for n, _ in model.named_parameters()]
    expected = {n for n in names if _group_of(spec, n) in (0, 1)}
    assert expected and len(expected) < len(names)

    frozen = freeze_layer_groups(model, spec, 2)

    assert set(frozen) == expected
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == expected
    stem_conv = model.pretrained_cfg["first_conv"] + ".weight"
    assert stem_conv in expected, "the first group is the stem"
    logits, loss = _train_step(model, *_batch())
    assert logits.shape == (2, NUM_CLASSES) and torch.isfinite(loss)
    _assert_trained(spec, model, pristine, frozen=expected)


# -- build options -----------------------------------------------------------------------------------------
def test_vit_is_built_for_img_size_and_convnets_take_any_size():
    vit = build_classifier(get_model_spec("vits16r224"), NUM_CLASSES, pretrained=False, img_size=48)
    assert vit.pos_embed.shape[1] == 1 + 3 * 3
    assert vit(torch.randn(1, 3, 48, 48)).shape == (1, NUM_CLASSES)
    resnet = build_classifier(get_model_spec("resnet18"), NUM_CLASSES, pretrained=False, img_size=48).eval()
    assert resnet(torch.randn(1, 3, 48, 48)).shape == (1, NUM_CLASSES)
    assert resnet(torch.randn(1, 3, 40, 56)).shape == (1, NUM_CLASSES)


def test_drop_rate_reaches_the_network():
    model = build_classifier(get_model_spec("resnet18"), NUM_CLASSES, pretrained=False, drop_rate=0.25)
    assert model.drop_rate == 0.25


@pytest.mark.parametrize("num_classes", [0, -1, 2.0, True])
def test_num_classes_must_be_a_positive_int(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        build_classifier(get_model_spec("resnet18"), num_classes, pretrained=False)


@pytest.mark.parametrize("name, mean, std, interpolation", [
    ("vitb16r224", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic"),
    ("resnet50", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic"),
    ("resnest50", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear"),
])
def test_data_config_is_that_of_the_pretrained_weights(name, mean, std, interpolation):
    with torch.device("meta"):
        model = build_classifier(get_model_spec(name), NUM_CLASSES, pretrained=False)
    config = classifier_data_config(model)
    assert config == {"mean": pytest.approx(mean), "std": pytest.approx(std), "interpolation": interpolation}


# -- pretrained_weights: a local file ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet18_10():
    """A resnet18 with a 10-class head, as someone's earlier training would have saved it."""
    torch.manual_seed(1)
    return build_classifier(get_model_spec("resnet18"), 10, pretrained=False)


def _assert_backbone_from(model, source):
    target, saved = model.state_dict(), source.state_dict()
    for key, value in saved.items():
        if not key.startswith("fc."):
            assert torch.equal(target[key], value), key


@pytest.mark.parametrize("layout", ["plain", "state_dict", "model", "ddp-prefixed", "safetensors"])
def test_local_weights_load_the_backbone_and_reinitialise_a_different_head(resnet18_10, tmp_path, layout):
    state = resnet18_10.state_dict()
    if layout == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "resnet18.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        payload = {"plain": state, "state_dict": {"state_dict": state, "epoch": 3, "class_names": ["a", "b"]},
                   "model": {"model": state}, "ddp-prefixed": {f"module.{k}": v for k, v in state.items()}}[layout]
        path = tmp_path / "resnet18.pth"
        torch.save(payload, path)

    torch.manual_seed(2)
    model = build_classifier(get_model_spec("resnet18"), NUM_CLASSES, pretrained_weights=str(path))

    _assert_backbone_from(model, resnet18_10)
    assert model.fc.weight.shape == (NUM_CLASSES, 512) and model.fc.bias.shape == (NUM_CLASSES,)
    assert not torch.equal(model.fc.weight, resnet18_10.fc.weight[:NUM_CLASSES])


def test_local_weights_with_the_same_head_keep_it(resnet18_10, tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_10.state_dict(), path)
    model = build_classifier(get_model_spec("resnet18"), 10, pretrained=False, pretrained_weights=path)
    assert torch.equal(model.fc.weight, resnet18_10.fc.weight) and torch.equal(model.fc.bias, resnet18_10.fc.bias)


def test_local_weights_without_a_head_are_a_backbone(resnet18_10, tmp_path):
    path = tmp_path / "backbone.pth"
    torch.save({k: v for k, v in resnet18_10.state_dict().items() if not k.startswith("fc.")}, path)
    model = build_classifier(get_model_spec("resnet18"), NUM_CLASSES, pretrained_weights=path)
    _assert_backbone_from(model, resnet18_10)
    assert model.fc.weight.shape == (NUM_CLASSES, 512)


def test_local_vit_weights_are_resampled_to_img_size(tmp_path):
    spec = get_model_spec("vits16r224")
    torch.manual_seed(3)
    source = build_classifier(spec, 10, pretrained=False, img_size=32)  # 2x2 grid
    path = tmp_path / "vit.pth"
    torch.save(source.state_dict(), path)

    model = build_classifier(spec, NUM_CLASSES, pretrained_weights=path, img_size=48)  # 3x3 grid

    assert model.pos_embed.shape == (1, 1 + 9, 384)
    assert torch.equal(model.pos_embed[:, :1], source.pos_embed[:, :1]), "the class token's embedding is kept"
    assert torch.equal(model.blocks[5].mlp.fc1.weight, source.blocks[5].mlp.fc1.weight)
    assert model.head.weight.shape == (NUM_CLASSES, 384)
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, NUM_CLASSES)


def test_weights_of_another_architecture_name_the_keys(tmp_path):
    torch.manual_seed(4)
    other = build_classifier(get_model_spec("mobilenetv2"), 10, pretrained=False)
    path = tmp_path / "mobilenet.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(WeightsUnavailableError) as info:
        build_classifier(get_model_spec("resnet18"), NUM_CLASSES, pretrained_weights=path)
    message = str(info.value)
    assert str(path) in message and "resnet18" in message
    assert "missing tensors (conv1.weight" in message
    assert "unexpected tensors (conv_stem.weight" in message


def test_weights_of_a_deeper_variant_are_unexpected_keys(tmp_path):
    torch.manual_seed(5)
    resnet34 = build_classifier(get_model_spec("resnet34"), NUM_CLASSES, pretrained=False)
    path = tmp_path / "resnet34.pth"
    torch.save(resnet34.state_dict(), path)
    with pytest.raises(WeightsUnavailableError, match=r"unexpected tensors \(layer1\.2\.conv1\.weight") as info:
        build_classifier(get_model_spec("resnet18"), NUM_CLASSES, pretrained_weights=path)
    assert "missing" not in str(info.value)


def test_a_reshaped_tensor_outside_the_head_is_an_error(resnet18_10, tmp_path):
    state = resnet18_10.state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    with pytest.raises(WeightsUnavailableError, match=r"layer1\.0\.conv1\.weight: file \(32, 64, 3, 3\) vs model "
                                                       r"\(64, 64, 3, 3\)"):
        build_classifier(get_model_spec("resnet18"), NUM_CLASSES, pretrained_weights=path)


def test_a_missing_weights_file_is_named(tmp_path):
    path = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(WeightsUnavailableError, match="does not exist") as info:
        build_classifier(get_model_spec("vitl16r224"), NUM_CLASSES, pretrained_weights=path)
    assert str(path) in str(info.value) and "pretrained_weights" in str(info.value)


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b""])
def test_an_unreadable_weights_file_is_named(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsUnavailableError, match="cannot read") as info:
        build_classifier(get_model_spec("resnet18"), NUM_CLASSES, pretrained_weights=path)
    assert str(path) in str(info.value)


def test_a_checkpoint_without_a_state_dict_is_explained(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"epoch": 3, "weights": {"conv1.weight": torch.zeros(1)}}, path)
    with pytest.raises(WeightsUnavailableError, match="not a state dict: entries epoch, weights are not tensors"):
        build_classifier(get_model_spec("resnet18"), NUM_CLASSES, pretrained_weights=path)


# -- pretrained=True: the hub, offline ---------------------------------------------------------------------
@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache (HF_HOME) and a hub download that must not be reached."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return tmp_path / "hf" / "hub"


def _forbid_downloads(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError(f"offline build tried to download {args} {kwargs}")

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", no_network)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_url", no_network)


def _assert_guidance(message: str, spec):
    assert spec.name in message and spec.backend in message
    assert "pretrained: false" in message
    assert "pretrained_weights: PATH" in message
    assert f"https://huggingface.co/timm/{spec.backend}/resolve/main/model.safetensors" in message


# Models with local weights (a pip package) need no hub: tests/models/test_local_weights.py builds them offline.
@pytest.mark.parametrize("name", [n for n in CLASSIFIERS if get_model_spec(n).local_weights is None])
def test_offline_without_cached_weights_fails_fast_with_guidance(name, empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _forbid_downloads(monkeypatch)
    spec = get_model_spec(name)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        build_classifier(spec, NUM_CLASSES, pretrained=True, img_size=IMG)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    _assert_guidance(message, spec)
    assert "HF_HUB_OFFLINE" in message and str(empty_hf_cache) in message
    assert weights_url(spec) in message


def _put_in_hub_cache(cache, backend: str, state_dict) -> None:
    """The layout huggingface_hub writes: refs/main names a snapshot holding the file."""
    from safetensors.torch import save_file

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--timm--{backend}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state_dict.items()},
              str(repo / "snapshots" / commit / "model.safetensors"))


def test_offline_with_cached_weights_loads_them_from_the_cache(empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _forbid_downloads(monkeypatch)
    spec = get_model_spec("resnet18")
    torch.manual_seed(6)
    imagenet = build_classifier(spec, 1000, pretrained=False)
    _put_in_hub_cache(empty_hf_cache, spec.backend, imagenet.state_dict())

    torch.manual_seed(7)
    model = build_classifier(spec, NUM_CLASSES, pretrained=True)

    _assert_backbone_from(model, imagenet)
    assert model.fc.weight.shape == (NUM_CLASSES, 512)


def test_offline_cached_vit_weights_are_resampled_to_img_size(empty_hf_cache, monkeypatch):
    """ViT tags whose original release was a JAX .npz still load the hub's safetensors; 224 px -> 32 px."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _forbid_downloads(monkeypatch)
    spec = get_model_spec("vits16r224")
    assert timm.models.get_pretrained_cfg(spec.backend).custom_load, "the case this test is about"
    torch.manual_seed(8)
    imagenet = build_classifier(spec, 1000, pretrained=False)  # 224 px: a 14x14 grid
    _put_in_hub_cache(empty_hf_cache, spec.backend, imagenet.state_dict())

    model = build_classifier(spec, NUM_CLASSES, pretrained=True, img_size=IMG)  # a 2x2 grid

    assert model.pos_embed.shape == (1, 1 + 4, 384)
    assert torch.equal(model.pos_embed[:, :1], imagenet.pos_embed[:, :1])
    assert torch.equal(model.blocks[11].attn.qkv.weight, imagenet.blocks[11].attn.qkv.weight)
    assert model.head.weight.shape == (NUM_CLASSES, 384)


def _connection_errors():
    import httpx
    from huggingface_hub.errors import LocalEntryNotFoundError

    return [ConnectionError("Failed to establish a new connection: [Errno 101] Network is unreachable"),
            OSError("[Errno -3] Temporary failure in name resolution"),
            httpx.ConnectError("All connection attempts failed"),
            LocalEntryNotFoundError("Cannot find the requested files in the local cache")]


@pytest.mark.parametrize("error", _connection_errors(), ids=lambda e: type(e).__name__)
def test_a_failed_download_becomes_weights_unavailable(error, empty_hf_cache, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    calls = []

    def failing_download(*args, **kwargs):
        calls.append(kwargs)
        raise error

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", failing_download)
    spec = get_model_spec("resnet18")
    with pytest.raises(WeightsUnavailableError) as info:
        build_classifier(spec, NUM_CLASSES, pretrained=True)
    assert info.value.__cause__ is error
    assert calls and calls[0]["repo_id"] == f"timm/{spec.backend}"
    assert calls[0]["cache_dir"] == str(empty_hf_cache), "the cache the environment names now"
    message = str(info.value)
    _assert_guidance(message, spec)
    assert "could not be downloaded from https://huggingface.co/timm/resnet18.a1_in1k" in message
    assert type(error).__name__ in message


def test_a_bug_during_loading_is_not_disguised(empty_hf_cache, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def broken(*args, **kwargs):
        raise KeyError("a programming error")

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", broken)
    with pytest.raises(KeyError):
        build_classifier(get_model_spec("resnet18"), NUM_CLASSES, pretrained=True)
