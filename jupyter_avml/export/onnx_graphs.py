"""One ONNX graph per model family, traced from the PyTorch model a ``load_model`` predictor holds.

Each ``export_*`` writes ``path`` and returns the facts ``onnx_model.json`` records about the graph (inputs,
outputs, dynamic axes, the settings it fixed, the pre/post-processing around it) and a ``check``: a sample input
and the PyTorch model's outputs for it, which ``export_onnx`` compares with onnxruntime's.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from pathlib import Path
from typing import Any

import torch

OPSET = 17


@contextlib.contextmanager
def _quiet_export():
    """The exporters warn about every Python value they trace as a constant; that is what export means here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class _Probabilities(torch.nn.Module):
    """The classifier with its output function: probabilities, as the predictor reports them."""

    def __init__(self, model: torch.nn.Module, multilabel: bool):
        super().__init__()
        self.model, self.multilabel = model, multilabel

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model(images).float()
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)


def export_classifier(predictor, path: Path, opset: int = OPSET) -> dict[str, Any]:
    """``images [batch, 3, crop, crop]`` -> ``probs [batch, classes]``, dynamic batch."""
    config = predictor.config
    crop = int(config.valid_crop_size)
    # eval() on the wrapper too: the exporter restores the wrapper's mode on every submodule when it is done.
    head = _Probabilities(copy.deepcopy(predictor.model).float().cpu(), predictor.task.is_multilabel).eval()
    sample = torch.rand(2, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    with _quiet_export(), torch.no_grad():
        expected = head(sample).numpy()
        torch.onnx.export(head, (sample,), str(path), dynamo=False, opset_version=opset, input_names=["images"],
                          output_names=["probs"], dynamic_axes={"images": {0: "batch"}, "probs": {0: "batch"}})
    mean, std = _normalization(predictor)
    return {
        "inputs": [{"name": "images", "shape": ["batch", 3, crop, crop], "dtype": "float32"}],
        "outputs": [{"name": "probs", "shape": ["batch", len(predictor.class_names)], "dtype": "float32"}],
        "dynamic_batch": True,
        "fixed_settings": {"valid_crop_size": crop},
        "preprocessing": {"steps": ["RGB", f"resize shorter side to valid_resize_size ({config.valid_resize_size}, "
                                           f"bilinear, antialiased)", f"centre crop {crop} x {crop}",
                                    "scale to [0, 1]", "normalise: (x - mean) / std per channel", "NCHW"],
                          "mean": mean, "std": std},
        "postprocessing": "probs are probabilities in the order of labels.json: "
                          + ("sigmoid per class (multi-label)" if predictor.task.is_multilabel else "softmax"),
        "check": ({"images": sample.numpy()}, {"probs": expected}),
    }


def _normalization(predictor) -> tuple[list[float], list[float]]:
    """The mean and std the classifier's transform normalises with."""
    from torchvision.transforms import v2

    for step in getattr(predictor.transform, "transforms", []):
        if isinstance(step, v2.Normalize):
            return [float(v) for v in step.mean], [float(v) for v in step.std]
    raise ValueError("the classifier's transform has no normalisation step")


def export_torchvision_detector(predictor, path: Path, opset: int = OPSET) -> dict[str, Any]:
    """``image [3, height, width]`` -> boxes, labels, scores (and masks), one image per call."""
    config = predictor.config
    model = copy.deepcopy(predictor.model).float().cpu().eval()
    generator = torch.Generator().manual_seed(0)
    sample = torch.rand(3, 240, 320, generator=generator)
    with torch.no_grad():
        expected = {k: v.numpy() for k, v in model([sample])[0].items()}
    names = list(expected)  # the order of the model's output dict (differs per detector)
    dynamic = {"image": {1: "height", 2: "width"}, **{name: {0: "detections"} for name in names}}
    if "masks" in names:
        dynamic["masks"] = {0: "detections", 2: "height", 3: "width"}
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(model, ([sample],), str(path), dynamo=False, opset_version=opset, input_names=["image"],
                          output_names=names, dynamic_axes=dynamic)
    shapes = {"boxes": ["detections", 4], "labels": ["detections"], "scores": ["detections"],
              "masks": ["detections", 1, "height", "width"]}
    return {
        "inputs": [{"name": "image", "shape": [3, "height", "width"], "dtype": "float32"}],
        "outputs": [{"name": name, "shape": shapes[name], "dtype": "int64" if name == "labels" else "float32"}
                    for name in names],
        "dynamic_batch": False,
        "fixed_settings": {name: getattr(config, name) for name in ("min_size", "max_size", "box_nms_thresh",
                                                                    "box_score_thresh", "box_detections_per_img")},
        "preprocessing": {"steps": ["RGB", "scale to [0, 1]", "CHW (one image per call, any size)"],
                          "inside_graph": "resize to min_size/max_size, ImageNet normalisation"},
        "postprocessing": "boxes are xyxy pixels of the input image; labels are 1..classes (labels.json[label - 1]); "
                          "detections are sorted by score and already thresholded, suppressed and capped; Mask "
                          "R-CNN masks are per-pixel probabilities (a pixel belongs to the object above 0.5)",
        "check": ({"image": sample.numpy()}, expected),
    }


def export_yolo(predictor, path: Path, opset: int = OPSET) -> dict[str, Any]:
    """``images [batch, 3, height, width]`` -> ``output0 [batch, 4 + classes, anchors]`` through ultralytics'
    exporter (dynamic batch and size)."""
    from jupyter_avml.models.ultralytics_adapter.export import export_yolo_onnx

    model = copy.deepcopy(predictor.model).float().cpu().eval()
    size = int(predictor.size)
    sample = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw = model(sample)
    expected = (raw[0] if isinstance(raw, (list, tuple)) else raw).numpy()
    with _quiet_export():
        export_yolo_onnx(model, path, size=size, opset=opset)
    return {
        "inputs": [{"name": "images", "shape": ["batch", 3, "height", "width"], "dtype": "float32"}],
        "outputs": [{"name": "output0", "shape": ["batch", 4 + len(predictor.class_names), "anchors"],
                     "dtype": "float32"}],
        "dynamic_batch": True,
        "fixed_settings": {"model_size": predictor.config.model_size},
        "preprocessing": {"steps": ["RGB", "letterbox: resize the longer side to img_size rounded up to the stride "
                                           "(bilinear), pad to a square with grey 114, centred", "scale to [0, 1]",
                                    "NCHW"], "stride": int(predictor.stride)},
        "postprocessing": "per anchor: box centre x, centre y, width, height in input pixels, then class "
                          "probabilities; non-maximum suppression with box_score_thresh and box_iou_thresh "
                          "(ultralytics' non_max_suppression), then boxes mapped back through the letterbox",
        "check": ({"images": sample.numpy()}, {"output0": expected}),
    }


def exporter_for(predictor):
    """The ``export_*`` of the model a predictor holds (by its predictor class: what the graph is traced from and
    what pre/post-processing the ONNX predictor reuses), or None."""
    from jupyter_avml.inference.classification import ClassificationPredictor
    from jupyter_avml.inference.detection import DetectionPredictor

    if isinstance(predictor, ClassificationPredictor):
        return export_classifier
    if isinstance(predictor, DetectionPredictor):
        return export_torchvision_detector
    from jupyter_avml.inference.yolo import YoloPredictor  # imported by now if the predictor is one

    return export_yolo if isinstance(predictor, YoloPredictor) else None
