"""Untrained tiny models saved as model files, and image bytes: what the serving and export tests serve.

The weights are random (the format and the plumbing are under test, not accuracy); each model is the smallest of
its family at 32-64 px, built with ``pretrained=False``, and saved exactly as training saves ``outputs/model.pt``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CLASSES = ["circle", "square", "triangle"]

# task -> (model_name, settings of the saved configuration)
TINY = {
    "image-classification": ("resnet18", dict(train_crop_size=32, valid_resize_size=32, valid_crop_size=32)),
    "image-classification-multilabel": ("resnet18", dict(train_crop_size=32, valid_resize_size=32,
                                                         valid_crop_size=32)),
    "image-object-detection": ("fasterrcnn_resnet18_fpn", dict(min_size=64, max_size=64, box_score_thresh=0.0,
                                                               box_detections_per_img=10)),
    "image-instance-segmentation": ("maskrcnn_resnet18_fpn", dict(min_size=64, max_size=64, box_score_thresh=0.0,
                                                                  box_detections_per_img=5)),
}
YOLO = ("yolov5", dict(model_size="small", img_size=64, box_score_thresh=0.0))


def save_untrained(folder: Path, task: str, model_name: str | None = None, seed: int = 0, **settings) -> Path:
    """``folder/outputs/model.pt`` (and ``labels.json``) of an untrained model; returns the outputs folder."""
    from jupyter_avml.config import AutoMLImageConfig
    from jupyter_avml.models.model_file import cpu_state_dict, model_payload, save_torch_file

    default_name, default_settings = YOLO if model_name == "yolov5" else TINY.get(task, (None, {}))
    model_name = model_name or default_name
    settings = {**(default_settings if model_name == default_name else {}), **settings}
    config = AutoMLImageConfig(task=task, training_data=str(folder / "train.jsonl"), model_name=model_name,
                               pretrained=0, device="cpu", workspace=str(folder / "ws"), **settings)
    torch.manual_seed(seed)
    family = config.model_spec.family
    extra = {}
    if family == "timm":
        from jupyter_avml.models.classification import build_classifier

        model = build_classifier(config.model_spec, len(CLASSES), pretrained=False, img_size=config.train_crop_size)
    elif family == "torchvision":
        from jupyter_avml.models.detection import build_detector

        model = build_detector(config.model_spec, len(CLASSES), pretrained=False, min_size=config.min_size,
                               max_size=config.max_size)
    else:
        from jupyter_avml.models.yolo import build_yolo

        model = build_yolo(config.model_spec, len(CLASSES), model_size=config.model_size, pretrained=False,
                           workspace_dir=folder / "ws").model
    outputs = folder / "outputs"
    save_torch_file(model_payload(task=task, model_name=model_name, class_names=CLASSES, config=config.to_dict(),
                              state_dict=cpu_state_dict(model), extra=extra), outputs / "model.pt")
    (outputs / "labels.json").write_text('["circle", "square", "triangle"]')
    return outputs


def image_bytes(width: int = 64, height: int = 48, seed: int = 0, fmt: str = "PNG") -> bytes:
    """An image file's bytes: coloured shapes on a noisy background (something for detectors to score)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    pixels[height // 4: height // 2, width // 4: width // 2] = (230, 40, 40)
    pixels[height // 2: 7 * height // 8, width // 2: 7 * width // 8] = (40, 40, 230)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, fmt)
    return buffer.getvalue()
