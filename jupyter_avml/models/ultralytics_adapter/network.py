"""ultralytics' networks: the model YAML, the ``YOLO`` object, its loss, its weights (download and files).

Tensor contract of ``yolo.model`` (a ``DetectionModel``; ultralytics' conventions, which differ from
torchvision's):

- input ``img``: ``float32 [B, 3, H, W]`` in ``[0, 1]``, H and W multiples of 32 (letterboxed by the data
  pipeline; the network does not resize or normalise);
- training targets (``yolo_loss``): ``batch_idx`` ``[N]`` (image index of each box), ``cls`` ``[N, 1]`` (class
  index **0..C-1**, no background), ``bboxes`` ``[N, 4]`` normalised ``x_centre, y_centre, w, h`` in ``[0, 1]``;
- eval forward: a tuple whose first element is ``[B, 4 + C, A]``: for each of the A anchor points, the box
  ``x_centre, y_centre, w, h`` in input pixels and C class probabilities (sigmoid); ``predict.detect_images``
  applies NMS.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Any

from jupyter_avml.errors import WeightsUnavailableError
from jupyter_avml.fileio import atomic_write_text
from jupyter_avml.models.ultralytics_adapter.environment import UltralyticsDirs

log = logging.getLogger(__name__)

#: Libraries whose classes an ultralytics checkpoint pickles (its modules, torch's layers, its argument namespace).
PICKLE_PREFIXES = ("ultralytics.", "torch.nn.modules.")


def model_yaml(model_file: str, num_classes: int, dirs: UltralyticsDirs) -> Path:
    """ultralytics' YAML for ``model_file`` with ``nc`` set, written once into the workspace.

    ``YOLO(yaml)`` takes ``nc`` from the file; building from a copy with the right ``nc`` constructs the network
    once instead of building an 80-class one and replacing it. The name keeps ultralytics' scale letter
    (``yolov5su-nc3.yaml`` -> scale ``s``).
    """
    import yaml
    from ultralytics.nn.tasks import yaml_model_load

    config = {k: v for k, v in yaml_model_load(model_file).items() if k not in ("scale", "yaml_file")}
    config["nc"] = num_classes
    path = dirs.models_dir / f"{Path(model_file).stem}-nc{num_classes}.yaml"
    text = yaml.safe_dump(config, sort_keys=False)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
    return path


def new_yolo(yaml_file: Path, *, verbose: bool = False):
    """An untrained ``ultralytics.YOLO`` detector built from ``yaml_file``."""
    from ultralytics import YOLO

    return YOLO(str(yaml_file), task="detect", verbose=verbose)


def release_url(name: str) -> str:
    """Where ultralytics publishes its pretrained checkpoint ``name`` (its assets release of this version)."""
    from ultralytics.utils import downloads

    release = inspect.signature(downloads.attempt_download_asset).parameters["release"].default
    return f"https://github.com/{downloads.GITHUB_ASSETS_REPO}/releases/download/{release}/{name}"


def download_release_weights(name: str, target: Path, *, what: str) -> Path:
    """Download ultralytics' checkpoint ``name`` into ``target`` with ultralytics' downloader (its retries and
    30 s connection timeouts); ``WeightsUnavailableError`` naming the URL when it fails."""
    from ultralytics.utils import downloads

    from jupyter_avml.models.weights import describe_error, guidance

    url = release_url(name)
    log.info("downloading %s to %s", url, target)
    try:
        downloads.attempt_download_asset(str(target))
    except (OSError, RuntimeError, MemoryError) as exc:  # requests/socket errors, ConnectionError, disk space
        raise WeightsUnavailableError(f"{what}: download of {url} into {target.parent} failed "
                                      f"({describe_error(exc)}). {guidance(url)}") from exc
    if not target.is_file():
        raise WeightsUnavailableError(f"{what}: download of {url} produced no file at {target}. {guidance(url)}")
    return target


def read_yolo_state_dict(path: str | os.PathLike, *, field: str = "pretrained_weights") -> dict[str, Any]:
    """The weights of a YOLO file, read as data (never by running code from it).

    A plain state dict (bare, or a ``jupyter_avml`` ``model.pt``) is read as such; an ultralytics checkpoint
    (``{"ema": DetectionModel, "model": ..., "train_args": ...}``) has its pickled classes replaced by inert
    stand-ins while reading (``weights_files.read_pickled_modules``) and gives the weights of its EMA model (else
    its raw model). A checkpoint naming anything outside ``PICKLE_PREFIXES`` is refused with
    ``UnsafeWeightsError``, which says how to convert a file one trusts.
    """
    from jupyter_avml.models.weights_files import (
        is_inert_module,
        module_state_dict,
        read_pickled_modules,
        read_state_dict,
        unsafe_globals,
    )

    if not unsafe_globals(path):
        return read_state_dict(path, field=field)
    checkpoint = read_pickled_modules(path, allowed_prefixes=PICKLE_PREFIXES, field=field)
    module = next((checkpoint.get(key) for key in ("ema", "model")
                   if isinstance(checkpoint, dict) and is_inert_module(checkpoint.get(key))), None)
    if module is None:
        raise WeightsUnavailableError(f"{field}: {path} is neither an ultralytics checkpoint (no model under ema "
                                      f"or model) nor a state dict")
    return module_state_dict(module)


def class_output_modules(detection_model) -> list[str]:
    """The layers of a YOLO Detect head whose shapes depend on the class count: each layer of its class branches
    (``cv3``, and ``one2one_cv3`` of end-to-end heads), so that layers of the same shape still transfer."""
    head_index = len(detection_model.model) - 1
    head = detection_model.model[head_index]
    names = []
    for branch in ("cv3", "one2one_cv3"):
        for i, sequence in enumerate(getattr(head, branch, None) or ()):
            names.extend(f"model.{head_index}.{branch}.{i}.{j}" for j, _ in enumerate(sequence.children()))
    return names


def yolo_loss(model, batch: dict):
    """Training loss of a YOLO detector through its own criterion (``DetectionModel.loss``).

    Parameters
    ----------
    model
        An ``ultralytics.YOLO`` or its ``DetectionModel`` (``yolo.model``), in train mode.
    batch
        ``img`` ``float32 [B, 3, H, W]`` in [0, 1]; ``batch_idx`` ``[N]``; ``cls`` ``[N, 1]`` class indices
        0..C-1; ``bboxes`` ``[N, 4]`` normalised ``x_centre, y_centre, w, h``; all on the model's device.

    Returns
    -------
    (loss, items)
        ``loss``: scalar, the sum of the box, classification and DFL losses times the batch size (what
        ultralytics' trainer back-propagates); ``items``: their detached values by name.
    """
    from ultralytics.engine.model import Model

    detection_model = model.model if isinstance(model, Model) else model
    ensure_criterion(detection_model)
    loss, items = detection_model.loss(batch)
    return loss.sum(), items


def ensure_criterion(detection_model) -> None:
    """Create (or re-create after a device move) the model's loss with ultralytics' default gains.

    The criterion reads its gains as attributes (``hyp.box``) while a YAML-built model keeps ``args`` as a
    dict, and it captures the device at creation; ultralytics' trainer covers both by building it lazily
    with its namespace of arguments, which this mirrors without changing ``model.args``.
    """
    from ultralytics.utils import DEFAULT_CFG_DICT, IterableSimpleNamespace

    device = next(detection_model.parameters()).device
    criterion = getattr(detection_model, "criterion", None)
    if criterion is not None and getattr(criterion, "device", device) == device:
        return
    missing = object()
    args = getattr(detection_model, "args", missing)
    if isinstance(args, dict) or args is missing:
        detection_model.args = IterableSimpleNamespace(**{**DEFAULT_CFG_DICT, **(args if args is not missing else {})})
    try:
        detection_model.criterion = detection_model.init_criterion()
    finally:
        if isinstance(args, dict):
            detection_model.args = args
        elif args is missing:
            del detection_model.args


def model_stride(detection_model) -> int:
    """The largest stride of a ``DetectionModel`` (at least 32): input sides are multiples of it."""
    return int(max(detection_model.stride.max().item(), 32))
