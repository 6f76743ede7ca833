"""YOLOv5 through ultralytics (its anchor-free YOLOv5u family), spec section 4.

``build_yolo`` returns an ``ultralytics.YOLO`` whose ``.model`` is a ``DetectionModel`` with ``nc`` outputs.
Tensor contract of ``yolo.model`` (ultralytics' conventions, which differ from torchvision's):

- input ``img``: ``float32 [B, 3, H, W]`` in ``[0, 1]``, H and W multiples of 32 (letterboxed by the
  data pipeline; the network does not resize or normalise);
- training targets (``yolo_loss``): ``batch_idx`` ``[N]`` (image index of each box), ``cls`` ``[N, 1]``
  (class index **0..C-1**, no background), ``bboxes`` ``[N, 4]`` normalised ``x_centre, y_centre, w, h``
  in ``[0, 1]``;
- eval forward: a tuple whose first element is ``[B, 4 + C, A]``: for each of the A anchor points, the box
  ``x_centre, y_centre, w, h`` in input pixels and C class probabilities (sigmoid); apply NMS
  (``ultralytics.utils.nms.non_max_suppression``) with ``box_score_thresh`` / ``box_iou_thresh``.

ultralytics is imported only after ``prepare_ultralytics`` (workspace-confined, offline settings).
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path

from jupyter_avml.errors import ConfigError, UnsafeWeightsError, WeightsUnavailableError
from jupyter_avml.fileio import atomic_write_text
from jupyter_avml.models.registry import ModelSpec
from jupyter_avml.models.ultralytics_env import UltralyticsDirs, prepare_ultralytics
from jupyter_avml.models.weights import describe_error, guidance, load_state_dict_checked
from jupyter_avml.models.weights_files import read_state_dict
from jupyter_avml.workspace import Workspace

log = logging.getLogger(__name__)

YOLO_SCALES = {"small": "s", "medium": "m", "large": "l", "xlarge": "x"}
MODEL_FILE_TEMPLATE = "yolov5{scale}u.yaml"


def yolo_scale(model_size: str) -> str:
    """ultralytics' scale letter of a spec ``model_size`` (``small`` -> ``s``...); ConfigError otherwise."""
    key = model_size.strip().lower() if isinstance(model_size, str) else model_size
    if key not in YOLO_SCALES:
        raise ConfigError(f"model_size must be one of {', '.join(YOLO_SCALES)}; got {model_size!r}",
                          field="model_size", value=model_size)
    return YOLO_SCALES[key]


def yolo_model_file(model_size: str, template: str = MODEL_FILE_TEMPLATE) -> str:
    """The ultralytics model YAML of a size, e.g. ``yolo_model_file("medium") == "yolov5mu.yaml"``."""
    return template.format(scale=yolo_scale(model_size))


def yolo_weights_file(model_size: str) -> str:
    """ultralytics' COCO-pretrained checkpoint of a size, e.g. ``yolov5mu.pt``."""
    return f"yolov5{yolo_scale(model_size)}u.pt"


def build_yolo(spec: ModelSpec, num_classes: int, *, model_size: str = "medium", pretrained: bool = True,
               pretrained_weights: str | None = None, workspace_dir: str | os.PathLike | Workspace | None = None,
               verbose: bool = False):
    """Build an ``ultralytics.YOLO`` (YOLOv5u) with ``num_classes`` outputs.

    Parameters
    ----------
    spec
        The ``yolov5`` registry entry (its ``backend`` is the YAML template ``yolov5{scale}u.yaml``).
    num_classes
        Number of classes (no background in YOLO). Class names are placeholders (``"0"``, ``"1"``...)
        until the trainer sets them.
    model_size
        ``small``, ``medium``, ``large`` or ``xlarge`` (ultralytics scales s, m, l, x).
    pretrained
        Transfer ultralytics' COCO weights (``yolov5{s,m,l,x}u.pt``) onto the new head (ultralytics'
        ``YOLO.load``: every tensor except the class outputs). The file is looked up in
        ``<workspace>/cache/ultralytics/weights`` and downloaded there when GitHub is reachable;
        otherwise ``WeightsUnavailableError`` within seconds.
    pretrained_weights
        A local file used instead (``pretrained`` is then ignored): an ultralytics ``.pt`` checkpoint, or a
        state dict of a ``DetectionModel`` (bare, or inside a ``jupyter_avml`` ``model.pt``), read as data
        (never by running code from it); class-dependent head tensors of another class count are
        re-initialised.
    workspace_dir
        The workspace holding ultralytics' settings, weights and the model YAML (default: resolved as
        ``Workspace.resolve``).
    verbose
        ultralytics' console output.

    Returns
    -------
    ultralytics.YOLO
        ``yolo.model`` is the ``DetectionModel`` (see the module docstring for its contract); layer groups
        ``model.0.`` ... ``model.9.`` (the backbone) apply to it.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{spec.name}: num_classes must be a positive int, got {num_classes!r}")
    model_file = yolo_model_file(model_size, spec.backend or MODEL_FILE_TEMPLATE)
    dirs = UltralyticsDirs.of(workspace_dir)
    prepare_ultralytics(workspace_dir, verbose=verbose)

    # Weights first: an offline failure costs no model construction.
    weights: Path | None = None
    if pretrained_weights is not None:
        weights = Path(pretrained_weights).expanduser().absolute()
        if not weights.is_file():
            raise WeightsUnavailableError(
                f"{spec.name}: pretrained_weights file {weights} does not exist. Give the path of a local .pt "
                f"file, or set pretrained: true to use ultralytics' {yolo_weights_file(model_size)} "
                f"(or pretrained: false to train from scratch).")
    elif pretrained:
        weights = fetch_yolo_weights(yolo_weights_file(model_size), dirs, what=f"{spec.name} ({model_size})")

    from ultralytics import YOLO

    yolo = YOLO(str(_model_yaml(model_file, num_classes, dirs)), task="detect", verbose=verbose)
    if weights is not None:
        _load_weights(yolo, weights, spec.name, from_user=pretrained_weights is not None)
    return yolo


def _model_yaml(model_file: str, num_classes: int, dirs: UltralyticsDirs) -> Path:
    """ultralytics' YAML for ``model_file`` with ``nc`` set, written once into the workspace.

    ``YOLO(yaml)`` takes ``nc`` from the file; building from a copy with the right ``nc`` constructs the
    network once instead of building an 80-class one and replacing it. The name keeps ultralytics' scale
    letter (``yolov5su-nc3.yaml`` -> scale ``s``).
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


