"""Tile layout, cutting boxes to tiles and merging tile predictions (constructed cases, no model)."""

from __future__ import annotations

import pytest
import torch

from jupyter_avml.models.tiling import (
    MIN_VISIBLE_FRACTION,
    cut_targets_to_tile,
    merge_predictions,
    predict_images,
    tile_boxes,
)


def test_a_3x2_grid_on_300x200_has_the_documented_coordinates():
    tiles = tile_boxes(300, 200, (3, 2), 0.25)
    # columns: s = ceil(300 / 2.5) = 120, starts 0, 90, 180; rows: s = ceil(200 / 1.75) = 115, starts 0, 85
    assert tiles == [(0, 0, 120, 115), (90, 0, 210, 115), (180, 0, 300, 115),
                     (0, 85, 120, 200), (90, 85, 210, 200), (180, 85, 300, 200)]


@pytest.mark.parametrize("width,height,grid,overlap", [(300, 200, (3, 2), 0.25), (641, 479, (4, 3), 0.4),
                                                       (97, 61, (2, 5), 0.0), (50, 50, (1, 1), 0.3),
                                                       (1000, 30, (7, 2), 0.9)])
def test_tiles_cover_the_image_overlap_by_the_ratio_and_end_flush(width, height, grid, overlap):
    tiles = tile_boxes(width, height, grid, overlap)
    columns, rows = grid
    assert len(tiles) == columns * rows
    covered = torch.zeros(height, width, dtype=torch.bool)
    for x0, y0, x1, y1 in tiles:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert max(t[2] for t in tiles) == width and max(t[3] for t in tiles) == height
    first_row = tiles[:columns]
    first_column = tiles[::columns]
    for a, b in zip(first_row, first_row[1:], strict=False):
        size = a[2] - a[0]
        assert b[2] - b[0] == size  # equal tiles
        assert a[2] - b[0] >= overlap * size - 1  # neighbours overlap by the ratio (rounding: a pixel)
    for a, b in zip(first_column, first_column[1:], strict=False):
        assert a[3] - b[1] >= overlap * (a[3] - a[1]) - 1


def test_no_overlap_and_one_tile_edge_cases():
    assert tile_boxes(100, 60, (2, 1), 0.0) == [(0, 0, 50, 60), (50, 0, 100, 60)]
    assert tile_boxes(100, 60, (1, 1), 0.5) == [(0, 0, 100, 60)]
    with pytest.raises(ValueError, match="tile_overlap_ratio"):
        tile_boxes(100, 60, (2, 2), 1.0)
    with pytest.raises(ValueError, match="tile_grid_size"):
        tile_boxes(100, 60, (0, 2), 0.2)


def test_boxes_are_kept_clipped_or_dropped_by_the_visible_fraction():
    tile = (100, 50, 200, 150)
    boxes = torch.tensor([
        [120.0, 70.0, 160.0, 110.0],   # inside: kept as is (shifted)
        [180.0, 60.0, 220.0, 100.0],   # half inside (x 180-200 of 180-220): kept, clipped
        [190.0, 60.0, 230.0, 100.0],   # 10 of 40 px wide inside = 25 %: kept (rule is >=)
        [195.0, 60.0, 235.0, 100.0],   # 5 of 40 = 12.5 %: dropped
        [10.0, 10.0, 50.0, 40.0],      # outside: dropped
        [130.0, 80.0, 130.0, 90.0],    # zero area: dropped
    ])
    labels = torch.tensor([1, 2, 3, 1, 2, 3])
    cut = cut_targets_to_tile(boxes, labels, tile)
    assert MIN_VISIBLE_FRACTION == 0.25
    assert cut.keep.tolist() == [0, 1, 2]
    assert cut.labels.tolist() == [1, 2, 3]
    assert cut.boxes.tolist() == [[20.0, 20.0, 60.0, 60.0], [80.0, 10.0, 100.0, 50.0], [90.0, 10.0, 100.0, 50.0]]
    stricter = cut_targets_to_tile(boxes, labels, tile, min_visible=0.5)
    assert stricter.keep.tolist() == [0, 1]
    empty = cut_targets_to_tile(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), tile)
    assert empty.boxes.shape == (0, 4) and empty.keep.numel() == 0


def _prediction(boxes, scores, labels, masks=None):
    out = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
           "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.tensor(labels, dtype=torch.int64)}
    if masks is not None:
        out["masks"] = masks
    return out


