"""YOLO predictions: letterbox, forward, NMS, boxes back to the original image.

``detect_images`` is the one prediction path of a YOLO ``DetectionModel``: the training run's evaluation
(``training.yolo``) and the predictor (``inference.yolo.YoloPredictor``) both use it, so validation metrics
describe what inference returns.

Pipeline, per image (8-bit RGB, as ``jupyter_avml.data.images.load_image`` decodes it):

1. letterbox: resize (OpenCV bilinear, as ultralytics' loader) so that the longer side is ``size`` (the
   configured ``img_size`` rounded up to a multiple of the model stride, as ultralytics' trainer rounds it),
   then pad to ``size x size`` with grey 114, centred: the image ultralytics' training pipeline sees;
2. the network on ``float32 [B, 3, size, size]`` in [0, 1] (eval mode), giving ``[B, 4 + C, A]``;
3. ultralytics' ``non_max_suppression`` (score = class probability; ``conf`` and ``iou`` thresholds,
   at most ``max_det`` boxes per image);
4. boxes mapped back to original pixels (minus padding, divided by the scale) and clipped to the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

PAD_VALUE = 114  # ultralytics' letterbox grey
MAX_DET = 300  # ultralytics' default detections per image (validation and prediction)
# ultralytics' NMS stops after 2 s + max_time_img per image and returns what it has; a generous budget keeps
# results independent of machine load (a busy CPU must not truncate the detections of a validation).
NMS_SECONDS_PER_IMAGE = 5.0


@dataclass
class Letterboxed:
    """One image in the network's frame: ``pixels`` ``uint8 [size, size, 3]``; ``scale``, ``left``, ``top``
    map original pixel coordinates to it (``x' = x * scale_x + left``); ``width``, ``height`` are the original size."""

    pixels: np.ndarray
    scale_x: float
    scale_y: float
    left: int
    top: int
    width: int
    height: int


def network_size(img_size: int, stride: int) -> int:
    """``img_size`` rounded up to a multiple of ``stride`` (ultralytics' ``check_imgsz`` for training)."""
    return max(stride, math.ceil(int(img_size) / stride) * stride)


def letterbox(image, size: int) -> Letterboxed:
    """Resize the longer side of ``image`` (PIL RGB or ``uint8 [H, W, 3]``) to ``size`` and pad to a square."""
    import cv2

    pixels = np.asarray(image, dtype=np.uint8)
    height, width = pixels.shape[:2]
    ratio = size / max(height, width)
    new_w, new_h = max(1, min(size, round(width * ratio))), max(1, min(size, round(height * ratio)))
    if (new_w, new_h) != (width, height):
        pixels = cv2.resize(pixels, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    canvas[top:top + new_h, left:left + new_w] = pixels
    return Letterboxed(canvas, new_w / width, new_h / height, left, top, width, height)


def detect_images(model: torch.nn.Module, images: Sequence, *, size: int, conf: float, iou: float,
                  device: torch.device, max_det: int = MAX_DET, multi_label: bool = False,
                  amp_dtype: torch.dtype | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Detections of a YOLO ``DetectionModel`` (in eval mode) on a batch of RGB images.

    Parameters
    ----------
    model
        The ``DetectionModel``, on ``device``, in eval mode.
    images
        PIL RGB images or ``uint8 [H, W, 3]`` arrays (any sizes).
    size
        The square network input side (a multiple of the stride, see ``network_size``).
    conf, iou
        NMS score and IoU thresholds.
    multi_label
        One box per class above ``conf`` for each anchor (as ultralytics validates) instead of the best class.

    Returns
    -------
    list of (boxes, scores, labels)
        Per image: ``float32 [K, 4]`` ``xyxy`` in original pixels, ``float32 [K]``, ``int64 [K]`` class indices,
        by decreasing score.
    """
    from ultralytics.utils.nms import non_max_suppression

    if not images:
        return []
    boxed = [letterbox(image, size) for image in images]
    batch = torch.from_numpy(np.stack([b.pixels for b in boxed])).to(device)
    batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
    with torch.no_grad():
        if amp_dtype is not None:
            with torch.autocast(device.type, dtype=amp_dtype):
                raw = model(batch)
        else:
            raw = model(batch)
        prediction = raw[0] if isinstance(raw, (list, tuple)) else raw
        kept = non_max_suppression(prediction.float(), conf_thres=conf, iou_thres=iou, max_det=max_det,
                                   multi_label=multi_label, max_time_img=NMS_SECONDS_PER_IMAGE)
    out = []
    for detections, box in zip(kept, boxed, strict=True):
        detections = detections.float().cpu().numpy()
        xyxy = detections[:, :4].copy()
        xyxy[:, [0, 2]] = ((xyxy[:, [0, 2]] - box.left) / box.scale_x).clip(0, box.width)
        xyxy[:, [1, 3]] = ((xyxy[:, [1, 3]] - box.top) / box.scale_y).clip(0, box.height)
        out.append((xyxy.astype(np.float32), detections[:, 4].astype(np.float32), detections[:, 5].astype(np.int64)))
    return out
