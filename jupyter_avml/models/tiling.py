"""Tiling for small objects (spec section 6: ``tile_grid_size``, ``tile_overlap_ratio``,
``tile_predictions_nms_thresh``).

A detector resizes every input to ``min_size``/``max_size``, so the small objects of a large image shrink
below what its feature maps resolve. Tiling cuts the image into a grid of overlapping tiles; each tile is
resized like any image, so its objects are seen larger.

Layout (``tile_boxes``)
-----------------------
``tile_grid_size = (columns, rows)``. Along an axis of ``L`` pixels cut into ``n`` tiles with overlap ratio
``r``, every tile is ``s = ceil(L / (n - (n - 1) * r))`` pixels long (at most ``L``): the smallest size for
which ``n`` tiles whose neighbours overlap by ``r * s`` span the axis. Tile ``i`` starts at
``round(i * (L - s) / (n - 1))``: the first at 0, the last flush with the far edge, the others evenly
between, so neighbours overlap by ``r * s`` pixels or slightly more (rounding up ``s``, then rounding the
starts, may add a pixel or so). Tiles are listed row by row, left to right. Example: 300 x 200 pixels,
grid (3, 2), overlap 0.25: columns ``[0, 120) [90, 210) [180, 300)``, rows ``[0, 115) [85, 200)``.

Training (``cut_targets_to_tile``)
----------------------------------
Each training image gives ``1 + columns * rows`` samples per epoch: the full image and every tile. A tile's
targets are the boxes with at least ``MIN_VISIBLE_FRACTION`` (25 %) of their area inside the tile, clipped
to it (masks are cropped with the image). A smaller sliver is dropped rather than taught as an object:
neither its class nor its extent can be seen in it, and with the default overlap every object that fits in
a tile is whole in at least one tile or in the full image.

Validation and inference (``merge_predictions``)
------------------------------------------------
The model predicts on the full image and on every tile; tile boxes are shifted back to image pixels and all
predictions are merged by class-wise non-maximum suppression (``torchvision.ops.batched_nms``) at IoU
``tile_predictions_nms_thresh``: an object found in several tiles and in the full image ends as one box, the
highest-scoring one; objects of different classes at the same place are never merged. At most
``box_detections_per_img`` detections are kept, the best scores first.

Cost: ``1 + columns * rows`` forward passes per image, in training (that many samples per image and epoch),
at validation and at inference. A (3, 2) grid costs about 7 times the compute of the image alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

MIN_VISIBLE_FRACTION = 0.25
"""A box belongs to a tile when at least this fraction of its area lies inside the tile."""

Tile = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)`` in pixels of the full image, ends exclusive."""


def _axis_spans(length: int, count: int, overlap: float) -> list[tuple[int, int]]:
    size = min(length, math.ceil(length / (count - (count - 1) * overlap)))
    if count == 1:
        return [(0, size)]
    starts = [round(i * (length - size) / (count - 1)) for i in range(count)]
    return [(start, start + size) for start in starts]


def tile_boxes(width: int, height: int, grid: Sequence[int], overlap: float) -> list[Tile]:
    """The tiles of a ``width`` x ``height`` image (see the module docstring for the layout).

    Parameters
    ----------
    width, height
        Image size in pixels (>= 1).
    grid
        ``(columns, rows)``, both >= 1, as ``tile_grid_size``.
    overlap
        ``tile_overlap_ratio`` in [0, 1): overlap of neighbouring tiles as a fraction of the tile size.

    Returns
    -------
    list of ``(x0, y0, x1, y1)`` integer pixel boxes (ends exclusive), row by row, left to right; together
    they cover the image.
    """
    columns, rows = int(grid[0]), int(grid[1])
    if columns < 1 or rows < 1:
        raise ValueError(f"tile_grid_size must be two positive integers (columns, rows), got {tuple(grid)}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"tile_overlap_ratio must be in [0, 1), got {overlap}")
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    xs = _axis_spans(int(width), columns, float(overlap))
    ys = _axis_spans(int(height), rows, float(overlap))
    return [(x0, y0, x1, y1) for y0, y1 in ys for x0, x1 in xs]


class TileTargets(NamedTuple):
    """Targets of one tile: ``boxes`` ``[K, 4]`` xyxy in TILE pixels, ``labels`` ``[K]``, and ``keep``
    ``[K]`` (int64), the indices of the kept boxes in the input (to select masks, crowd flags...)."""

    boxes: torch.Tensor
    labels: torch.Tensor
    keep: torch.Tensor


def cut_targets_to_tile(boxes: torch.Tensor, labels: torch.Tensor, tile: Tile,
                        min_visible: float = MIN_VISIBLE_FRACTION) -> TileTargets:
    """The boxes of an image that belong to ``tile``, clipped to it, in the tile's coordinates.

    Parameters
    ----------
    boxes
        ``[N, 4]`` float, xyxy pixels of the full image.
    labels
        ``[N]`` labels (any dtype; returned for the kept boxes).
    tile
        ``(x0, y0, x1, y1)`` of the tile in image pixels.
    min_visible
        A box is kept when ``area(box inside the tile) / area(box) >= min_visible``; boxes of zero area are
        dropped. Kept boxes are clipped to the tile and shifted by ``(-x0, -y0)``.
    """
    from torchvision.ops import box_area, clip_boxes_to_image

    x0, y0, x1, y1 = (int(v) for v in tile)
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    shifted = boxes - torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype)
    clipped = clip_boxes_to_image(shifted, (y1 - y0, x1 - x0))
    area = box_area(boxes)
    visible = torch.where(area > 0, box_area(clipped) / area.clamp(min=torch.finfo(area.dtype).tiny),
                          torch.zeros_like(area))
    keep = torch.nonzero(visible >= min_visible).flatten()
    return TileTargets(clipped[keep], torch.as_tensor(labels)[keep], keep)


