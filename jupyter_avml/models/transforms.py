"""How an image becomes a model's input, and a mask output a binary mask: shared by training (its evaluation) and
inference, so that validation metrics describe what predictions return.

* classifiers (timm): resize the shorter side to ``valid_resize_size``, centre crop ``valid_crop_size``,
  float in [0, 1], normalised with the mean and std the weights were trained with (``eval_transform``);
* torchvision detectors: the image as a ``float32 [3, H, W]`` tensor in [0, 1] (``to_model_input``); the
  detector normalises and resizes it itself (``GeneralizedRCNNTransform``);
* Mask R-CNN mask probabilities become binary masks at ``MASK_THRESHOLD``.

YOLO's letterbox and NMS live with the rest of ultralytics, in ``models.ultralytics_adapter.predict``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MASK_THRESHOLD = 0.5  # Mask R-CNN mask probabilities -> binary masks (metrics and predicted polygons)


def eval_transform(resize_size: int, crop_size: int, mean: Sequence[float], std: Sequence[float]):
    """PIL RGB image -> ``float32 [3, crop_size, crop_size]``, normalised: the classifiers' validation and
    inference input."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.Resize(resize_size, antialias=True),
        v2.CenterCrop(crop_size),
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])


def to_model_input(image) -> torch.Tensor:
    """A PIL RGB image (or ``uint8 [3, H, W]`` tensor) as the ``float32 [3, H, W]`` [0, 1] tensor detectors take."""
    from torchvision.transforms.v2 import functional as F

    return F.to_dtype(F.to_image(image), torch.float32, scale=True).as_subclass(torch.Tensor)
