"""Pretrained weights without surprises: where they come from, offline behaviour, local files, clear errors.

Shared by the model builders (timm classifiers in ``classification.py``; the torchvision detectors can use the
same helpers). Three concerns live here:

* **Offline.** ``HF_HUB_OFFLINE=1`` (set by the caller when the environment says offline) must make a build
  fail at once when the weights are not cached, never wait on the network. ``huggingface_hub`` reads the
  variable and its cache location once, at import, so :func:`hub_offline` and :func:`hub_cache_dir` read the
  environment again at call time and the builders look in the cache themselves.
* **Messages.** Every failure becomes a :class:`~jupyter_avml.errors.WeightsUnavailableError` whose text says
  what happened and how to proceed (:func:`weights_unavailable`).
* **Local files.** ``pretrained_weights: PATH`` reads a state dict (:func:`read_state_dict`) and loads it
  strictly (:func:`load_state_dict_checked`): only the classifier head may differ (it is reinitialised);
  every other missing, unexpected or reshaped tensor is an error naming the tensors.

torch, timm and huggingface_hub are imported inside the functions (``import jupyter_avml`` stays light).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jupyter_avml.errors import WeightsUnavailableError

_logger = logging.getLogger(__name__)

#: Values of HF_HUB_OFFLINE that mean "offline", as huggingface_hub interprets them.
_TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})
DEFAULT_HUB_ENDPOINT = "https://huggingface.co"
#: How many key names an error message lists per kind of problem.
_KEYS_SHOWN = 5


# -- where weights come from -------------------------------------------------------------------------------
def hub_offline() -> bool:
    """Whether the Hugging Face hub must not be contacted.

    True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is true in the environment now, or was when
    ``huggingface_hub`` was imported (it reads the variable once, at import, and stays offline after).
    """
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").strip().upper() in _TRUE_VALUES:
            return True
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder as the environment names it now.

    Same resolution as ``huggingface_hub.constants`` (which is frozen at import): ``HF_HUB_CACHE`` >
    ``HUGGINGFACE_HUB_CACHE`` > ``$HF_HOME/hub`` > ``$XDG_CACHE_HOME/huggingface/hub`` >
    ``~/.cache/huggingface/hub``.
    """

    def expand(value: str) -> str:
        return os.path.expandvars(os.path.expanduser(value))

    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(expand(explicit))
    home = os.environ.get("HF_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = os.path.join(xdg, "huggingface")
    return Path(expand(home)) / "hub"


def hub_endpoint() -> str:
    """The hub's base URL (``HF_ENDPOINT`` when set, e.g. a mirror)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_HUB_ENDPOINT).rstrip("/")


def hub_url(repo_id: str, filename: str | None = None, revision: str | None = None) -> str:
    """The hub page of ``repo_id``, or the direct download URL of one of its files."""
    if filename is None:
        return f"{hub_endpoint()}/{repo_id}"
    return f"{hub_endpoint()}/{repo_id}/resolve/{revision or 'main'}/{filename}"


def find_cached_hub_file(repo_id: str, filenames: Sequence[str], *, revision: str | None = None,
                         cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The first of ``filenames`` of ``repo_id`` present in the hub cache, without touching the network."""
    from huggingface_hub import try_to_load_from_cache

    cache_dir = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    for filename in filenames:
        # Returns a path (cached), a sentinel (known to be absent upstream) or None (never fetched).
        found = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache_dir), revision=revision)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def find_cached_url_file(url: str, model_dir: str | os.PathLike | None = None) -> Path | None:
    """The file ``torch.hub.load_state_dict_from_url`` would have cached for ``url``, if present."""
    import torch.hub

    folder = Path(model_dir) if model_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    candidate = folder / os.path.basename(urlparse(url).path)
    return candidate if candidate.is_file() else None


# -- what to tell the user ---------------------------------------------------------------------------------
def guidance(download_url: str | None) -> str:
    """How to proceed when pretrained weights cannot be had (including the models that need no download)."""
    text = ("Set pretrained: false to train from scratch, or pretrained_weights: PATH to a local weights file")
    if download_url:
        text += f" (e.g. downloaded from {download_url})"
    local = local_weight_models()
    if local:
        text += f". These models have local weights (a pip package, no download): {', '.join(local)}"
    return text + "."


def local_weight_models() -> list[str]:
    """The catalogue's models whose pretrained weights a pip package installs (``local_weights.py``)."""
    from jupyter_avml.models.registry import get_model_spec, list_models

    return [name for name in list_models() if get_model_spec(name).local_weights is not None]


def weights_unavailable(what: str, reason: str, download_url: str | None) -> WeightsUnavailableError:
    """``WHAT are unavailable: REASON. <guidance>`` as the error to raise."""
    return WeightsUnavailableError(f"{what} are unavailable: {reason}. {guidance(download_url)}")


