"""YOLOv5 through ultralytics (its anchor-free YOLOv5u family), spec section 4.

``build_yolo`` returns an ``ultralytics.YOLO`` whose ``.model`` is a ``DetectionModel`` with ``nc`` outputs; its
tensor contract is documented in ``models.ultralytics_adapter.network``, where every use of ultralytics lives.
This module maps the spec's settings (``model_size``, ``pretrained``, ``pretrained_weights``) onto it.

ultralytics is imported only after ``prepare_ultralytics`` (workspace-confined, offline settings).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from jupyter_avml.errors import ConfigError, UnsafeWeightsError, WeightsUnavailableError
from jupyter_avml.models.ultralytics_adapter.environment import UltralyticsDirs, prepare_ultralytics
from jupyter_avml.models.ultralytics_adapter.network import (  # noqa: F401  (yolo_loss, ensure_criterion: public)
    class_output_modules,
    download_release_weights,
    ensure_criterion,
    model_yaml,
    new_yolo,
    read_yolo_state_dict,
    release_url,
    yolo_loss,
)
from jupyter_avml.models.weights import guidance, load_state_dict_checked, unreachable_reason
from jupyter_avml.models.zoo import ModelSpec
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
        Transfer ultralytics' COCO weights (``yolov5{s,m,l,x}u.pt``, read as data) onto the new network: every
        tensor except the class outputs, checked tensor by tensor. The file is looked up in
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

    yolo = new_yolo(model_yaml(model_file, num_classes, dirs), verbose=verbose)
    if weights is not None:
        _load_weights(yolo, weights, spec.name, from_user=pretrained_weights is not None)
    return yolo


def fetch_yolo_weights(name: str, dirs: UltralyticsDirs, *, what: str) -> Path:
    """``<workspace>/cache/ultralytics/weights/<name>``, downloaded from ultralytics' GitHub release if absent.

    ultralytics' own downloader retries with 30 s connection timeouts; offline, we probe the host first
    and raise ``WeightsUnavailableError`` at once.
    """
    target = dirs.weights_dir / name
    if target.is_file():
        return target
    url = release_url(name)
    reason = unreachable_reason(url)
    if reason is not None:
        raise WeightsUnavailableError(
            f"{what}: pretrained weights {name} are not in {target.parent} and cannot be downloaded from {url}: "
            f"{reason}. {guidance(url)} Or copy that file into {target.parent}.")
    return download_release_weights(name, target, what=what)


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
