"""Binary masks <-> polygons (jupyter_avml.data.masks): exact round trips, specks, units."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from scipy import ndimage

from jupyter_avml.data.masks import (
    denormalize_polygons,
    mask_to_polygons,
    normalize_polygons,
    polygon_area,
    polygons_to_mask,
    rle_to_mask,
)


def _shapes() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    import cv2

    blob = cv2.GaussianBlur(rng.random((48, 64)), (0, 0), 3) > 0.5
    ell = np.zeros((20, 20), bool)
    ell[2:16, 2:5] = True
    ell[12:16, 2:17] = True
    yy, xx = np.mgrid[:40, :40]
    disc = (yy - 20) ** 2 + (xx - 17) ** 2 < 150
    line = np.zeros((10, 30), bool)
    line[4, 3:25] = True  # one pixel wide: a polygon through pixel centres would have zero area
    diagonal = np.eye(12, dtype=bool)
    return {"blob": blob, "ell": ell, "disc": disc, "line": line, "diagonal": diagonal}


@pytest.mark.parametrize("name", ["blob", "ell", "disc", "line", "diagonal"])
def test_mask_polygon_mask_round_trip_is_exact(name):
    mask = _shapes()[name]
    polygons = mask_to_polygons(mask, min_area=1)
    assert polygons and all(len(p) >= 6 and len(p) % 2 == 0 for p in polygons)
    back = polygons_to_mask(polygons, *mask.shape)
    assert back.dtype == bool and back.shape == mask.shape
    # Outer outlines only: holes come back filled (background 4-connected to nothing outside is a hole).
    expected = ndimage.binary_fill_holes(mask)
    assert np.array_equal(back, expected), f"{name}: {int((back ^ expected).sum())} pixels differ"


def test_full_mask_outline_is_the_image_border_in_pixel_edge_units():
    polygons = mask_to_polygons(np.ones((5, 7), np.uint8))
    assert len(polygons) == 1
    points = {(polygons[0][i], polygons[0][i + 1]) for i in range(0, len(polygons[0]), 2)}
    assert points == {(0.0, 0.0), (7.0, 0.0), (7.0, 5.0), (0.0, 5.0)}
    assert abs(polygon_area(polygons[0])) == pytest.approx(35.0)


def test_specks_dropped_largest_first_and_holes_filled():
    mask = np.zeros((30, 30), bool)
    mask[2:12, 2:12] = True
    mask[5:8, 5:8] = False  # a hole: COCO polygons cannot hold it
    mask[20:23, 20:25] = True  # 15 px
    mask[28, 28] = True  # a 1-pixel speck
    polygons = mask_to_polygons(mask)  # default min_area 4
    assert len(polygons) == 2
    assert abs(polygon_area(polygons[0])) == pytest.approx(100.0)  # hole filled
    assert abs(polygon_area(polygons[1])) == pytest.approx(15.0)
    assert len(mask_to_polygons(mask, min_area=20)) == 1
    assert len(mask_to_polygons(mask, min_area=1)) == 3
    assert mask_to_polygons(np.zeros((4, 4), bool)) == []


def test_tolerance_simplifies_outline_within_bounds():
    disc = _shapes()["disc"]
    exact = mask_to_polygons(disc)
    simple = mask_to_polygons(disc, tolerance=1.0)
    assert len(simple[0]) < len(exact[0])
    back = polygons_to_mask(simple, *disc.shape)
    iou = (back & disc).sum() / (back | disc).sum()
    assert iou > 0.9


def test_mask_to_polygons_rejects_non_2d():
    with pytest.raises(ValueError, match="2-D"):
        mask_to_polygons(np.zeros((2, 3, 3)))


def test_polygons_to_mask_ignores_short_segments_instead_of_reading_them_as_boxes():
    # pycocotools reads a 4-value list as a box: a 2-point segment must not fill a rectangle.
    mask = polygons_to_mask([[1, 1, 6, 6]], 8, 8)
    assert not mask.any()
    mask = polygons_to_mask([[0, 0, 4, 0, 4, 2, 0, 2], [1, 1, 2, 2]], 8, 8)
    assert mask.sum() == 8 and mask[:2, :4].all()


def test_normalize_and_denormalize_are_inverse_in_fractions():
    px = [[0.0, 0.0, 64.0, 0.0, 64.0, 48.0], [32.0, 12.0, 48.0, 24.0, 16.0, 36.0]]
    frac = normalize_polygons(px, 64, 48)
    assert frac[0] == (0.0, 0.0, 1.0, 0.0, 1.0, 1.0)
    assert frac[1] == (0.5, 0.25, 0.75, 0.5, 0.25, 0.75)
    assert denormalize_polygons(frac, 64, 48) == px
    with pytest.raises(ValueError, match="positive"):
        normalize_polygons(px, 0, 48)


def test_rle_to_mask_compressed_and_uncompressed():
    mask = _shapes()["blob"]
    h, w = mask.shape
    compressed = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    text = {"size": compressed["size"], "counts": compressed["counts"].decode("ascii")}
    assert np.array_equal(rle_to_mask(text, h, w), mask)
    counts = uncompressed_counts(mask)
    assert np.array_equal(rle_to_mask({"size": [h, w], "counts": counts}, h, w), mask)
    with pytest.raises(ValueError, match="size"):
        rle_to_mask(text, h + 1, w)
    with pytest.raises(ValueError, match="add up"):
        rle_to_mask({"counts": [3, 4]}, h, w)


def uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: run lengths in column-major order, starting with a run of zeros."""
    counts, current, run = [], False, 0
    for value in mask.flatten(order="F"):
        if bool(value) == current:
            run += 1
        else:
            counts.append(run)
            current, run = bool(value), 1
    counts.append(run)
    return counts


def test_polygon_area_sign_and_units():
    assert polygon_area([0, 0, 2, 0, 2, 3, 0, 3]) == pytest.approx(6.0)
    assert polygon_area([0, 0, 0, 3, 2, 3, 2, 0]) == pytest.approx(-6.0)
