"""The object detection and instance segmentation recipe over torchvision's Faster R-CNN, RetinaNet and
Mask R-CNN (``jupyter_avml.models.detection``).

Targets
-------
Records carry fractions (``jupyter_avml.data.records``); here they become pixels of the decoded image:
``boxes`` ``float32 [N, 4]`` xyxy (``top_x * width``...), ``labels`` ``int64 [N]`` = class index + 1 (0 is
torchvision's background) and, for Mask R-CNN, ``masks`` ``uint8 [N, H, W]`` rasterised from the polygons
(``data.masks.polygons_to_mask``). Crowd objects (``isCrowd``) are trained on like the others and ignored by
the metric (``ImageTargets.iscrowd``). An image without objects is a valid training image (``boxes [0, 4]``):
it teaches background.

Data pipeline
-------------
Training: ``detection_transforms.train_transform()`` (random crop around the boxes, zoom out, horizontal
flip; the crop rule is documented there). Normalisation and resizing to ``min_size``/``max_size`` are done by
the detector's ``GeneralizedRCNNTransform``, for training, validation and inference alike (see
``detection_transforms``). Batches are lists: ``(list of [3, H, W] images, list of target dicts)``.
With ``tile_grid_size``, each training image gives the full image plus each of its tiles as separate samples,
and validation merges full-image and tile predictions (``jupyter_avml.models.tiling``: rules and cost).

Region sampling
---------------
Faster and Mask R-CNN train their box (and mask) head on ``ROI_SAMPLES_PER_IMAGE`` = 128 regions per image,
at most 25 % of them positives, instead of torchvision's 512 (chosen for COCO at 800-1333 px with many
objects per image; detectron2's tutorial uses 128 as "faster, and good enough"). The head's cost grows with
that number: a Faster R-CNN ResNet-18 step on 96 px inputs took 1.4 s of CPU per image at 512 regions and
0.46 s at 128. On images with a few objects, 512 regions are nearly all background, which also slowed
learning from scratch on the shapes set (no detection at all after two epochs of 80 images at 512 regions;
mAP 0.28 after two epochs of 120 images at 64). It changes training only: inference, the saved weights and
RetinaNet (which has no region head) are unaffected.

Evaluation
----------
mAP (``validation_metric_type`` voc, coco or coco_voc; ``jupyter_avml.metrics.detection_metrics``) ranks
every detection, so during evaluation the model's score threshold is lowered from ``box_score_thresh`` to
``EVAL_SCORE_THRESH`` (0.001, the standard practice of COCO/VOC evaluation: a threshold would cut the
precision-recall curve short and lower the mAP) and restored afterwards; the number of detections per image
stays ``box_detections_per_img``. ``precision`` and ``recall`` are reported at ``box_score_thresh``, the
threshold the deployed model uses. ``validation_metric_type: none`` computes only those two (the model then
keeps its threshold). Instance segmentation computes box and mask metrics and merges them
(``merge_box_and_mask``): mask numbers are primary (``mean_average_precision`` is the mask mAP), box numbers
carry a ``box_`` prefix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.data.records import ImageRecord
from jupyter_avml.metrics.detection import ImagePredictions, ImageTargets
from jupyter_avml.metrics.result import MetricsResult
from jupyter_avml.models.transforms import MASK_THRESHOLD
from jupyter_avml.training.classification import IMAGE_CACHE_BYTES, DecodedImageCache
from jupyter_avml.training.recipe import Recipe

EVAL_SCORE_THRESH = 0.001
ROI_SAMPLES_PER_IMAGE = 128
"""Regions per image that train the box (and mask) head of Faster/Mask R-CNN (torchvision's default: 512)."""


# -- targets -----------------------------------------------------------------------------------------------
def record_targets(record: ImageRecord, width: int, height: int, class_index: dict[str, int],
                   with_masks: bool) -> dict[str, Any]:
    """Pixel targets of one record for an image of ``width`` x ``height``.

    Returns a dict of ``boxes`` (``float32 [N, 4]`` xyxy pixels), ``classes`` (``int64 [N]``, index in
    ``class_index`` order, 0-based), ``iscrowd`` (``bool [N]``) and, with ``with_masks``, ``masks``
    (``bool [N, H, W]``, from the polygons).
    """
    from jupyter_avml.data.masks import denormalize_polygons, polygons_to_mask

    objects = tuple(record.label)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    boxes = torch.tensor([obj.box for obj in objects], dtype=torch.float32).reshape(-1, 4) * scale
    out = {
        "boxes": boxes,
        "classes": torch.tensor([class_index[obj.label] for obj in objects], dtype=torch.int64),
        "iscrowd": torch.tensor([bool(obj.is_crowd) for obj in objects], dtype=torch.bool),
    }
    if with_masks:
        masks = np.zeros((len(objects), height, width), dtype=bool)
        for i, obj in enumerate(objects):
            masks[i] = polygons_to_mask(denormalize_polygons(obj.polygon, width, height), height, width)
        out["masks"] = torch.from_numpy(masks)
    return out


def collate_lists(batch: Sequence[tuple]) -> tuple[list, ...]:
    """Detection batches are lists (images differ in size): ``[(a, b), (c, d)] -> ([a, c], [b, d])``."""
    return tuple(list(items) for items in zip(*batch, strict=True))


class DetectionTrainingSet(Dataset):
    """Augmented training samples: ``(float32 [3, H, W] image in [0, 1], target dict)``.

    The target holds ``boxes`` (``float32 [N, 4]`` xyxy pixels of the returned image), ``labels``
    (``int64 [N]``, 1..C) and, for Mask R-CNN, ``masks`` (``uint8 [N, H, W]``). With ``grid``, sample
    ``i`` is tile ``i % (1 + tiles) - 1`` of record ``i // (1 + tiles)`` (-1: the full image), its boxes cut by
    ``models.tiling.cut_targets_to_tile``.
    """

    def __init__(self, records: list[ImageRecord], class_names: list[str], *, with_masks: bool, transform,
                 cache: DecodedImageCache | None = None, grid: Sequence[int] | None = None,
                 overlap: float = 0.25):
        self.records = records
        self.class_index = {name: i for i, name in enumerate(class_names)}
        self.with_masks = with_masks
        self.transform = transform
        self.cache = cache if cache is not None else DecodedImageCache(0)
        self.grid = tuple(grid) if grid else None
        self.overlap = overlap
        self.per_record = 1 + (self.grid[0] * self.grid[1] if self.grid else 0)

    def __len__(self) -> int:
        return len(self.records) * self.per_record

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as F

        record = self.records[i // self.per_record]
        tile_index = i % self.per_record - 1
        pil = self.cache.get(record.path)
        width, height = pil.size
        image = F.to_image(pil)
        found = record_targets(record, width, height, self.class_index, self.with_masks)
        boxes, labels = found["boxes"], found["classes"] + 1
        masks = found.get("masks")
        if tile_index >= 0:
            from jupyter_avml.models.tiling import cut_targets_to_tile, tile_boxes

            tile = tile_boxes(width, height, self.grid, self.overlap)[tile_index]
            x0, y0, x1, y1 = tile
            boxes, labels, keep = cut_targets_to_tile(boxes, labels, tile)
            image = image[:, y0:y1, x0:x1]
            if masks is not None:
                masks = masks[keep][:, y0:y1, x0:x1]
            height, width = y1 - y0, x1 - x0
        target: dict[str, Any] = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
            "labels": labels,
        }
        if masks is not None:
            target["masks"] = tv_tensors.Mask(masks.to(torch.uint8))
        image, target = self.transform(tv_tensors.Image(image), target)
        # Plain tensors for the model (tv_tensors would keep their metadata through every op).
        return image.as_subclass(torch.Tensor), {k: v.as_subclass(torch.Tensor) for k, v in target.items()}


class DetectionValidationSet(Dataset):
    """``(float32 [3, H, W] image in [0, 1], ImageTargets in pixels of that image)`` per validation record."""

    def __init__(self, records: list[ImageRecord], class_names: list[str], *, with_masks: bool,
                 cache: DecodedImageCache | None = None):
        self.records = records
        self.class_index = {name: i for i, name in enumerate(class_names)}
        self.with_masks = with_masks
        self.cache = cache if cache is not None else DecodedImageCache(0)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ImageTargets]:
        from jupyter_avml.models.transforms import to_model_input

        pil = self.cache.get(self.records[i].path)
        width, height = pil.size
        found = record_targets(self.records[i], width, height, self.class_index, self.with_masks)
        masks = found["masks"].numpy() if self.with_masks else None
        targets = ImageTargets(boxes=found["boxes"].numpy(), labels=found["classes"].numpy(),
                               iscrowd=found["iscrowd"].numpy(), masks=masks, width=width, height=height)
        return to_model_input(pil), targets