def describe_error(error: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, short enough for one line of an error message."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def download_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the weights could not be fetched" (rather than a bug).

    ``OSError`` covers ``ConnectionError``, ``urllib``'s ``URLError``, requests' errors and huggingface_hub's
    HTTP, offline-mode and not-in-cache errors; huggingface_hub >= 1.0 talks through httpx, whose transport
    errors are not ``OSError``; its ``EntryNotFoundError`` (file missing upstream) is not one either.
    """
    errors: list[type[BaseException]] = [OSError]
    try:
        from huggingface_hub.errors import EntryNotFoundError

        errors.append(EntryNotFoundError)
    except ImportError:  # huggingface_hub < 0.20 keeps it in utils; it is an OSError (HTTPError) there
        pass
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:  # older huggingface_hub uses requests, whose errors are OSErrors
        pass
    return tuple(errors)


# -- local files -------------------------------------------------------------------------------------------
def read_state_dict(path: str | os.PathLike, *, field: str = "pretrained_weights") -> dict[str, Any]:
    """Read a state dict from a local file.

    Accepts PyTorch files (``.pth``/``.pt``/``.bin``/``.ckpt``, read with ``weights_only=True``: no arbitrary
    pickles) and ``.safetensors``; a checkpoint may hold the weights under ``state_dict_ema``/``model_ema``
    (preferred, as timm does), ``state_dict`` or ``model``; ``module.``/``_orig_mod.`` prefixes of
    DataParallel and ``torch.compile`` are removed. Uses ``timm.models.load_state_dict``.

    Returns ``{name: tensor}`` on the CPU. Raises ``WeightsUnavailableError`` naming the path when the file is
    missing, unreadable, or holds something other than a state dict.
    """
    import torch
    from timm.models import load_state_dict

    file = Path(os.path.expandvars(os.path.expanduser(str(path))))
    if not file.exists():
        raise WeightsUnavailableError(f"{field}: {file} does not exist; give the path of a weights file "
                                      f"(.pth, .pt, .bin or .safetensors), or remove {field}")
    if not file.is_file():
        raise WeightsUnavailableError(f"{field}: {file} is not a file; give the path of a weights file "
                                      f"(.pth, .pt, .bin or .safetensors)")
    try:
        state_dict = load_state_dict(str(file), use_ema=True, device="cpu", weights_only=True)
    except Exception as exc:  # deserialisers raise many types (pickle, zip, safetensors, RuntimeError...)
        raise WeightsUnavailableError(
            f"{field}: cannot read {file} as PyTorch or safetensors weights ({describe_error(exc)})") from exc
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise WeightsUnavailableError(f"{field}: {file} holds no state dict (found {type(state_dict).__name__})")
    not_tensors = [str(key) for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise WeightsUnavailableError(
            f"{field}: {file} is not a state dict: entries {_first(not_tensors)} are not tensors "
            f"(a checkpoint keeping its weights under a key other than state_dict or model?)")
    return dict(state_dict)


def load_state_dict_checked(model, state_dict: Mapping[str, Any], *, source: str, what: str,
                            head_modules: Sequence[str] = ()) -> list[str]:
    """Load ``state_dict`` into ``model``; only the head may differ.

    Parameters
    ----------
    model : torch.nn.Module
        The freshly built network (its head initialised for the new number of classes).
    state_dict : mapping of str to torch.Tensor
        Already converted to the model's naming (e.g. by timm's ``checkpoint_filter_fn``).
    source : str
        The file, for messages.
    what : str
        The architecture, for messages (``"timm resnet18.a1_in1k (resnet18)"``).
    head_modules : sequence of str
        Module names of the classifier head (``"fc"``, ``"head"``, ``"roi_heads.box_predictor"``). When one of
        their tensors is absent from ``state_dict`` or has another shape (a different number of classes), the
        whole module keeps its fresh initialisation.

    Returns
    -------
    list of str
        The names of the model's tensors left at their initialisation (head only).

    Raises
    ------
    WeightsUnavailableError
        Listing missing, unexpected and reshaped tensors (the first few of each) outside the head.
    """
    target = model.state_dict()
    state_dict = dict(state_dict)

    def in_module(key: str, module: str) -> bool:
        return key == module or key.startswith(module + ".")

    reinitialised: list[str] = []
    for module in head_modules:
        own = [key for key in target if in_module(key, module)]
        differs = any(key not in state_dict or tuple(state_dict[key].shape) != tuple(target[key].shape)
                      for key in own)
        if own and differs:
            for key in [key for key in state_dict if in_module(key, module)]:
                del state_dict[key]
            reinitialised.extend(own)

    reshaped = [f"{key}: file {tuple(value.shape)} vs model {tuple(target[key].shape)}"
                for key, value in state_dict.items()
                if key in target and tuple(value.shape) != tuple(target[key].shape)]
    problems: list[str] = []
    if reshaped:
        problems.append(f"{len(reshaped)} tensors with another shape ({_first(reshaped)})")
        missing = [key for key in target if key not in state_dict and key not in reinitialised
                   and not key.endswith("num_batches_tracked")]
        unexpected = [key for key in state_dict if key not in target]
    else:
        # load_state_dict decides what is missing (BatchNorm tolerates an absent num_batches_tracked...)
        result = model.load_state_dict(state_dict, strict=False)
        missing = [key for key in result.missing_keys if key not in reinitialised]
        unexpected = list(result.unexpected_keys)
    if missing:
        problems.append(f"{len(missing)} missing tensors ({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors ({_first(unexpected)})")
    if problems:
        raise WeightsUnavailableError(
            f"pretrained_weights: {source} does not hold weights of {what}: {'; '.join(problems)}. "
            f"The file must be a state dict saved from the same architecture (only the classifier head may "
            f"differ). Remove pretrained_weights to start from the library's weights (pretrained: true) "
            f"or from scratch (pretrained: false)")
    if reinitialised:
        _logger.info("%s: head %s reinitialised (shape differs from %s)", what, ", ".join(reinitialised), source)
    return reinitialised


def _first(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_KEYS_SHOWN])
    return shown + (f", ... ({len(items) - _KEYS_SHOWN} more)" if len(items) > _KEYS_SHOWN else "")