def test_one_object_seen_in_two_tiles_and_the_full_image_ends_as_one_box():
    tiles = tile_boxes(300, 200, (3, 2), 0.25)  # tiles 0 and 1 overlap on x 90-120
    full = _prediction([[95.0, 40.0, 117.0, 62.0]], [0.6], [2])
    in_tile0 = _prediction([[95.0, 40.0, 117.0, 61.0]], [0.9], [2])        # tile 0 starts at (0, 0)
    in_tile1 = _prediction([[5.0, 40.0, 27.0, 62.0]], [0.8], [2])          # tile 1 starts at (90, 0)
    nothing = _prediction([], [], [])
    merged = merge_predictions([in_tile0, in_tile1, nothing, nothing, nothing, nothing], tiles, full, 0.25)
    assert merged["labels"].tolist() == [2]
    assert merged["scores"].tolist() == pytest.approx([0.9])
    assert merged["boxes"].tolist() == [[95.0, 40.0, 117.0, 61.0]]


def test_different_classes_at_the_same_place_are_not_merged_and_tile_boxes_are_shifted():
    tiles = [(0, 0, 60, 60), (40, 40, 100, 100)]
    full = _prediction([[50.0, 50.0, 70.0, 70.0]], [0.7], [1])
    tile_a = _prediction([], [], [])
    tile_b = _prediction([[10.0, 10.0, 30.0, 30.0], [40.0, 40.0, 55.0, 55.0]], [0.5, 0.4], [3, 3])
    merged = merge_predictions([tile_a, tile_b], tiles, full, 0.25)
    assert merged["labels"].tolist() == [1, 3, 3]
    assert merged["boxes"].tolist() == [[50.0, 50.0, 70.0, 70.0], [50.0, 50.0, 70.0, 70.0], [80.0, 80.0, 95.0, 95.0]]
    assert merged["scores"].tolist() == pytest.approx([0.7, 0.5, 0.4])
    capped = merge_predictions([tile_a, tile_b], tiles, full, 0.25, max_detections=2)
    assert capped["scores"].tolist() == pytest.approx([0.7, 0.5])


def test_tile_masks_are_pasted_at_their_tile_in_the_full_image():
    tiles = [(0, 0, 6, 4), (4, 2, 10, 6)]
    full_masks = torch.zeros(1, 1, 6, 10)
    full_masks[0, 0, 0:2, 0:2] = 0.9
    tile_masks = torch.zeros(1, 1, 4, 6)
    tile_masks[0, 0, 1:3, 3:5] = 0.8  # -> image rows 3-4, columns 7-8
    full = _prediction([[0.0, 0.0, 2.0, 2.0]], [0.9], [1], full_masks)
    tile_a = _prediction([], [], [], torch.zeros(0, 1, 4, 6))
    tile_b = _prediction([[3.0, 1.0, 5.0, 3.0]], [0.8], [1], tile_masks)
    merged = merge_predictions([tile_a, tile_b], tiles, full, 0.25)
    assert merged["masks"].shape == (2, 1, 6, 10)
    assert torch.equal(merged["masks"][0], full_masks[0])
    expected = torch.zeros(1, 6, 10)
    expected[0, 3:5, 7:9] = 0.8
    assert torch.equal(merged["masks"][1], expected)
    assert merged["boxes"][1].tolist() == [7.0, 3.0, 9.0, 5.0]


class _FixedDetector(torch.nn.Module):
    """Finds one box of class 1 at a fixed place of each input it is given, covering the input's centre."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, images):
        outputs = []
        for image in images:
            self.inputs.append(tuple(image.shape))
            h, w = image.shape[-2:]
            outputs.append(_prediction([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]], [0.5 + 0.001 * w], [1]))
        return outputs


def test_predict_images_runs_the_full_image_and_every_tile():
    model = _FixedDetector()
    image = torch.rand(3, 200, 300)
    merged = predict_images(model, [image], grid=(3, 2), overlap=0.25, nms_thresh=0.25, chunk_size=4)[0]
    assert model.inputs == [(3, 200, 300)] + [(3, 115, 120)] * 6
    # Each tile's box (its centre half) shifted to image pixels; none overlaps another by IoU 0.25, so all stay.
    expected = {(75.0, 50.0, 225.0, 150.0)} | {(x0 + 30.0, y0 + 28.75, x0 + 90.0, y0 + 86.25)
                                                for x0, y0, _, _ in tile_boxes(300, 200, (3, 2), 0.25)}
    assert {tuple(box) for box in merged["boxes"].tolist()} == expected
    assert merged["boxes"][0].tolist() == [75.0, 50.0, 225.0, 150.0]  # the best score first
    plain = predict_images(_FixedDetector(), [image])
    assert plain[0]["boxes"].tolist() == [[75.0, 50.0, 225.0, 150.0]]
