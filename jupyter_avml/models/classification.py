"""Classification networks (multi-class and multi-label) from timm, for the catalog's ``family="timm"`` entries.

``spec.backend`` is timm's ``architecture.tag`` (e.g. ``vit_base_patch16_224.augreg2_in21k_ft_in1k``): the tag
pins the pretrained weights, so an upgrade of timm that changes an architecture's default tag does not change
what a run starts from.

Where the starting weights come from, in order:

1. ``pretrained_weights=PATH``: a local state dict read as data, never by running code (see
   :func:`jupyter_avml.models.weights_files.read_state_dict`),
   whatever ``pretrained`` says. The classifier head is reinitialised when its shape differs; every other
   difference is an error. ViT position embeddings are resampled to ``img_size`` by timm's checkpoint filter.
2. ``pretrained=True``: the catalogue entry's ``local_weights`` when it has one (a pip package's file,
   checksum verified, mapped in order: ``local_weights.py``); else timm's own loading from the Hugging Face
   hub (or its cache). With ``HF_HUB_OFFLINE`` set, only the cache is consulted, and a miss fails at once.
3. ``pretrained=False``: random initialisation.

Failures to obtain weights raise :class:`~jupyter_avml.errors.WeightsUnavailableError` with guidance.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from jupyter_avml.models.weights import (
    describe_error,
    download_errors,
    find_cached_hub_file,
    find_cached_url_file,
    hub_cache_dir,
    hub_offline,
    hub_url,
    load_state_dict_checked,
    weights_unavailable,
)
from jupyter_avml.models.weights_files import read_state_dict
from jupyter_avml.models.zoo import ModelSpec

_logger = logging.getLogger(__name__)

#: The files timm looks for in a hub repository, in its order of preference (timm.models._hub's
#: HF_SAFE_WEIGHTS_NAME, then HF_WEIGHTS_NAME).
_HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def build_classifier(spec: ModelSpec, num_classes: int, *, pretrained: bool = True,
                     pretrained_weights: str | os.PathLike | None = None, img_size: int | None = None,
                     drop_rate: float = 0.0):
    """Build the timm network of ``spec`` with a fresh ``num_classes``-way head.

    Parameters
    ----------
    spec : ModelSpec
        A classification entry of the catalog (``spec.backend`` is timm's ``architecture[.tag]``).
    num_classes : int
        Outputs of the head (>= 1); the model returns logits of shape ``(N, num_classes)``.
    pretrained : bool
        Start from the tag's pretrained weights (hub or cache), else from random initialisation.
    pretrained_weights : path, optional
        A local weights file to start from instead (takes precedence over ``pretrained``).
    img_size : int, optional
        Side of the square input, for architectures built for one input size (ViT: ``fixed_input_size`` in
        timm's pretrained config); pretrained position embeddings are resampled to it. Convolutional
        networks take any size, and ignore it.
    drop_rate : float
        Dropout before the classifier.

    Returns
    -------
    torch.nn.Module
        Takes ``(N, 3, H, W)`` float images normalised with :func:`classifier_data_config`'s mean and std.

    Raises
    ------
    WeightsUnavailableError
        The weights cannot be had (offline and not cached, network failure, missing or mismatched file); the
        message says what happened and how to proceed.
    """
    import timm

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    kwargs: dict[str, Any] = {"num_classes": num_classes, "drop_rate": drop_rate}
    cfg = timm.models.get_pretrained_cfg(spec.backend)
    if img_size is not None and (spec.fixed_input_size or (cfg is not None and cfg.fixed_input_size)):
        kwargs["img_size"] = img_size

    if pretrained_weights is not None:
        # Read first: a bad path fails before minutes of building a large network.
        state_dict = read_state_dict(pretrained_weights)
        model = timm.create_model(spec.backend, pretrained=False, **kwargs)
        state_dict = _checkpoint_filter(model)(state_dict, model)
        load_state_dict_checked(model, state_dict, source=str(pretrained_weights),
                                what=f"timm {spec.backend} ({spec.name})", head_modules=_head_modules(model))
        _logger.info("%s: weights from %s", spec.name, pretrained_weights)
        return model
    if not pretrained:
        return timm.create_model(spec.backend, pretrained=False, **kwargs)
    if spec.local_weights is not None:  # weights a pip package installs: never the hub
        from jupyter_avml.models.local_weights import load_local_weights

        model = timm.create_model(spec.backend, pretrained=False, **kwargs)
        load_local_weights(model, spec.local_weights, what=f"Pretrained weights for {spec.name}")
        return model
    return _create_pretrained(spec, cfg, kwargs)


def classifier_data_config(model) -> dict[str, Any]:
    """How inputs of ``model`` are normalised: the values its pretrained weights were trained with.

    Returns ``{"mean": (r, g, b), "std": (r, g, b), "interpolation": "bicubic" | "bilinear" | ...}`` from timm's
    pretrained config of the model (``timm.data.resolve_data_config``); mean and std apply to images scaled
    to [0, 1].
    """
    from timm.data import resolve_data_config

    config = resolve_data_config({}, model=model)
    return {"mean": tuple(float(v) for v in config["mean"]), "std": tuple(float(v) for v in config["std"]),
            "interpolation": str(config["interpolation"])}


def weights_url(spec: ModelSpec) -> str | None:
    """Where the pretrained weights of ``spec`` can be downloaded by hand (for error messages and docs)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(spec.backend)
    if cfg is None:
        return None
    repo_id, _, revision = (cfg.hf_hub_id or "").partition("@")
    if repo_id:
        return hub_url(repo_id, cfg.hf_hub_filename or _HUB_WEIGHT_FILES[0], revision or None)
    return cfg.url or None


# -- internals ---------------------------------------------------------------------------------------------
def _create_pretrained(spec: ModelSpec, cfg, kwargs: dict[str, Any]):
    import timm

    what = f"Pretrained weights for {spec.name} (timm {spec.backend})"
    repo_id, _, revision = ((cfg.hf_hub_id if cfg is not None else None) or "").partition("@")
    url = weights_url(spec)
    if cfg is None or not (repo_id or cfg.url or cfg.file):
        raise weights_unavailable(what, "timm knows no download location for this tag", url)

    if hub_offline():
        # Never call the download path offline: find the file in the cache, or fail now.
        if repo_id:
            files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _HUB_WEIGHT_FILES
            cache = hub_cache_dir()
            cached = find_cached_hub_file(repo_id, files, revision=revision or None, cache_dir=cache)
            if cached is None:
                raise weights_unavailable(
                    what, f"HF_HUB_OFFLINE is set and they are not in the Hugging Face cache ({cache})", url)
            # The hub stores timm-native safetensors/bin files even for tags whose original release was a
            # JAX .npz (custom_load=True in the registry), so they load like any state dict.
            overlay = {"file": str(cached), "custom_load": False}
        elif cfg.url:
            cached = find_cached_url_file(cfg.url)
            if cached is None:
                raise weights_unavailable(what, "HF_HUB_OFFLINE is set and they are not in the torch hub cache", url)
            # The URL's own format (an .npz needs the model's custom loader); timm resets it for a new source.
            overlay = {"file": str(cached), "custom_load": cfg.custom_load}
        else:
            overlay = {}
        _logger.info("%s: offline, loading %s", spec.name, overlay.get("file", cfg.file))
        return timm.create_model(spec.backend, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)

    try:
        # cache_dir as the environment names it now (huggingface_hub froze its own at import).
        return timm.create_model(spec.backend, pretrained=True,
                                 cache_dir=str(hub_cache_dir()) if repo_id else None, **kwargs)
    except download_errors() as exc:
        source = hub_url(repo_id) if repo_id else (cfg.url or cfg.file)
        raise weights_unavailable(what, f"they could not be downloaded from {source} ({describe_error(exc)})",
                                  url) from exc


def _head_modules(model) -> tuple[str, ...]:
    """The classifier module names of a timm model (``fc``, ``head``, ``classifier``...)."""
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    if isinstance(names, str):
        return (names,)
    return tuple(names or ())


def _checkpoint_filter(model):
    """timm's checkpoint conversion for the model's family, identity when it has none.

    By timm's convention a model module defines ``checkpoint_filter_fn(state_dict, model)`` and passes it to
    ``build_model_with_cfg`` as the pretrained filter; for ViT it resamples position embeddings to the model's
    grid and converts other layouts (JAX, CLIP, DINOv2...). ResNet, ResNeSt and MobileNet need none.
    """
    module = sys.modules.get(type(model).__module__)
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    if filter_fn is None:
        return lambda state_dict, model: state_dict
    return filter_fn
