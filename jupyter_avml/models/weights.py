"""Pretrained weights without surprises: where they come from, offline behaviour, local files, clear errors.

Shared by the model builders (timm classifiers in ``classification.py``; the torchvision detectors can use the
same helpers). Three concerns live here:

* **Offline.** ``HF_HUB_OFFLINE=1`` (set by the caller when the environment says offline) must make a build
  fail at once when the weights are not cached, never wait on the network. ``huggingface_hub`` reads the
  variable and its cache location once, at import, so :func:`hub_offline` and :func:`hub_cache_dir` read the
  environment again at call time and the builders look in the cache themselves.
* **Messages.** Every failure becomes a :class:`~jupyter_avml.errors.WeightsUnavailableError` whose text says
  what happened and how to proceed (:func:`weights_unavailable`).
* **Local files.** ``pretrained_weights: PATH`` reads a state dict as data
  (:func:`jupyter_avml.models.weights_files.read_state_dict`: never by running code) and loads it strictly
  (:func:`load_state_dict_checked`): only the classifier head may differ (it is reinitialised); every other
  missing, unexpected or reshaped tensor is an error naming the tensors.

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
    from jupyter_avml.models.zoo import get_model_spec, list_models

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


# -- downloads ----------------------------------------------------------------------------------------------
#: How long the reachability probe waits for name resolution + TCP connect before calling a host offline.
PROBE_TIMEOUT_S = 3.0
#: The socket timeout of one download request (per blocking operation, not for the whole transfer).
DOWNLOAD_TIMEOUT_S = 30.0


def unreachable_reason(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why ``url``'s host cannot be reached right now, or None when a TCP connection to it succeeds.

    Name resolution and connecting run in a daemon thread bounded by ``2 * timeout``, because
    ``getaddrinfo`` ignores socket timeouts and can block for long on machines without a resolver.
    """
    import socket
    import threading

    parts = urlparse(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    outcome: dict[str, object] = {}

    def attempt() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            outcome["error"] = f"cannot resolve {host} ({exc})"
            return
        last: OSError | None = None
        for family, kind, proto, _, address in infos:
            try:
                with socket.socket(family, kind, proto) as sock:
                    sock.settimeout(timeout)
                    sock.connect(address)
                outcome["ok"] = True
                return
            except OSError as exc:
                last = exc
        outcome["error"] = f"cannot connect to {host}:{port} ({last})"

    thread = threading.Thread(target=attempt, name="avml-probe", daemon=True)
    thread.start()
    thread.join(2 * timeout)
    if thread.is_alive():
        return f"no answer from {host} within {2 * timeout:.0f} s"
    return None if outcome.get("ok") else str(outcome.get("error", f"cannot reach {host}"))


def download_file(url: str, target: str | os.PathLike, *, timeout: float = DOWNLOAD_TIMEOUT_S,
                  sha256_prefix: str | None = None) -> Path:
    """Download ``url`` into ``target``, atomically (a broken transfer leaves no file, not even a temporary one).

    ``timeout`` bounds each blocking socket operation of this request only (no process-wide default is
    changed); ``sha256_prefix`` (torch.hub's convention: the hexadecimal digits after the last ``-`` of the
    file name) is checked before the file is published. Raises ``OSError`` (network), ``RuntimeError`` (hash).
    """
    import hashlib
    import urllib.request

    from jupyter_avml.fileio import atomic_write

    digest = hashlib.sha256()

    def write(handle) -> None:
        request = urllib.request.Request(url, headers={"User-Agent": "jupyter_avml"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                handle.write(chunk)
        if sha256_prefix and not digest.hexdigest().startswith(sha256_prefix):
            raise RuntimeError(f'invalid hash value (expected "{sha256_prefix}", got "{digest.hexdigest()}")')

    return atomic_write(target, write)


# -- local files (read by ``weights_files.read_state_dict``, as data) -------------------------------------
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