def merge_predictions(per_tile_predictions: Sequence[dict[str, torch.Tensor]], tiles: Sequence[Tile],
                      full_image_prediction: dict[str, torch.Tensor], nms_thresh: float, *,
                      image_size: tuple[int, int] | None = None,
                      max_detections: int | None = None) -> dict[str, torch.Tensor]:
    """One image's predictions from those of its tiles and of the full image.

    Parameters
    ----------
    per_tile_predictions
        One torchvision output dict per tile, in TILE pixels: ``boxes`` ``[K, 4]`` xyxy, ``scores`` ``[K]``,
        ``labels`` ``[K]`` and, for Mask R-CNN, ``masks`` ``[K, 1, h, w]`` of the tile size.
    tiles
        The ``(x0, y0, x1, y1)`` of each tile, same order.
    full_image_prediction
        The output dict for the full image (image pixels; masks ``[K, 1, H, W]``).
    nms_thresh
        IoU threshold of the class-wise NMS (``tile_predictions_nms_thresh``).
    image_size
        ``(width, height)`` of the full image; needed for masks only, taken from the full image's masks
        when omitted.
    max_detections
        Keep at most this many detections (the highest scores); all when None.

    Returns
    -------
    dict with ``boxes`` (image pixels), ``scores``, ``labels`` and, when masks were given, ``masks``
    ``[K, 1, H, W]`` (tile masks pasted at their tile's place, zero elsewhere), by decreasing score.
    """
    from torchvision.ops import batched_nms

    if len(per_tile_predictions) != len(tiles):
        raise ValueError(f"{len(per_tile_predictions)} tile predictions for {len(tiles)} tiles")
    parts = [full_image_prediction, *per_tile_predictions]
    offsets = [(0, 0)] + [(int(t[0]), int(t[1])) for t in tiles]
    boxes = torch.cat([p["boxes"].reshape(-1, 4) + torch.tensor([dx, dy, dx, dy], dtype=p["boxes"].dtype,
                                                                  device=p["boxes"].device)
                       for p, (dx, dy) in zip(parts, offsets, strict=True)])
    scores = torch.cat([p["scores"].reshape(-1) for p in parts])
    labels = torch.cat([p["labels"].reshape(-1) for p in parts])
    keep = batched_nms(boxes, scores, labels, float(nms_thresh))  # sorted by decreasing score
    if max_detections is not None:
        keep = keep[:max_detections]
    merged = {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
    if "masks" in full_image_prediction:
        merged["masks"] = _paste_masks(parts, offsets, keep, image_size)
    return merged


def _paste_masks(parts, offsets, keep: torch.Tensor, image_size) -> torch.Tensor:
    full = parts[0]["masks"]
    if image_size is None:
        height, width = full.shape[-2:]
    else:
        width, height = image_size
    # Which part and which row of it each concatenated detection came from.
    counts = [len(p["scores"]) for p in parts]
    part_of = torch.repeat_interleave(torch.arange(len(parts)), torch.tensor(counts))
    starts = torch.tensor([0] + counts[:-1]).cumsum(0)
    out = full.new_zeros((len(keep), 1, int(height), int(width)))
    for row, index in enumerate(keep.tolist()):
        part = int(part_of[index])
        mask = parts[part]["masks"][index - int(starts[part])]
        dx, dy = offsets[part]
        h, w = mask.shape[-2:]
        out[row, :, dy:dy + h, dx:dx + w] = mask
    return out


def predict_images(model: torch.nn.Module, images: Sequence[torch.Tensor], *, grid: Sequence[int] | None = None,
                   overlap: float = 0.25, nms_thresh: float = 0.25, max_detections: int | None = None,
                   chunk_size: int = 8) -> list[dict[str, torch.Tensor]]:
    """Predictions of a torchvision detector (in eval mode) for ``images``, tiled when ``grid`` is set.

    ``images`` are ``float32 [3, H, W]`` tensors in [0, 1] on the model's device. Without ``grid``, the
    model's outputs as they are; with it, the full image and its tiles go through the model (in chunks of
    ``chunk_size`` inputs) and are merged by ``merge_predictions``. Outputs are in image pixels, on the
    model's device; Mask R-CNN masks are ``[K, 1, H, W]`` probabilities.
    """
    if not grid:
        outputs = []
        for start in range(0, len(images), chunk_size):
            outputs.extend(model(list(images[start:start + chunk_size])))
        return outputs
    inputs, layout = [], []
    for image in images:
        height, width = image.shape[-2:]
        tiles = tile_boxes(int(width), int(height), grid, overlap)
        layout.append((len(inputs), tiles, (int(width), int(height))))
        inputs.append(image)
        inputs.extend(image[:, y0:y1, x0:x1] for x0, y0, x1, y1 in tiles)
    raw = []
    for start in range(0, len(inputs), chunk_size):
        raw.extend(model(inputs[start:start + chunk_size]))
    return [merge_predictions(raw[first + 1:first + 1 + len(tiles)], tiles, raw[first], nms_thresh,
                              image_size=size, max_detections=max_detections)
            for first, tiles, size in layout]
