"""YOLOv5 predictor: the spec's response format from the prediction path the training evaluated with
(``models.ultralytics_adapter.predict.detect_images``: letterbox, forward, NMS, boxes back to the image)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from jupyter_avml.inference.predictor import Predictor
from jupyter_avml.models.ultralytics_adapter.network import model_stride
from jupyter_avml.models.ultralytics_adapter.predict import detect_images, network_size


class YoloPredictor(Predictor):
    """``{"boxes": [{"box": {"topX", "topY", "bottomX", "bottomY"}, "label", "score"}, ...]}`` per image.

    Box corners are fractions of the original image's width and height. Settings come from the saved
    configuration, overridden by ``load_model``'s ``model_settings``: ``img_size`` (letterbox size),
    ``model_size`` (must match the saved weights), ``box_score_thresh`` (NMS ``conf``: boxes scoring
    below are dropped), ``box_iou_thresh`` (NMS IoU).
    """

    def __init__(self, payload: dict, config, device: torch.device, model_file=None):
        super().__init__(payload, config, device, model_file)
        from jupyter_avml.models.yolo import build_yolo

        spec = config.model_spec
        saved_size = payload["config"].get("model_size")
        if config.model_size != saved_size:
            from jupyter_avml.errors import ConfigError

            raise ConfigError(f"{model_file or 'the model file'} holds a yolov5 of model_size {saved_size!r}; "
                              f"model_size {config.model_size!r} does not fit its weights",
                              field="model_size", value=config.model_size)
        yolo = build_yolo(spec, len(self.class_names), model_size=config.model_size, pretrained=False,
                          workspace_dir=_inference_workspace(config))
        self.model = yolo.model
        self.model.load_state_dict(payload["state_dict"])
        self.model.float().to(device).eval()
        self.stride = model_stride(self.model)
        self.size = network_size(config.img_size, self.stride)
        self.conf = float(config.box_score_thresh)
        self.iou = float(config.box_iou_thresh)

    def predict_batch(self, images: Sequence) -> list[dict[str, Any]]:
        results = detect_images(self.model, list(images), size=self.size, conf=self.conf, iou=self.iou,
                                device=self.device)
        outputs = []
        for image, (boxes, scores, labels) in zip(images, results, strict=True):
            width, height = image.size
            outputs.append({"boxes": [
                {"box": {"topX": float(x0) / width, "topY": float(y0) / height,
                         "bottomX": float(x1) / width, "bottomY": float(y1) / height},
                 "label": self.class_names[int(label)], "score": float(score)}
                for (x0, y0, x1, y1), score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist(),
                                                           strict=True)]})
        return outputs


def _inference_workspace(config):
    """Where ultralytics keeps its settings while predicting: the configured workspace when it exists, else the
    usual resolution (``$AVML_WORKSPACE``, then ``./avml-workspace``)."""
    from pathlib import Path

    from jupyter_avml.workspace import Workspace

    if config.workspace and Path(config.workspace).expanduser().is_dir():
        return Workspace.resolve(config.workspace)
    return Workspace.resolve(None)
