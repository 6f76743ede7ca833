"""A synthetic "shapes" dataset for every task: circles, squares and triangles on varied backgrounds.

It is small, fast to make (no download) and learnable by a small CNN at 32-64 px in a few CPU epochs,
so tests, the demo and first-time users have real data for each of the four tasks.

What is drawn
-------------
* Background: one of a solid colour, a linear gradient between two nearby colours in a random
  direction, or a colour with uniform per-pixel noise.
* Shapes: ``circle`` (a regular 24-gon), ``square`` and ``triangle`` (equilateral, pointing up, rotated by
  up to 20 degrees either way), each filled with one solid colour chosen far from the background (RGB
  distance at least ``MIN_CONTRAST`` plus the noise amplitude), so that every shape is high-contrast
  whatever the background. Squares are axis-aligned, except for instance segmentation, where they are
  rotated by up to 25 degrees either way (the polygons show it).
* Multi-class: exactly one large shape per image (circle diameter 40-60 % of the shorter side, square side
  34-51 %, triangle side 47-70 %) kept 10 % of the side away from the borders; the classes are assigned
  round-robin and shuffled, so each class has ``n // len(classes)`` or one more images.
* Multi-label, detection, segmentation: 1 to ``max_objects`` shapes per image (circle diameter 20-34 % of
  the shorter side, square side 17-29 %, triangle side 23-40 %). Multi-label images hold distinct classes,
  and sometimes (15 %) one class twice; the label is the set of classes present (in the order of
  ``classes``). Detection and segmentation draw their classes from a round-robin stream of shuffled class
  cycles, so classes are balanced over the dataset.

Why these choices: the data must be learnable from a few hundred images at 32-64 px in a few CPU epochs,
under the training augmentation (random resized crops, flips, colour jitter). Large, centred shapes
survive random crops; fixed orientations spare a small model from learning rotation invariance (measured
with a 3-layer CNN, 160 images at 48 px, 12 epochs with random resized crops: accuracy 0.91-0.97 with
these settings, 0.38-0.41 with the shapes 24-44 % of the side, anywhere, squares and triangles rotated).

Overlap rule
------------
Objects never overlap: each object is placed at a random position whose bounding box, grown by a gap of
``max(2 px, 3 % of the side)``, must not meet the grown box of any object already placed (50 tries, then
the object is shrunk by 15 % and tried again, at most 6 times; an object that still does not fit is left
out, and the label only lists what was drawn). So every pixel of an object is visible, its polygon is
exactly its drawn region, and its box is tight.

Geometry
--------
Shapes are convex polygons in pixel-edge coordinates (the image spans ``[0, width] x [0, height]``;
pixel ``(c, r)`` covers ``[c, c+1) x [r, r+1)``). A pixel is painted when its centre is inside the
polygon. Detection boxes are the exact extent of the painted pixels
(``topX = min column / width``, ``bottomX = (max column + 1) / width``); segmentation polygons are the
polygon's vertices as fractions (rounded to 6 decimals), whose extent is within one pixel of the
painted pixels.

Determinism
-----------
Each image is drawn from its own generator seeded by ``(seed, index)``, and PNG encoding has no
timestamps: the same arguments give byte-identical files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from jupyter_avml.data.records import ImageRecord, ObjectLabel
from jupyter_avml.data.writer import write_jsonl
from jupyter_avml.errors import ConfigError
from jupyter_avml.tasks import ImageTask

SHAPES = ("circle", "square", "triangle")
MIN_SIZE = 16
MIN_CONTRAST = 150.0
CIRCLE_VERTICES = 24
# Squares are rotated only where the label can show it (polygons); elsewhere rotation only makes the
# classes harder to tell apart for a small model trained from scratch on a few hundred images.
SQUARE_ROTATION_DEG = {ImageTask.IMAGE_INSTANCE_SEGMENTATION: 25.0}
DUPLICATE_CLASS_PROBABILITY = 0.15

# Shape "radius" r as a fraction of the shorter image side. Circle radius r, square half-side 0.85 r,
# triangle circumradius 1.35 r: the three look about as big as each other.
SINGLE_RADIUS = (0.20, 0.30)
MULTI_RADIUS = (0.10, 0.17)
# Free border kept around the shapes, as a fraction of the shorter side (random crops keep more of them).
SINGLE_MARGIN = 0.10
MULTI_MARGIN = 0.0
MAX_TRIANGLE_ROTATION_DEG = 20.0
SQUARE_HALF_SIDE = 0.85
TRIANGLE_CIRCUMRADIUS = 1.35
PLACEMENT_TRIES = 50
SHRINK_STEPS = 6
SHRINK_FACTOR = 0.85

JSONL_NAMES = {
    ImageTask.IMAGE_CLASSIFICATION: "multiclass.jsonl",
    ImageTask.IMAGE_CLASSIFICATION_MULTILABEL: "multilabel.jsonl",
    ImageTask.IMAGE_OBJECT_DETECTION: "detection.jsonl",
    ImageTask.IMAGE_INSTANCE_SEGMENTATION: "segmentation.jsonl",
}

# Format name (as in image_details) -> (file suffix, PIL format, save options).
IMAGE_FORMATS = {
    "png": (".png", "PNG", {"compress_level": 6}),
    "jpg": (".jpg", "JPEG", {"quality": 95}),
    "jpeg": (".jpeg", "JPEG", {"quality": 95}),
    "bmp": (".bmp", "BMP", {}),
    "tif": (".tif", "TIFF", {}),
    "tiff": (".tiff", "TIFF", {}),
}


# Fixed colours for color_by_class: saturated and far from the grey backgrounds used with them.
CLASS_COLORS = {"circle": (225, 35, 35), "square": (30, 190, 60), "triangle": (40, 70, 235)}


@dataclass(frozen=True)
class DrawnShape:
    """One shape as drawn: its class, polygon (pixel-edge coordinates) and painted-pixel box.

    ``box`` is ``(xmin, ymin, xmax, ymax)`` in pixels with ``xmax``/``ymax`` exclusive.
    """

    label: str
    vertices: np.ndarray  # (k, 2) float64, x then y
    box: tuple[int, int, int, int]
    color: tuple[int, int, int]


def make_shapes(out_dir: str | os.PathLike, task: ImageTask | str, *, n: int = 200,
                size: int | tuple[int, int] = 128, seed: int = 0,
                classes: Sequence[str] = SHAPES, max_objects: int = 3,
                image_format: str = "png", color_by_class: bool = False) -> Path:
    """Write a synthetic shapes dataset for ``task``; returns the JSONL path.

    Parameters
    ----------
    out_dir : folder to write into: images go to ``out_dir/images/shape_NNNNN.<ext>`` and the labels to
        ``out_dir/<multiclass|multilabel|detection|segmentation>.jsonl`` (image URLs relative to it).
        Files of the same names are overwritten; other files are left alone.
    task : one of the four tasks (``ImageTask`` or its config value).
    n : number of images (>= 1).
    size : image side in pixels (>= 16), or ``(width, height)``.
    seed : the same seed and arguments give byte-identical files.
    classes : a non-empty subset of ``("circle", "square", "triangle")``, in the order wanted.
    max_objects : most shapes per image for multi-label, detection and segmentation (>= 1).
    image_format : ``png`` (default), ``jpg``/``jpeg``, ``bmp``, ``tif``/``tiff``. Lossy JPEG blurs the
        edges a little; boxes and polygons still describe the shapes as drawn before compression.
    color_by_class : give every class its own colour (``CLASS_COLORS``) on grey backgrounds. A colour cue
        makes the set learnable in a few epochs by a network trained from scratch on tiny images: it is the
        variant the CPU training tests and the demo use. Without it, only the outline tells the classes apart.

    Returns
    -------
    Path of the JSONL file. Every record has ``image_details`` (format, width, height).
    """
    task = ImageTask.parse(task)
    width, height = _check_size(size)
    n = _check_int("n", n, minimum=1)
    max_objects = _check_int("max_objects", max_objects, minimum=1)
    seed = _check_int("seed", seed, minimum=0)
    classes = _check_classes(classes)
    fmt = str(image_format).lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise ConfigError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}",
                          field="image_format", value=image_format)
    suffix, pil_format, save_options = IMAGE_FORMATS[fmt]

    out_dir = Path(out_dir)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    jsonl_path = out_dir / JSONL_NAMES[task]

    plan = _plan_labels(task, n, classes, max_objects, seed)
    digits = max(5, len(str(n - 1)))
    records = []
    for index, wanted in enumerate(plan):
        rng = np.random.default_rng([seed, index])
        pixels, shapes = render_image(rng, width, height, wanted, single=task is ImageTask.IMAGE_CLASSIFICATION,
                                      square_rotation_deg=SQUARE_ROTATION_DEG.get(task, 0.0),
                                      color_by_class=color_by_class)
        name = f"shape_{index:0{digits}d}{suffix}"
        Image.fromarray(pixels, "RGB").save(image_dir / name, format=pil_format, **save_options)
        records.append(ImageRecord(image_url=f"images/{name}", label=_label(task, shapes, classes, width, height),
                                   width=width, height=height, format=fmt))
    return write_jsonl(records, jsonl_path, task)


def render_image(rng: np.random.Generator, width: int, height: int, wanted: Sequence[str],
                 single: bool = False, square_rotation_deg: float = 0.0,
                 color_by_class: bool = False) -> tuple[np.ndarray, list[DrawnShape]]:
    """Draw one image with the shapes ``wanted`` (in drawing order).

    ``single``: one large shape (the multi-class sizes and margin); ``square_rotation_deg``: squares are
    rotated by up to this angle either way.

    Returns the ``(height, width, 3)`` uint8 pixels and the shapes actually placed (a shape that found
    no free room is left out, see the module docstring).
    """
    background, bg_low, bg_high, noise = _background(rng, width, height, grey=color_by_class)
    pixels = background
    side = min(width, height)
    lo, hi = SINGLE_RADIUS if single else MULTI_RADIUS
    margin = max(1.0, (SINGLE_MARGIN if single else MULTI_MARGIN) * side)
    r_min = max(lo * side, 2.0)
    r_max = max(hi * side, r_min)
    gap = max(2.0, 0.03 * side)
    taken: list[tuple[float, float, float, float]] = []
    shapes: list[DrawnShape] = []
    for label in wanted:
        radius = float(rng.uniform(r_min, r_max))
        angle = _angle(rng, label, square_rotation_deg)
        color = CLASS_COLORS[label] if color_by_class else _shape_color(rng, bg_low, bg_high, noise)
        placed = None
        for _ in range(SHRINK_STEPS + 1):
            template = _polygon(label, radius, angle)
            placed = _place(rng, template, width, height, taken, gap, margin)
            if placed is not None:
                break
            radius *= SHRINK_FACTOR
        if placed is None:
            continue
        vertices = placed
        mask, box = _rasterize(vertices, width, height)
        if box is None:  # too small to cover a pixel centre (cannot happen for r >= 2 px; kept safe)
            continue
        x0, y0, x1, y1 = box
        window = pixels[y0:y1, x0:x1]
        window[mask] = color
        taken.append((vertices[:, 0].min() - gap, vertices[:, 1].min() - gap,
                      vertices[:, 0].max() + gap, vertices[:, 1].max() + gap))
        shapes.append(DrawnShape(label, vertices, box, color))
    return pixels, shapes


# --------------------------------------------------------------------------------------------- planning

def _plan_labels(task: ImageTask, n: int, classes: tuple[str, ...], max_objects: int,
                 seed: int) -> list[list[str]]:
    """The shapes wanted in each image, decided up front from one generator (balanced classes)."""
    rng = np.random.default_rng([seed, 0x5EED])
    count = len(classes)
    if task is ImageTask.IMAGE_CLASSIFICATION:
        labels = [classes[i % count] for i in range(n)]
        order = rng.permutation(n)
        return [[labels[i]] for i in order]
    plan = []
    if task is ImageTask.IMAGE_CLASSIFICATION_MULTILABEL:
        for _ in range(n):
            k = int(rng.integers(1, max_objects + 1))
            distinct = min(k, count)
            chosen = [classes[i] for i in rng.choice(count, size=distinct, replace=False)]
            # Occasionally the same class twice: the label is still the set, which the model must learn.
            if len(chosen) < max_objects and rng.random() < DUPLICATE_CLASS_PROBABILITY:
                chosen.append(chosen[int(rng.integers(len(chosen)))])
            plan.append(chosen)
        return plan
    stream: list[str] = []
    for _ in range(n):
        k = int(rng.integers(1, max_objects + 1))
        wanted = []
        for _ in range(k):
            if not stream:
                stream = [classes[i] for i in rng.permutation(count)]
            wanted.append(stream.pop())
        plan.append(wanted)
    return plan


def _label(task: ImageTask, shapes: list[DrawnShape], classes: tuple[str, ...], width: int, height: int):
    if task is ImageTask.IMAGE_CLASSIFICATION:
        return shapes[0].label
    if task is ImageTask.IMAGE_CLASSIFICATION_MULTILABEL:
        present = {shape.label for shape in shapes}
        return tuple(name for name in classes if name in present)
    objects = []
    for shape in shapes:
        if task is ImageTask.IMAGE_OBJECT_DETECTION:
            x0, y0, x1, y1 = shape.box
            objects.append(ObjectLabel(shape.label, x0 / width, y0 / height, x1 / width, y1 / height))
        else:
            flat = []
            for x, y in shape.vertices:
                flat.append(round(min(max(x / width, 0.0), 1.0), 6))
                flat.append(round(min(max(y / height, 0.0), 1.0), 6))
            objects.append(ObjectLabel.from_polygon(shape.label, (tuple(flat),)))
    return tuple(objects)


# --------------------------------------------------------------------------------------------- drawing

def _background(rng: np.random.Generator, width: int, height: int, grey: bool = False):
    """Pixels of a background and the colours it spans: ``(pixels, low colour, high colour, noise)``.

    Every background pixel lies within ``noise`` (per channel) of the segment between the two colours.
    ``grey``: a grey level in [90, 170] instead of any colour (far from every ``CLASS_COLORS`` entry).
    """
    kind = int(rng.integers(3))
    low = np.full(3, rng.uniform(90, 170)) if grey else rng.uniform(0, 255, 3)
    if kind == 0:  # solid
        pixels = np.broadcast_to(low, (height, width, 3))
        return np.ascontiguousarray(np.round(pixels).astype(np.uint8)), low, low, 0.0
    if kind == 1:  # linear gradient between two nearby colours, in a random direction
        delta = rng.uniform(-70, 70, 3)
        if grey:
            delta = np.full(3, delta[0] / 2)
        high = np.clip(low + delta, 0, 255)
        theta = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:height, 0:width]
        t = (xs + 0.5) * math.cos(theta) + (ys + 0.5) * math.sin(theta)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
        pixels = low + t[..., None] * (high - low)
        return np.round(pixels).astype(np.uint8), low, high, 0.0
    noise = float(rng.uniform(8, 24))  # uniform noise around one colour
    pixels = low + rng.uniform(-noise, noise, (height, width, 3))
    return np.round(np.clip(pixels, 0, 255)).astype(np.uint8), low, low, noise


def _shape_color(rng: np.random.Generator, low: np.ndarray, high: np.ndarray, noise: float) -> tuple[int, int, int]:
    """A random colour at least MIN_CONTRAST (+ the noise) away from every background colour."""
    candidates = np.vstack([rng.uniform(0, 255, (64, 3)), _CORNERS])
    distance = _distance_to_segment(candidates, low, high)
    far = np.flatnonzero(distance >= MIN_CONTRAST + noise * math.sqrt(3))
    pick = int(far[0]) if far.size else int(np.argmax(distance))  # far[0]: the first random one that fits
    return tuple(int(v) for v in np.round(candidates[pick]))


_CORNERS = np.array([[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)], dtype=np.float64)


def _distance_to_segment(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    denom = float(ab @ ab)
    t = np.zeros(len(points)) if denom == 0 else np.clip((points - a) @ ab / denom, 0.0, 1.0)
    nearest = a + t[:, None] * ab
    return np.linalg.norm(points - nearest, axis=1)


def _angle(rng: np.random.Generator, label: str, square_rotation_deg: float) -> float:
    if label == "square":
        return math.radians(float(rng.uniform(-square_rotation_deg, square_rotation_deg)))
    if label == "triangle":
        return math.radians(float(rng.uniform(-MAX_TRIANGLE_ROTATION_DEG, MAX_TRIANGLE_ROTATION_DEG)))
    return 0.0


def _polygon(label: str, radius: float, angle: float) -> np.ndarray:
    """Vertices ``(k, 2)`` centred on the origin, counter-clockwise in image coordinates."""
    if label == "circle":
        t = np.arange(CIRCLE_VERTICES) * (2 * math.pi / CIRCLE_VERTICES)
        points = np.stack([np.cos(t), np.sin(t)], axis=1) * radius
    elif label == "square":
        h = SQUARE_HALF_SIDE * radius
        points = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
    else:  # triangle
        t = -math.pi / 2 + np.arange(3) * (2 * math.pi / 3)
        points = np.stack([np.cos(t), np.sin(t)], axis=1) * (TRIANGLE_CIRCUMRADIUS * radius)
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _place(rng: np.random.Generator, template: np.ndarray, width: int, height: int,
           taken: list[tuple[float, float, float, float]], gap: float, margin: float) -> np.ndarray | None:
    """Translate ``template`` to a random free position inside the image, or None after the tries."""
    x_lo, y_lo = template.min(axis=0)
    x_hi, y_hi = template.max(axis=0)
    cx_range = (margin - x_lo, width - margin - x_hi)
    cy_range = (margin - y_lo, height - margin - y_hi)
    if cx_range[0] > cx_range[1] or cy_range[0] > cy_range[1]:
        return None
    for _ in range(PLACEMENT_TRIES):
        cx = float(rng.uniform(*cx_range))
        cy = float(rng.uniform(*cy_range))
        box = (cx + x_lo - gap, cy + y_lo - gap, cx + x_hi + gap, cy + y_hi + gap)
        if all(box[2] <= t[0] or t[2] <= box[0] or box[3] <= t[1] or t[3] <= box[1] for t in taken):
            return template + np.array([cx, cy])
    return None


def _rasterize(vertices: np.ndarray, width: int, height: int):
    """The pixels whose centres are inside the convex polygon, as ``(mask, box)`` over the box window.

    ``box = (x0, y0, x1, y1)`` is the painted extent (exclusive ends); ``(None, None)`` when nothing
    is painted.
    """
    x0 = max(int(math.floor(vertices[:, 0].min())), 0)
    y0 = max(int(math.floor(vertices[:, 1].min())), 0)
    x1 = min(int(math.ceil(vertices[:, 0].max())), width)
    y1 = min(int(math.ceil(vertices[:, 1].max())), height)
    if x1 <= x0 or y1 <= y0:
        return None, None
    px = np.arange(x0, x1) + 0.5
    py = np.arange(y0, y1) + 0.5
    start = vertices
    end = np.roll(vertices, -1, axis=0)
    # Orientation-free convex test: the centre is on the same side of every edge as the polygon.
    area2 = float(np.sum(start[:, 0] * end[:, 1] - end[:, 0] * start[:, 1]))
    sign = 1.0 if area2 >= 0 else -1.0
    inside = np.ones((len(py), len(px)), dtype=bool)
    for (ax, ay), (bx, by) in zip(start, end, strict=True):
        cross = (bx - ax) * (py[:, None] - ay) - (by - ay) * (px[None, :] - ax)
        inside &= sign * cross >= 0
    rows = np.flatnonzero(inside.any(axis=1))
    cols = np.flatnonzero(inside.any(axis=0))
    if rows.size == 0:
        return None, None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return inside[r0:r1, c0:c1], (x0 + int(c0), y0 + int(r0), x0 + int(c1), y0 + int(r1))


# --------------------------------------------------------------------------------------------- checks

def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}", field=name, value=value)
    return int(value)


def _check_size(size) -> tuple[int, int]:
    if isinstance(size, (tuple, list)) and len(size) == 2:
        width, height = size
    else:
        width = height = size
    for value in (width, height):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < MIN_SIZE:
            raise ConfigError(f"size must be an integer >= {MIN_SIZE} (or (width, height)), got {size!r}",
                              field="size", value=size)
    return int(width), int(height)


def _check_classes(classes) -> tuple[str, ...]:
    if isinstance(classes, str):
        classes = [part.strip() for part in classes.split(",") if part.strip()]
    classes = tuple(classes)
    unknown = [c for c in classes if c not in SHAPES]
    if not classes or unknown or len(set(classes)) != len(classes):
        problem = (f"unknown {unknown!r}" if unknown else "empty" if not classes else "has duplicates")
        raise ConfigError(f"classes must be distinct names among {', '.join(SHAPES)}; {problem} "
                          f"(got {list(classes)!r})", field="classes", value=list(classes))
    return classes