@contextmanager
def score_threshold(model: torch.nn.Module, value: float):
    """Temporarily set a torchvision detector's inference score threshold (restored on exit)."""
    holder = model.roi_heads if hasattr(model, "roi_heads") else model  # R-CNNs vs RetinaNet
    previous = holder.score_thresh
    holder.score_thresh = value
    try:
        yield
    finally:
        holder.score_thresh = previous


def to_image_predictions(output: dict[str, torch.Tensor]) -> ImagePredictions:
    """A torchvision output dict (labels 1..C, masks ``[K, 1, H, W]`` probabilities) as metric input
    (labels 0..C-1, masks ``bool [K, H, W]`` at ``MASK_THRESHOLD``)."""
    masks = output.get("masks")
    return ImagePredictions(
        boxes=output["boxes"].float().cpu().numpy(), scores=output["scores"].float().cpu().numpy(),
        labels=(output["labels"] - 1).cpu().numpy(),
        masks=None if masks is None else (masks[:, 0] > MASK_THRESHOLD).cpu().numpy())


class DetectionRecipe(Recipe):
    """torchvision detector + the spec's detection augmentation + the detector's own losses + mAP."""

    def __init__(self, config: AutoMLImageConfig, class_names: list[str], train_records: list[ImageRecord],
                 valid_records: list[ImageRecord]):
        super().__init__(config, class_names, train_records, valid_records)
        from jupyter_avml.training.detection_transforms import train_transform

        self.with_masks = config.task_type.has_masks
        self.grid = config.tile_grid_size
        cache = DecodedImageCache(IMAGE_CACHE_BYTES)
        self.train_set = DetectionTrainingSet(train_records, class_names, with_masks=self.with_masks,
                                              transform=train_transform(), cache=cache, grid=self.grid,
                                              overlap=config.tile_overlap_ratio)
        self.valid_set = DetectionValidationSet(valid_records, class_names, with_masks=self.with_masks,
                                                cache=cache)
        self._batchnorm_eps: float | None = None

    # -- model ----------------------------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        from jupyter_avml.models.detection import batchnorm_eps, build_detector

        config = self.config
        model = build_detector(config.model_spec, len(self.class_names), pretrained=bool(config.pretrained),
                               pretrained_weights=config.pretrained_weights, min_size=config.min_size,
                               max_size=config.max_size, box_score_thresh=config.box_score_thresh,
                               box_nms_thresh=config.box_nms_thresh,
                               box_detections_per_img=config.box_detections_per_img)
        if hasattr(model, "roi_heads"):  # training-only: inference and the saved weights are unaffected
            model.roi_heads.fg_bg_sampler.batch_size_per_image = ROI_SAMPLES_PER_IMAGE
        self._batchnorm_eps = batchnorm_eps(model)
        return model

    def export_extra(self) -> dict:
        """The facts the predictor must not recompute: the backbone's BatchNorm epsilon (0 after COCO v1 weights)."""
        return {"detector": {"batchnorm_eps": self._batchnorm_eps}}

    # -- data -----------------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, batch_size: int, *, shuffle: bool, epoch: int = 0) -> DataLoader:
        generator = torch.Generator().manual_seed(self.config.seed * 7919 + epoch) if shuffle else None
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                          num_workers=self.config.num_workers, collate_fn=collate_lists,
                          pin_memory=torch.cuda.is_available() and self.config.device != "cpu")

    def train_batches(self, epoch: int) -> Iterable[Any]:
        return self._loader(self.train_set, self.config.training_batch_size, shuffle=True, epoch=epoch)

    def num_train_batches(self) -> int:
        return math.ceil(len(self.train_set) / self.config.training_batch_size)

    def training_loss(self, model, batch, device):
        images, targets = batch
        images = [image.to(device, non_blocking=True) for image in images]
        targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
        losses = model(images, targets)
        return sum(loss.float() for loss in losses.values()), len(images)

    # -- evaluation -----------------------------------------------------------------------------------
    def predict(self, model, images: list[torch.Tensor], device) -> list[dict[str, torch.Tensor]]:
        """Model outputs for validation images (tiled and merged when ``tile_grid_size`` is set)."""
        from jupyter_avml.models.tiling import predict_images

        config = self.config
        return predict_images(model, [image.to(device, non_blocking=True) for image in images], grid=self.grid,
                              overlap=config.tile_overlap_ratio, nms_thresh=config.tile_predictions_nms_thresh,
                              max_detections=config.box_detections_per_img)

    def evaluate(self, model, device) -> MetricsResult:
        config = self.config
        loader = self._loader(self.valid_set, config.validation_batch_size, shuffle=False)
        metric_type = config.validation_metric_type
        threshold = config.box_score_thresh if metric_type == "none" else EVAL_SCORE_THRESH
        targets: list[ImageTargets] = []
        predictions: list[ImagePredictions] = []
        with score_threshold(model, threshold):
            for images, image_targets in loader:
                for output, target in zip(self.predict(model, images, device), image_targets, strict=True):
                    predictions.append(to_image_predictions(output))
                    targets.append(target)
        return self.metrics(targets, predictions)

    def metrics(self, targets: list[ImageTargets], predictions: list[ImagePredictions]) -> MetricsResult:
        from jupyter_avml.metrics.detection import detection_metrics, merge_box_and_mask

        common = dict(metric_type=self.config.validation_metric_type, score_threshold=self.config.box_score_thresh,
                      task=self.config.task_type.value)
        box = detection_metrics(targets, predictions, self.class_names, iou_type="bbox", **common)
        if not self.with_masks:
            return box
        mask = detection_metrics(targets, predictions, self.class_names, iou_type="segm", **common)
        return merge_box_and_mask(box, mask)
