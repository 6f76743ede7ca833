"""Weights files are read as data, never as code.

A ``.pt`` file is a pickle, and unpickling can call any function the file names: a "weights" file can run
arbitrary code when it is opened. Every file a user (or a download) gives us is therefore read with
``torch.load(weights_only=True)`` (torch's restricted unpickler: tensors, containers and plain values only) or
as ``.safetensors``. Nothing in jupyter_avml falls back to full unpickling.

One kind of file needs more than plain values: a checkpoint that pickles whole ``torch.nn.Module`` objects
(ultralytics' ``.pt`` files, ``torch.save(model)``). ``read_pickled_modules`` reads those as data too: every
class or function the pickle names must belong to libraries the caller lists (``ultralytics.``,
``torch.nn.modules.``...), and each is replaced, while reading, by an inert stand-in that only stores what the
pickle gives it (no constructor, no ``__setstate__`` of the real class runs). The weights are then collected
from the stand-ins' ``_parameters`` and ``_buffers``, as ``Module.state_dict`` would. A file naming anything
else (``builtins.exec``, ``os.system``...) is refused before a byte of it is unpickled.

A user who trusts a file that cannot be read this way converts it once, knowingly, with
``convert_trusted_checkpoint(src, dst)``, which does unpickle it fully and writes a plain state dict; every
refusal says so (``UnsafeWeightsError``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from jupyter_avml.errors import UnsafeWeightsError, WeightsUnavailableError

_logger = logging.getLogger(__name__)

#: How many names an error message lists.
_SHOWN = 5
#: Checkpoint keys that hold a model's weights, in timm's order of preference (EMA weights first).
STATE_DICT_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")
#: A pickle nested deeper than this is not a network's module tree.
_MAX_MODULE_DEPTH = 64


def conversion_hint(path: str | os.PathLike) -> str:
    """How a user converts a checkpoint they trust into a plain state dict (for error messages)."""
    source = Path(path)
    target = source.with_name(source.stem + "-state_dict.pt")
    return (f"If you trust this file and where it came from, convert it once into a plain state dict and use "
            f"that file instead: python -c \"from jupyter_avml.models.weights_files import "
            f"convert_trusted_checkpoint; convert_trusted_checkpoint('{source}', '{target}')\" "
            f"(this runs the code the file contains)")


def unsafe_error(path: str | os.PathLike, names: Sequence[str], *, field: str) -> UnsafeWeightsError:
    error = UnsafeWeightsError(
        f"{field}: {path} cannot be read without running code stored in it (it names {_first(names) or 'objects'} "
        f"that only a full unpickling can rebuild); jupyter_avml reads weights files as data only. "
        f"{conversion_hint(path)}")
    error.names = list(names)
    return error


def unsafe_globals(path: str | os.PathLike) -> list[str] | None:
    """The classes and functions a ``torch.save`` file names that ``weights_only`` loading refuses.

    Found by disassembling the pickle, without executing it. ``None`` when the file is not a ``torch.save``
    zip archive (a legacy or foreign file: only loading it with ``weights_only`` can tell).
    """
    import torch

    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(os.fspath(path)))
    except Exception:  # not a zip archive, no data.pkl, a truncated file...: the loader reports those
        return None


def _refused_global(error: BaseException) -> str | None:
    """The global named by torch's ``weights_only`` refusal, e.g. ``builtins.exec`` (None for other errors)."""
    match = re.search(r"GLOBAL ([\w.]+)|unrecognized function ([\w.<>]+)", str(error))
    return next((group for group in match.groups() if group), None) if match else None