def fetch_yolo_weights(name: str, dirs: UltralyticsDirs, *, what: str) -> Path:
    """``<workspace>/cache/ultralytics/weights/<name>``, downloaded from ultralytics' GitHub release if absent.

    ultralytics' own downloader retries with 30 s connection timeouts; offline, we probe the host first
    and raise ``WeightsUnavailableError`` at once.
    """
    from ultralytics.utils import downloads

    from jupyter_avml.models.detection import unreachable_reason

    target = dirs.weights_dir / name
    if target.is_file():
        return target
    release = inspect.signature(downloads.attempt_download_asset).parameters["release"].default
    url = f"https://github.com/{downloads.GITHUB_ASSETS_REPO}/releases/download/{release}/{name}"
    reason = unreachable_reason(url)
    if reason is not None:
        raise WeightsUnavailableError(
            f"{what}: pretrained weights {name} are not in {target.parent} and cannot be downloaded from {url}: "
            f"{reason}. {guidance(url)} Or copy that file into {target.parent}.")
    log.info("downloading %s to %s", url, target)
    try:
        downloads.attempt_download_asset(str(target))
    except (OSError, RuntimeError, MemoryError) as exc:  # requests/socket errors, ConnectionError, disk space
        raise WeightsUnavailableError(f"{what}: download of {url} into {target.parent} failed "
                                      f"({describe_error(exc)}). {guidance(url)}") from exc
    if not target.is_file():
        raise WeightsUnavailableError(f"{what}: download of {url} produced no file at {target}. "
                                      f"{guidance(url)}")
    return target


def _load_weights(yolo, path: Path, model_name: str, *, from_user: bool) -> None:
    """Transfer the weights of ``path`` onto ``yolo.model``, checked tensor by tensor; the file is read as data.

    ``path`` is a state dict (bare, or a ``jupyter_avml`` ``model.pt``) or an ultralytics checkpoint, whose pickled
    modules are read without running their code (``read_yolo_state_dict``). Tensors that depend on the class
    count (the Detect head's class outputs) start afresh when their shape differs; any other difference is an
    error naming the tensors.
    """
    try:
        state = read_yolo_state_dict(path, field="pretrained_weights" if from_user else "pretrained")
    except UnsafeWeightsError as exc:
        if from_user:
            raise
        names = ", ".join(getattr(exc, "names", [])[:5])
        raise UnsafeWeightsError(f"{model_name}: the cached weights {path} cannot be read without running code stored "
                                 f"in them ({names}); jupyter_avml reads weights files as data only. Delete the "
                                 f"file to download it again.") from None
    except WeightsUnavailableError as exc:
        if from_user:
            raise
        raise WeightsUnavailableError(f"{model_name}: {exc} Delete {path} to download it again.") from None
    detection_model = yolo.model
    load_state_dict_checked(detection_model, state, source=str(path), what=f"{model_name} (ultralytics DetectionModel)",
                            head_modules=class_output_modules(detection_model))


#: Libraries whose classes an ultralytics checkpoint pickles (its modules, torch's layers, its argument namespace).
ULTRALYTICS_PICKLE_PREFIXES = ("ultralytics.", "torch.nn.modules.")


def read_yolo_state_dict(path: str | os.PathLike, *, field: str = "pretrained_weights") -> dict:
    """The weights of a YOLO file, read as data: a plain state dict, or the EMA (else raw) model of an ultralytics
    checkpoint (``{"ema": DetectionModel, "model": ..., "train_args": ...}``), whose pickled classes are replaced
    by inert stand-ins while reading (``weights_files.read_pickled_modules``). Anything else a checkpoint names
    is refused with ``UnsafeWeightsError`` (and how to convert a file one trusts)."""
    from jupyter_avml.models.weights_files import (
        is_inert_module,
        module_state_dict,
        read_pickled_modules,
        unsafe_globals,
    )

    if not unsafe_globals(path):
        return read_state_dict(path, field=field)
    checkpoint = read_pickled_modules(path, allowed_prefixes=ULTRALYTICS_PICKLE_PREFIXES, field=field)
    module = next((checkpoint.get(key) for key in ("ema", "model")
                   if isinstance(checkpoint, dict) and is_inert_module(checkpoint.get(key))), None)
    if module is None:
        raise WeightsUnavailableError(f"{field}: {path} is not an ultralytics checkpoint (no model under ema or "
                                      f"model) nor a state dict")
    return module_state_dict(module)


def class_output_modules(detection_model) -> list[str]:
    """The modules of a YOLO Detect head whose shapes depend on the class count: each layer of its class branches
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
