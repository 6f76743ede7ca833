"""``load_model(task, path, **model_settings)``: a trained model, ready to predict (spec section 11).

``path`` may be a ``model.pt`` file, a run's ``outputs`` folder or run folder, a registered model
``models:/NAME/VERSION`` (also ``models:/NAME/latest``), or an ONNX export folder (``avml export``; run by
onnxruntime, ``inference.onnx_runtime``). ``model_settings`` default to the values used in
training and validation and may be changed for inference:

* classification: ``valid_resize_size``, ``valid_crop_size``;
* detection/segmentation: ``min_size``, ``max_size``, ``box_score_thresh``, ``box_nms_thresh``,
  ``box_detections_per_img`` and the tiling settings;
* yolov5: ``img_size``, ``model_size``, ``box_score_thresh``, ``box_iou_thresh``

(each family's ``inference_settings`` in ``models.families``, which also names its ``Predictor`` class).

``predict(images)`` takes paths, bytes, PIL images or HxWx3 uint8 arrays (one or a list) and returns one
dict per image in the spec's response format.
"""

from __future__ import annotations

import io
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jupyter_avml.errors import ConfigError, ModelFileError, NotFoundError
from jupyter_avml.models.zoo import get_model_spec
from jupyter_avml.tasks import ImageTask


def resolve_model_file(path: str | os.PathLike, workspace=None) -> Path:
    """The ``model.pt`` behind a file, an outputs folder, a run folder or a ``models:/`` URI (looked up in
    the model registry of ``workspace``)."""
    text = os.fspath(path)
    if text.startswith("models:/"):
        from jupyter_avml.tracking.model_registry import download_registered_model

        return download_registered_model(text, workspace)
    candidate = Path(text).expanduser()
    for option in (candidate, candidate / "model.pt", candidate / "outputs" / "model.pt"):
        if option.is_file():
            return option
    raise NotFoundError(f"no model file at {candidate} (expected model.pt, a run folder or models:/NAME/VERSION)")


def load_model(task: ImageTask | str | os.PathLike, path: str | os.PathLike | None = None, *,
               device: str = "auto", workspace=None, **model_settings: Any) -> Predictor:
    """Load a trained model for inference; see the module docstring for ``path`` and ``model_settings``.

    ``load_model("models:/NAME/1")`` (no task) works too: the task is read from the model file.
    ``workspace`` is where ``models:/`` names are registered (default: ``$AVML_WORKSPACE`` or
    ``./avml-workspace``). The file is read as data (``models.model_file.read_model_file``): anything that is
    not a model file (empty, truncated, a checkpoint, a pickle of other objects) raises ``ModelFileError``.
    """
    from jupyter_avml.models.families import get_family
    from jupyter_avml.models.model_file import read_model_file

    if path is None:
        path, task = task, None
    from jupyter_avml.inference.onnx_runtime import load_onnx_model, onnx_export_folder  # an ONNX export folder

    if not os.fspath(path).startswith("models:/") and (onnx_folder := onnx_export_folder(path)) is not None:
        return load_onnx_model(onnx_folder, task, device=device, **model_settings)
    model_file = resolve_model_file(path, workspace)
    payload = read_model_file(model_file)
    try:
        saved_task = ImageTask(payload["task"])
        spec = get_model_spec(payload["model_name"])
    except (ValueError, ConfigError) as exc:
        raise ModelFileError(f"{model_file} is not a model file this version can load ({exc})") from None
    if task is not None and ImageTask.parse(task) is not saved_task:
        raise ConfigError(f"{model_file} is a {saved_task.value} model; task is {ImageTask.parse(task).value}",
                          field="task", value=str(task))
    family = get_family(spec.family)
    allowed = family.inference_settings
    unknown = sorted(set(model_settings) - set(allowed))
    if unknown:
        raise ConfigError(f"{unknown[0]} is not an inference setting of {spec.name}; settings: {', '.join(allowed)}",
                          field=unknown[0], value=model_settings[unknown[0]])
    from jupyter_avml.config import AutoMLImageConfig
    from jupyter_avml.models.device import resolve_device

    # Re-validate the settings against the training configuration (same ranges and rules as training).
    config = AutoMLImageConfig.from_dict({**payload["config"], **model_settings})
    return family.predictor_class()(payload, config, resolve_device(device), model_file)


class Predictor(ABC):
    """Common input handling; subclasses turn a batch of RGB images into the spec's outputs."""

    batch_size = 8

    def __init__(self, payload: dict, config, device, model_file: Path | None = None):
        self.model_file = model_file
        self.task = ImageTask(payload["task"])
        self.model_name = payload["model_name"]
        self.class_names: list[str] = list(payload["class_names"])
        self.config = config
        self.device = device

    def predict(self, images: Any) -> list[dict[str, Any]] | dict[str, Any]:
        """Predictions for one image (a dict) or a list of images (a list of dicts)."""
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        outputs: list[dict[str, Any]] = []
        for start in range(0, len(items), self.batch_size):
            chunk = [as_rgb_image(item) for item in items[start:start + self.batch_size]]
            results = self.predict_batch([image for image, _ in chunk])
            for (_, name), result in zip(chunk, results, strict=True):
                outputs.append({"filename": name, **result})
        return outputs[0] if single else outputs

    @abstractmethod
    def predict_batch(self, images: Sequence) -> list[dict[str, Any]]: ...


def as_rgb_image(item: Any):
    """(PIL RGB image, filename or None) from a path, bytes, a PIL image or an array (``image_from_array``)."""
    from PIL import Image

    from jupyter_avml.data.images import load_image

    if isinstance(item, (str, os.PathLike)):
        return load_image(item), os.path.basename(os.fspath(item))
    if isinstance(item, (bytes, bytearray, memoryview)):
        return load_image(io.BytesIO(bytes(item))), None
    if isinstance(item, Image.Image):
        return (item if item.mode == "RGB" else item.convert("RGB")), getattr(item, "filename", None) or None
    if hasattr(item, "shape") and hasattr(item, "dtype"):
        from jupyter_avml.data.images import image_from_array  # floats in [0, 1] scaled, never cast to black

        return image_from_array(item), None
    raise ConfigError(f"cannot read an image from {type(item).__name__}", field="images", value=type(item).__name__)