def load_weights_file(path: str | os.PathLike, *, field: str = "pretrained_weights") -> Any:
    """What a weights file holds, read as data: ``.safetensors``, or ``torch.load(weights_only=True)`` on the CPU.

    Raises
    ------
    UnsafeWeightsError
        The file pickles objects that only full unpickling (running code) could rebuild.
    WeightsUnavailableError
        The file is missing, empty, truncated or not a weights file; the message names it.
    """
    import pickle

    import torch

    file = Path(os.path.expandvars(os.path.expanduser(os.fspath(path))))
    if not file.exists():
        raise WeightsUnavailableError(f"{field}: {file} does not exist; give the path of a weights file "
                                      f"(.pth, .pt, .bin or .safetensors), or remove {field}")
    if not file.is_file():
        raise WeightsUnavailableError(f"{field}: {file} is not a file; give the path of a weights file "
                                      f"(.pth, .pt, .bin or .safetensors)")
    if file.stat().st_size == 0:
        raise WeightsUnavailableError(f"{field}: cannot read {file}: the file is empty")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(file), device="cpu")
        except Exception as exc:  # safetensors raises its own SafetensorError, OSError...
            raise WeightsUnavailableError(f"{field}: cannot read {file} as safetensors "
                                          f"({_describe(exc)})") from exc
    names = unsafe_globals(file)
    if names:
        raise unsafe_error(file, names, field=field)
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _refused_global(exc)
        if refused is not None:
            raise unsafe_error(file, [refused], field=field) from None
        raise WeightsUnavailableError(f"{field}: cannot read {file} as PyTorch or safetensors weights "
                                      f"({_describe(exc)})") from None
    except Exception as exc:  # zip, EOF, RuntimeError of a damaged archive...
        raise WeightsUnavailableError(f"{field}: cannot read {file} as PyTorch or safetensors weights "
                                      f"({_describe(exc)})") from None


def read_state_dict(path: str | os.PathLike, *, field: str = "pretrained_weights") -> dict[str, Any]:
    """Read a state dict from a local weights file, as data (``load_weights_file``).

    Accepts PyTorch files (``.pth``/``.pt``/``.bin``/``.ckpt``) and ``.safetensors``; a checkpoint may hold the
    weights under ``state_dict_ema``/``model_ema`` (preferred, as timm does), ``state_dict`` or ``model``;
    ``module.``/``_orig_mod.`` prefixes of DataParallel and ``torch.compile`` are removed.

    Returns ``{name: tensor}`` on the CPU. Raises ``UnsafeWeightsError`` (a file that needs code to be read,
    with how to convert it) or ``WeightsUnavailableError`` naming the path when the file is missing,
    unreadable, or holds something other than a state dict.
    """
    import torch
    from timm.models import clean_state_dict

    file = Path(os.path.expandvars(os.path.expanduser(os.fspath(path))))
    checkpoint = load_weights_file(file, field=field)
    state_dict = checkpoint
    if isinstance(checkpoint, Mapping):
        key = next((k for k in STATE_DICT_KEYS if isinstance(checkpoint.get(k), Mapping)), None)
        if key is not None:
            state_dict = checkpoint[key]
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise WeightsUnavailableError(f"{field}: {file} holds no state dict (found {type(state_dict).__name__})")
    not_tensors = [str(key) for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise WeightsUnavailableError(
            f"{field}: {file} is not a state dict: entries {_first(not_tensors)} are not tensors "
            f"(a checkpoint keeping its weights under a key other than state_dict or model?)")
    return clean_state_dict(dict(state_dict))


# -- pickled modules, read as data ---------------------------------------------------------------------------
class InertObject:
    """Stands in for a class or function a pickle names; keeps what the pickle gives it and runs nothing.

    ``pickled_name`` is the name it stands for (``ultralytics.nn.tasks.DetectionModel``). Called (the pickle's
    REDUCE) it keeps the arguments; rebuilt (NEWOBJ, BUILD) it keeps the state in its ``__dict__``.
    """

    pickled_name: ClassVar[str] = ""

    def __new__(cls, *args: Any, **kwargs: Any):
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any):
        self.__dict__["inert_arguments"] = args

    def __setstate__(self, state: Any) -> None:
        slots = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
        for part in (state, slots):
            if isinstance(part, dict):
                self.__dict__.update({str(key): value for key, value in part.items()})
            elif part is not None:
                self.__dict__["inert_state"] = part

    def __repr__(self) -> str:
        return f"<inert {self.pickled_name}>"


def read_pickled_modules(path: str | os.PathLike, *, allowed_prefixes: Sequence[str],
                         field: str = "pretrained_weights") -> Any:
    """The content of a ``torch.save`` file that pickles modules, every pickled class replaced by an inert stand-in.

    Every name the pickle refers to (beyond torch's own safe ones) must start with one of ``allowed_prefixes``
    (e.g. ``("ultralytics.", "torch.nn.modules.")``); otherwise ``UnsafeWeightsError`` before reading. Use
    ``module_state_dict`` on the stand-ins to get weights.
    """
    import torch

    file = Path(os.path.expandvars(os.path.expanduser(os.fspath(path))))
    names = unsafe_globals(file)
    if names is None:  # not a zip archive: only a plain weights file can be read (its loader names the problem)
        return load_weights_file(file, field=field)
    foreign = [name for name in names if not name.startswith(tuple(allowed_prefixes))]
    if foreign:
        raise unsafe_error(file, foreign, field=field)
    stand_ins = [(type(name.rsplit(".", 1)[-1], (InertObject,), {"pickled_name": name}), name) for name in names]
    try:
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # a global the static scan could not see, a damaged archive...
        refused = _refused_global(exc)
        if refused is not None:
            raise unsafe_error(file, [refused], field=field) from None
        raise WeightsUnavailableError(f"{field}: cannot read {file} ({_describe(exc)})") from None


