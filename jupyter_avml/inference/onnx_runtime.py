"""Exported ONNX models through onnxruntime, with the same input handling and output format as the PyTorch
predictors (``load_model`` dispatches here for an export folder or a ``.onnx`` file).

An export folder (written by ``jupyter_avml.export``) holds ``model.onnx``, ``labels.json`` and
``onnx_model.json``, which says what the graph is and what it needs around it:

* ``format`` (``ONNX_FORMAT``), ``task``, ``model_name``, ``family``, ``class_names``, ``config`` (the resolved
  training configuration: the defaults of the inference settings);
* ``inputs`` / ``outputs``: names, shapes (``"batch"``, ``"height"``... for dynamic axes) and element types;
* ``fixed_settings``: the settings baked into the graph at export (see below);
* ``preprocessing`` / ``postprocessing``: what happens outside the graph, in words and numbers.

Per family (the pre- and post-processing are the PyTorch predictors' own code, so the outputs match):

* classification: ``images`` ``float32 [batch, 3, crop, crop]`` (resize to ``valid_resize_size``, centre crop
  ``valid_crop_size``, scale to [0, 1], normalise by ``mean``/``std``) -> ``probs`` ``[batch, classes]``
  (softmax, or sigmoid for multi-label, inside the graph). ``valid_crop_size`` is fixed by the graph.
* torchvision detectors: ``image`` ``float32 [3, height, width]`` in [0, 1] (one image per call, as the cloud
  system's export) -> ``boxes`` ``[n, 4]`` (xyxy pixels), ``labels`` ``[n]`` (1..classes), ``scores`` ``[n]``
  and, for Mask R-CNN, ``masks`` ``[n, 1, height, width]`` (probabilities). Resizing to ``min_size``/``max_size``,
  normalisation, the score threshold, NMS and the detection cap are inside the graph: ``min_size``,
  ``max_size`` and ``box_nms_thresh`` are fixed; ``box_score_thresh`` may be raised and
  ``box_detections_per_img`` lowered at load time (applied to the graph's outputs, which gives the same
  detections: NMS only ever removes a box for a better one); tiling works as with PyTorch.
* yolov5: ``images`` ``float32 [batch, 3, height, width]`` in [0, 1], letterboxed (height and width multiples of
  the stride) -> ``output0`` ``[batch, 4 + classes, anchors]``; NMS outside (ultralytics' ``non_max_suppression``).
  ``model_size`` is fixed; ``img_size``, ``box_score_thresh``, ``box_iou_thresh`` are free.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jupyter_avml.errors import AvmlError, ConfigError, NotFoundError
from jupyter_avml.inference.classification import ClassificationPredictor
from jupyter_avml.inference.detection import DetectionPredictor
from jupyter_avml.inference.predictor import Predictor
from jupyter_avml.inference.yolo import YoloPredictor
from jupyter_avml.tasks import ImageTask

ONNX_FORMAT = "jupyter_avml.onnx/1"
ONNX_FILE = "model.onnx"
DESCRIPTION_FILE = "onnx_model.json"
LABELS_FILE = "labels.json"


class OnnxPackagesMissing(AvmlError, ImportError):
    """The ONNX packages (the ``onnx`` extra) are not installed; the message names them and how to install them."""


def require_onnx_packages(purpose: str, *modules: str) -> None:
    """Raise ``OnnxPackagesMissing`` naming the missing ones of ``modules`` (import names) and what needs them."""
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise OnnxPackagesMissing(f"{purpose} needs {', '.join(missing)}, not installed here: "
                                  f"pip install 'jupyter_avml[onnx]'")


def onnx_export_folder(path: str | os.PathLike) -> Path | None:
    """The export folder ``path`` names (the folder, or its ``model.onnx``), or None when it is not one."""
    candidate = Path(path).expanduser()
    if candidate.is_file() and candidate.suffix == ".onnx":
        candidate = candidate.parent
    if candidate.is_dir() and (candidate / DESCRIPTION_FILE).is_file():
        return candidate
    return None


def read_description(folder: Path) -> dict[str, Any]:
    """``onnx_model.json`` of an export folder; ``NotFoundError``/``ConfigError`` naming the file otherwise."""
    path = folder / DESCRIPTION_FILE
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} cannot be read as an ONNX export description ({exc})") from None
    if not isinstance(description, dict) or description.get("format") != ONNX_FORMAT:
        raise ConfigError(f"{path} is not an export of this version (format {description.get('format')!r}, "
                          f"expected {ONNX_FORMAT!r}); export the model again with `avml export`")
    if not (folder / ONNX_FILE).is_file():
        raise NotFoundError(f"{folder / ONNX_FILE}: the exported graph is missing beside {DESCRIPTION_FILE}")
    return description


def load_onnx_model(folder: Path, task=None, *, device: str = "auto", **model_settings: Any) -> Predictor:
    """The predictor of an export folder (``load_model``'s ONNX branch), with ``model_settings`` checked against
    the training configuration's ranges and against what the graph fixed at export."""
    from jupyter_avml.config import AutoMLImageConfig

    description = read_description(folder)
    saved_task = ImageTask(description["task"])
    if task is not None and ImageTask.parse(task) is not saved_task:
        raise ConfigError(f"{folder} is a {saved_task.value} model; task is {ImageTask.parse(task).value}",
                          field="task", value=str(task))
    allowed = inference_setting_names(description["family"])
    unknown = sorted(set(model_settings) - set(allowed))
    if unknown:
        raise ConfigError(f"{unknown[0]} is not an inference setting of {description['model_name']}; settings: "
                          f"{', '.join(allowed)}", field=unknown[0], value=model_settings[unknown[0]])
    config = AutoMLImageConfig.from_dict({**description["config"], **model_settings})
    _check_fixed(folder, description, config)
    payload = {"task": description["task"], "model_name": description["model_name"],
               "class_names": description["class_names"], "config": description["config"]}
    predictor_class = onnx_predictor_class(description["family"])
    if predictor_class is None:
        raise ConfigError(f"{folder}: this version has no ONNX runtime for {description['model_name']} models "
                          f"(family {description['family']!r})", field="family", value=description["family"])
    return predictor_class(payload, config, OnnxSession(folder / ONNX_FILE, device), description)


def onnx_predictor_class(family: str) -> type | None:
    """The ONNX predictor of a family: the one of ``ONNX_PREDICTORS`` that specialises the family record's PyTorch
    predictor (its pre- and post-processing), or None."""
    from jupyter_avml.models.families import get_family

    try:
        base = get_family(family).predictor_class()
    except ValueError:
        return None
    return next((cls for cls in ONNX_PREDICTORS if issubclass(cls, base)), None)


def inference_setting_names(family: str) -> tuple[str, ...]:
    """The settings ``load_model`` lets a caller change for a model family (``timm``, ``torchvision``, ``yolov5``):
    those of its predictor, whatever the runtime."""
    from jupyter_avml.models.families import get_family

    return tuple(get_family(family).inference_settings)


def _check_fixed(folder: Path, description: dict[str, Any], config) -> None:
    """Refuse settings the graph cannot honour, saying what it was exported with."""
    fixed = description.get("fixed_settings", {})
    for name, value in fixed.items():
        wanted = getattr(config, name)
        if name == "box_score_thresh":
            ok = float(wanted) >= float(value)
            rule = f"at least {value} (the graph drops lower scores)"
        elif name == "box_detections_per_img":
            ok = int(wanted) <= int(value)
            rule = f"at most {value} (the graph keeps no more)"
        else:
            ok = wanted == value
            rule = f"{value!r} (fixed by the graph)"
        if not ok:
            raise ConfigError(f"{folder} was exported with {name}={value!r}: here {name} must be {rule}; export "
                              f"again with --set {name}={wanted} to use {wanted!r}", field=name, value=wanted)


class OnnxSession:
    """An onnxruntime session on the CPU (or CUDA when asked for and available); ``run(feeds)`` -> outputs."""

    def __init__(self, path: Path, device: str = "auto"):
        require_onnx_packages(f"running the ONNX model {path}", "onnxruntime")
        import onnxruntime

        available = onnxruntime.get_available_providers()
        wants_gpu = str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        providers = ["CUDAExecutionProvider"] if wants_gpu and "CUDAExecutionProvider" in available else []
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: ORT warns about unused initializers of exported graphs
        self.session = onnxruntime.InferenceSession(str(path), options, providers=[*providers, "CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(None, feeds), strict=True))


class OnnxClassificationPredictor(ClassificationPredictor):
    """``{"probs", "labels"}`` per image from the exported classifier (see the module docstring)."""

    runtime = "onnxruntime"

    def __init__(self, payload: dict, config, session: OnnxSession, description: dict[str, Any]):
        Predictor.__init__(self, payload, config, torch.device("cpu"))  # no PyTorch model to build
        from jupyter_avml.models.transforms import eval_transform

        norm = description["preprocessing"]
        self.session = session
        self.transform = eval_transform(config.valid_resize_size, config.valid_crop_size, norm["mean"], norm["std"])
        self.batch_size = 8 if description.get("dynamic_batch") else 1

    def predict_batch(self, images):
        batch = torch.stack([self.transform(image) for image in images]).numpy()
        probs = self.session.run({self.session.input_names[0]: batch})["probs"]
        return [{"probs": [float(p) for p in row], "labels": list(self.class_names)} for row in probs]


class _OrtDetector:
    """The exported torchvision detector behind the interface ``DetectionPredictor`` calls: a list of
    ``float32 [3, H, W]`` images in, a list of output dicts of tensors out (thresholds applied, see the module
    docstring)."""

    def __init__(self, session: OnnxSession, score_thresh: float, max_detections: int):
        self.session = session
        self.score_thresh = float(score_thresh)
        self.max_detections = int(max_detections)

    def __call__(self, images) -> list[dict[str, torch.Tensor]]:
        outputs = []
        for image in images:
            found = self.session.run({self.session.input_names[0]: image.detach().cpu().numpy()})
            keep = np.flatnonzero(found["scores"] > self.score_thresh)[:self.max_detections]
            output = {"boxes": torch.from_numpy(found["boxes"][keep]),
                      "scores": torch.from_numpy(found["scores"][keep]),
                      "labels": torch.from_numpy(found["labels"][keep].astype(np.int64))}
            if "masks" in found:
                output["masks"] = torch.from_numpy(found["masks"][keep])
            outputs.append(output)
        return outputs


class OnnxDetectionPredictor(DetectionPredictor):
    """The torchvision detectors' predictor on the exported graph: same tiling, same formatting."""

    runtime = "onnxruntime"

    def __init__(self, payload: dict, config, session: OnnxSession, description: dict[str, Any]):
        Predictor.__init__(self, payload, config, torch.device("cpu"))  # no PyTorch model to build
        self.session = session
        self.model = _OrtDetector(session, config.box_score_thresh, config.box_detections_per_img)
        self.with_masks = self.task.has_masks
        self.batch_size = 1


class _OrtYolo:
    """The exported YOLO network behind the call ``detect_images`` makes: ``[B, 3, S, S]`` in, ``[B, 4 + C, A]`` out."""

    def __init__(self, session: OnnxSession):
        self.session = session

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        found = self.session.run({self.session.input_names[0]: batch.detach().cpu().numpy()})
        return torch.from_numpy(found[self.session.output_names[0]])


class OnnxYoloPredictor(YoloPredictor):
    """YOLOv5's predictor on the exported graph: same letterbox, same NMS, same formatting."""

    runtime = "onnxruntime"

    def __init__(self, payload: dict, config, session: OnnxSession, description: dict[str, Any]):
        from jupyter_avml.models.ultralytics_adapter.predict import network_size

        Predictor.__init__(self, payload, config, torch.device("cpu"))  # no PyTorch model to build
        self.session = session
        self.model = _OrtYolo(session)
        self.stride = int(description["preprocessing"]["stride"])
        self.size = network_size(config.img_size, self.stride)
        self.conf = float(config.box_score_thresh)
        self.iou = float(config.box_iou_thresh)
        self.batch_size = 8 if description.get("dynamic_batch") else 1


# The ONNX counterparts of the PyTorch predictors (``onnx_predictor_class`` picks by the family's predictor).
ONNX_PREDICTORS: tuple[type[Predictor], ...] = (OnnxClassificationPredictor, OnnxDetectionPredictor, OnnxYoloPredictor)
