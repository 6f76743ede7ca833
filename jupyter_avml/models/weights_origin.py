"""Where the pretrained weights of a model would come from now, without loading or downloading anything.

``weights_origin(spec)`` answers for ``avml models`` and for AutoMode (which starts with the models whose
weights are at hand):

- ``local``: a pip package of the catalogue entry's ``LocalWeights`` is installed (``local_weights.py``);
- ``cached``: the library's own download is already in its cache (the Hugging Face hub cache for timm,
  ``torch.hub``'s checkpoints for torchvision, the workspace's ultralytics folder for YOLO);
- ``download``: the library would download them (network needed), or the entry's package is not installed;
- ``none``: no pretrained weights exist for it.

Every check is a file lookup: nothing is imported from the weights packages, nothing is hashed (the checksum
is verified when the weights are used).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["WeightsOrigin", "weights_origin", "AVAILABLE"]

#: Origins that need no network.
AVAILABLE = ("local", "cached")


@dataclass(frozen=True)
class WeightsOrigin:
    """``kind`` is ``local``, ``cached``, ``download`` or ``none``; ``detail`` says which package or file."""

    kind: str
    detail: str

    @property
    def available(self) -> bool:
        """Whether ``pretrained: 1`` works without a network."""
        return self.kind in AVAILABLE


def weights_origin(spec, *, workspace: str | os.PathLike | None = None,
                   model_size: str = "medium") -> WeightsOrigin:
    """Where ``pretrained: 1`` would take the weights of ``spec`` (a catalogue entry) from, right now.

    ``workspace`` is where YOLO keeps its downloads (default: the current workspace); ``model_size`` the YOLO
    size asked for.
    """
    local = getattr(spec, "local_weights", None)
    if local is not None:
        if local.locate() is not None:
            return WeightsOrigin("local", f"{local.package} (pip)")
        return WeightsOrigin("download", f"{local.install_hint()} (not installed)")
    from jupyter_avml.models.families import get_family

    return get_family(spec.family).weights_origin_function()(spec, workspace, model_size)


def timm_origin(spec, workspace, model_size: str) -> WeightsOrigin:
    """timm: its pretrained config names a Hugging Face repository or a URL."""
    return _timm_origin(spec.backend)


def torchvision_origin(spec, workspace, model_size: str) -> WeightsOrigin:
    return _torchvision_origin(spec)


def yolo_origin(spec, workspace, model_size: str) -> WeightsOrigin:
    return _yolo_origin(workspace, model_size)


def _timm_origin(backend: str) -> WeightsOrigin:
    import timm

    from jupyter_avml.models.weights import find_cached_hub_file, find_cached_url_file, hub_cache_dir

    cfg = timm.models.get_pretrained_cfg(backend)
    if cfg is None:
        return WeightsOrigin("none", f"timm has no pretrained weights for {backend}")
    repo_id, _, revision = (cfg.hf_hub_id or "").partition("@")
    if repo_id:
        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin")
        if find_cached_hub_file(repo_id, files, revision=revision or None, cache_dir=hub_cache_dir()) is not None:
            return WeightsOrigin("cached", f"Hugging Face cache ({repo_id})")
        return WeightsOrigin("download", f"Hugging Face hub ({repo_id})")
    if cfg.url:
        if find_cached_url_file(cfg.url) is not None:
            return WeightsOrigin("cached", "torch hub cache")
        return WeightsOrigin("download", cfg.url)
    return WeightsOrigin("none", f"timm has no download location for {backend}")


def _torchvision_origin(spec) -> WeightsOrigin:
    from jupyter_avml.models import detection

    architecture, backbone = detection.parse_detector_name(spec)
    weights = detection._coco_weights(architecture, backbone) or detection._imagenet_weights(backbone)
    if detection.torchvision_cache_file(weights).is_file():
        return WeightsOrigin("cached", "torch hub cache")
    return WeightsOrigin("download", weights.url)


def _yolo_origin(workspace, model_size: str) -> WeightsOrigin:
    from jupyter_avml.models.yolo import yolo_weights_file
    from jupyter_avml.workspace import Workspace

    name = yolo_weights_file(model_size)
    folder = Workspace.resolve(workspace).cache_dir / "ultralytics" / "weights"
    if (folder / name).is_file():
        return WeightsOrigin("cached", str(folder / name))
    return WeightsOrigin("download", f"ultralytics release asset {name}")