def is_inert_module(value: Any) -> bool:
    """Whether ``value`` is the stand-in of a pickled ``torch.nn.Module`` (it has a ``_parameters`` dict)."""
    return isinstance(value, InertObject) and isinstance(value.__dict__.get("_parameters"), Mapping)


def module_state_dict(module: InertObject) -> dict[str, Any]:
    """The ``state_dict`` the pickled module would have: parameters and persistent buffers, by dotted name."""
    import torch

    out: dict[str, Any] = {}
    seen: set[int] = set()

    def collect(node: InertObject, prefix: str, depth: int) -> None:
        if id(node) in seen or depth > _MAX_MODULE_DEPTH:
            return
        seen.add(id(node))
        state = node.__dict__
        transient = state.get("_non_persistent_buffers_set") or set()
        for kind in ("_parameters", "_buffers"):
            for name, value in (state.get(kind) or {}).items():
                if isinstance(value, torch.Tensor) and not (kind == "_buffers" and name in transient):
                    out[prefix + str(name)] = value.detach()
        for name, child in (state.get("_modules") or {}).items():
            if is_inert_module(child):
                collect(child, f"{prefix}{name}.", depth + 1)

    collect(module, "", 0)
    return out


# -- the user's explicit, trusted conversion -----------------------------------------------------------------
def convert_trusted_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Convert a checkpoint YOU TRUST into a plain state dict that jupyter_avml can read as data.

    WARNING: this unpickles ``src`` fully (``torch.load(weights_only=False)``), which runs any code stored in
    it. Use it only on files whose origin you trust; jupyter_avml never calls it on its own.

    Takes the weights from a ``torch.nn.Module`` (``torch.save(model)``), from a checkpoint holding one
    (ultralytics' ``ema``/``model``, or the keys of ``STATE_DICT_KEYS``), or from a state dict, and writes
    ``{name: tensor}`` to ``dst`` (floating tensors as float32). Returns ``dst``; give it as
    ``pretrained_weights``.
    """
    import torch

    from jupyter_avml.fileio import atomic_write

    checkpoint = torch.load(Path(src).expanduser(), map_location="cpu", weights_only=False)
    state_dict = _state_dict_of(checkpoint)
    if state_dict is None:
        raise WeightsUnavailableError(f"{src} holds no model weights (found {type(checkpoint).__name__}); "
                                      f"expected a module, a state dict or a checkpoint with one of "
                                      f"ema, model, {', '.join(STATE_DICT_KEYS[:3])}")
    plain = {name: (value.detach().float() if value.is_floating_point() else value.detach()).contiguous()
             for name, value in state_dict.items()}
    return atomic_write(Path(dst).expanduser(), lambda handle: torch.save(plain, handle))


def _state_dict_of(checkpoint: Any) -> dict[str, Any] | None:
    import torch

    if isinstance(checkpoint, torch.nn.Module):
        return checkpoint.state_dict()
    if isinstance(checkpoint, Mapping):
        for key in ("ema", *STATE_DICT_KEYS):
            found = _state_dict_of(checkpoint.get(key)) if checkpoint.get(key) is not None else None
            if found:
                return found
        if checkpoint and all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
            return dict(checkpoint)
    return None


def _describe(error: BaseException) -> str:
    """A one-line reason for a failed read. torch's ``weights_only`` errors advise loading unsafely: only the
    unpickler's own finding is kept."""
    from jupyter_avml.models.weights import describe_error

    text = str(error)
    if "weights_only" in text or "Weights only" in text:
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", text, flags=re.S)
        reason = " ".join(found.group(1).split()) if found else "unsupported content"
        return f"not a plain PyTorch weights file: {reason[:200]}"
    return describe_error(error)


def _first(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f", ... ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")
