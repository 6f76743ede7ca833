"""Training augmentation of the torchvision detectors (spec section 7: random crop around the boxes, expand,
horizontal flip, normalisation, resize).

Every step is a torchvision transforms v2 transform over an ``(image, target)`` sample whose boxes are
``tv_tensors.BoundingBoxes`` (``format="XYXY"``, ``canvas_size=(H, W)``) and whose instance masks are a
``tv_tensors.Mask`` ``[N, H, W]``, so boxes and masks move with the pixels. ``train_transform()``:

1. ``ToImage``: the PIL image becomes a ``uint8 [3, H, W]`` ``tv_tensors.Image``.
2. Random crop around the boxes, with probability ``CROP_PROBABILITY``: ``CropAroundBoxes``, torchvision's
   ``RandomIoUCrop`` (SSD): a crop of 0.3-1 times each side (aspect ratio 0.5-2) overlapping at least one
   box with an IoU drawn from {0, 0.1, 0.3, 0.5, 0.7, 0.9} (or no crop at all).
   **Boxes leaving the crop**: a box whose CENTRE lies outside the crop is dropped; the others are clipped
   to the crop (step 6), so a kept box shows at least half its width and half its height; a box narrower
   or shorter than 1 pixel after clipping is dropped (step 7). Masks are cropped with the image and follow
   their boxes. An image without boxes is not cropped.
3. Zoom out ("expand"), with probability ``ZOOM_OUT_PROBABILITY``: ``RandomZoomOut`` places the image on a
   canvas 1 to ``ZOOM_OUT_MAX_SIDE`` times its size, filled with the ImageNet mean colour (zero after
   normalisation; masks are filled with 0). The detector resizes the larger canvas back to ``min_size``, so
   objects shrink by the same factor: SSD expands up to 4x, but 2x keeps objects at half their size or more,
   within reach of the smallest anchors (32 px) on small images.
4. ``RandomHorizontalFlip`` (p = 0.5).
5. ``ToDtype(float32, scale=True)``: pixels in [0, 1], the input the detectors take.
6. ``ClampBoundingBoxes``: boxes clipped to the image.
7. ``SanitizeBoundingBoxes(min_size=1)``: boxes (with their labels and masks) smaller than 1 pixel, or
   degenerate, are removed.

Normalisation and resizing are the detector's own first step, not repeated here: ``model.transform`` (a
``GeneralizedRCNNTransform`` built by ``jupyter_avml.models.detection.build_detector`` with the run's
``min_size``/``max_size`` and the ImageNet mean/std) normalises each image and resizes it so that its
shorter side is ``min_size`` unless its longer side would exceed ``max_size``, and maps the predicted boxes
back to the input's pixels. Validation and inference feed the image as it is (steps 1 and 5 only:
``models.transforms.to_model_input``), so they get exactly that "normalisation, resize".

Randomness comes from torch's global generator, which the engine seeds from ``(seed, epoch)`` before every
epoch; with DataLoader workers, each worker's seed derives from the seeded loader generator.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from jupyter_avml.models.transforms import IMAGENET_MEAN, to_model_input  # noqa: F401  (re-export)

IMAGENET_MEAN_UINT8 = tuple(round(255 * m) for m in IMAGENET_MEAN)
CROP_PROBABILITY = 0.5
ZOOM_OUT_PROBABILITY = 0.5
ZOOM_OUT_MAX_SIDE = 2.0
MIN_BOX_SIDE = 1.0


class CropAroundBoxes(v2.RandomIoUCrop):
    """``RandomIoUCrop`` that leaves an image without boxes uncropped.

    torchvision's version samples crops until one contains a box centre; with no box at all it can only
    stop by drawing its "no crop" option, after 40 useless trials per other option. Background-only images
    are valid training images here, so they skip the crop instead. ``make_params`` decides, ``transform``
    (inherited) applies: boxes whose centre is outside the crop are zeroed for ``SanitizeBoundingBoxes``.
    """

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        boxes = next(item for item in flat_inputs if isinstance(item, tv_tensors.BoundingBoxes))
        if boxes.shape[0] == 0:
            return {}
        return super().make_params(flat_inputs)


def train_transform() -> v2.Compose:
    """The training pipeline of the module docstring, for ``(PIL image, target)`` samples.

    ``target`` holds ``boxes`` (``tv_tensors.BoundingBoxes`` XYXY pixels), ``labels`` (``int64 [N]``) and
    optionally ``masks`` (``tv_tensors.Mask`` ``uint8 [N, H, W]``). Returns ``(float32 [3, H', W'] image in
    [0, 1], target)`` with the boxes, labels and masks that survived.
    """
    return v2.Compose([
        v2.ToImage(),
        v2.RandomApply([CropAroundBoxes()], p=CROP_PROBABILITY),
        v2.RandomZoomOut(fill={tv_tensors.Image: IMAGENET_MEAN_UINT8, "others": 0},
                         side_range=(1.0, ZOOM_OUT_MAX_SIDE), p=ZOOM_OUT_PROBABILITY),
        v2.RandomHorizontalFlip(p=0.5),
        v2.ToDtype(torch.float32, scale=True),
        v2.ClampBoundingBoxes(),
        v2.SanitizeBoundingBoxes(min_size=MIN_BOX_SIDE),
    ])
