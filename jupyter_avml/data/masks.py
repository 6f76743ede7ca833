"""Binary masks <-> polygons, the bridge between pixel masks and the spec's polygon-only segmentation labels.

Units
-----
Masks are ``numpy`` arrays of shape ``(H, W)`` (row = y, column = x); any non-zero value is "inside".
Pixel polygons are flat lists ``[x1, y1, x2, y2, ...]`` in PIXEL-EDGE coordinates, COCO's convention: pixel
``(row=i, col=j)`` covers the square ``[j, j+1) x [i, i+1)``, so a mask that fills the whole image has the
outline ``[0, 0, W, 0, W, H, 0, H]``. Fraction polygons (``normalize_polygons``) divide x by W and y by H,
the convention of ``jupyter_avml.data.records``.

``mask_to_polygons`` traces outlines that rasterise back (``polygons_to_mask``, pycocotools' rasteriser) to
exactly the same pixels, holes aside: an instance is the union of its segments, so a hole cannot be written
and is filled. This is the form COCO annotation files and Mask R-CNN outputs are converted through.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from jupyter_avml.data.records import Polygon

DEFAULT_MIN_AREA = 4.0
"""Outlines enclosing fewer square pixels than this are specks and are dropped (a 2x2 blob is kept)."""


def mask_to_polygons(mask: np.ndarray, *, min_area: float = DEFAULT_MIN_AREA,
                     tolerance: float = 0.0) -> list[list[float]]:
    """Outer outlines of the regions of a binary mask, as pixel polygons.

    Parameters
    ----------
    mask : array ``(H, W)``, any dtype; non-zero pixels are inside.
    min_area : outlines enclosing less than this many square pixels are dropped (specks).
    tolerance : when > 0, each outline is simplified (Douglas-Peucker, ``cv2.approxPolyDP``) so that it
        moves by at most this many pixels; 0 keeps the exact outline.

    Returns
    -------
    list of flat ``[x1, y1, ..., xn, yn]`` lists in pixel-edge coordinates (see the module docstring), one per
    8-connected region (largest first), each with at least 3 points. Holes are filled. Empty when nothing
    is left.
    """
    import cv2

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    if not mask.any():
        return []
    # cv2 traces contours through the CENTRES of boundary pixels, which is half a pixel inside the true
    # outline. Tracing the (H+1, W+1) grid of pixel CORNERS instead gives vertices on pixel edges; doubling the
    # mask first keeps the diagonal shortcuts cv2 takes at concave corners off the pixel centres, so that
    # rasterising the polygon gives back exactly the original pixels.
    doubled = np.repeat(np.repeat(mask != 0, 2, axis=0), 2, axis=1)
    h2, w2 = doubled.shape
    corners = np.zeros((h2 + 1, w2 + 1), dtype=np.uint8)
    corners[:-1, :-1] |= doubled
    corners[1:, :-1] |= doubled
    corners[:-1, 1:] |= doubled
    corners[1:, 1:] |= doubled
    contours, _ = cv2.findContours(corners, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    found: list[tuple[float, list[float]]] = []
    for contour in contours:
        if tolerance > 0:
            contour = cv2.approxPolyDP(contour, 2.0 * tolerance, True)
        points = contour.reshape(-1, 2).astype(np.float64) / 2.0
        if len(points) < 3:
            continue
        area = abs(polygon_area(points.ravel()))
        if area < max(min_area, 1e-9):
            continue
        found.append((area, [float(v) for v in points.ravel()]))
    found.sort(key=lambda item: -item[0])
    return [polygon for _, polygon in found]


def polygons_to_mask(polygons_px: Iterable[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterise pixel polygons (union of the segments) into a boolean ``(height, width)`` mask.

    Segments with fewer than 3 points are ignored (pycocotools would read a 4-value list as a box).
    Coordinates are pixel-edge coordinates (see the module docstring); parts outside the image are cut off.
    """
    from pycocotools import mask as mask_utils

    segments = [[float(v) for v in seg] for seg in polygons_px if len(seg) >= 6 and len(seg) % 2 == 0]
    if not segments:
        return np.zeros((int(height), int(width)), dtype=bool)
    rles = mask_utils.frPyObjects(segments, int(height), int(width))
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def rle_to_mask(rle: dict, height: int, width: int) -> np.ndarray:
    """Decode a COCO RLE (``counts`` as a list: uncompressed; as a string: compressed) into a bool mask.

    Raises ``ValueError`` when the RLE does not describe a ``(height, width)`` mask.
    """
    from pycocotools import mask as mask_utils

    size = rle.get("size")
    if size is not None and [int(v) for v in size] != [int(height), int(width)]:
        raise ValueError(f"RLE size {list(size)} differs from the image size [{height}, {width}] (height, width)")
    counts = rle.get("counts")
    if isinstance(counts, list) and sum(int(c) for c in counts) != int(height) * int(width):
        raise ValueError(f"RLE counts add up to {sum(int(c) for c in counts)} pixels, the image has "
                         f"{int(height) * int(width)}")
    if isinstance(counts, list):
        encoded = mask_utils.frPyObjects({"counts": counts, "size": [int(height), int(width)]},
                                         int(height), int(width))
    elif isinstance(counts, (str, bytes)):
        encoded = {"counts": counts.encode("ascii") if isinstance(counts, str) else counts,
                   "size": [int(height), int(width)]}
    else:
        raise ValueError(f"RLE counts must be a list or a string, got {type(counts).__name__}")
    return mask_utils.decode(encoded).astype(bool)


def polygon_area(segment: Sequence[float]) -> float:
    """Signed shoelace area of one flat ``[x1, y1, ..., xn, yn]`` segment, in the units of its coordinates squared."""
    values = np.asarray(segment, dtype=np.float64)
    xs, ys = values[0::2], values[1::2]
    return float(0.5 * (np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))


def normalize_polygons(polys_px: Iterable[Sequence[float]], width: float, height: float) -> Polygon:
    """Pixel polygons -> fractions of the image (x / width, y / height), as ``records.Polygon``.

    No clipping: a caller that accepts points slightly outside the image clamps them itself.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    out = []
    for seg in polys_px:
        values = [float(v) for v in seg]
        values[0::2] = [x / width for x in values[0::2]]
        values[1::2] = [y / height for y in values[1::2]]
        out.append(tuple(values))
    return tuple(out)


def denormalize_polygons(polygon: Polygon | Iterable[Sequence[float]], width: float,
                         height: float) -> list[list[float]]:
    """Fraction polygons -> pixel polygons (x * width, y * height); the inverse of ``normalize_polygons``."""
    out = []
    for seg in polygon:
        values = [float(v) for v in seg]
        values[0::2] = [x * width for x in values[0::2]]
        values[1::2] = [y * height for y in values[1::2]]
        out.append(values)
    return out
