"""The synthetic shapes dataset: valid JSONL for every task, tight geometry, determinism, balance."""

from __future__ import annotations

import json
import time
from collections import Counter

import numpy as np
import pytest
from PIL import Image, ImageDraw

from jupyter_avml.data.jsonl import parse_record
from jupyter_avml.data.shapes import SHAPES, make_shapes
from jupyter_avml.errors import ConfigError
from jupyter_avml.tasks import ImageTask

ALL_TASKS = list(ImageTask)


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _records(path, task):
    problems = []
    records = [parse_record(row, task, source=str(path), line=i, problems=problems)
               for i, row in enumerate(_rows(path), 1)]
    assert problems == [], [str(p) for p in problems]
    return records


@pytest.mark.parametrize("task", ALL_TASKS, ids=lambda t: t.value)
def test_every_task_writes_valid_jsonl_with_coordinates_in_range(tmp_path, task):
    path = make_shapes(tmp_path, task, n=15, size=40, seed=3)
    assert path.parent == tmp_path and path.suffix == ".jsonl"
    records = _records(path, task)
    assert len(records) == 15
    for record in records:
        image = tmp_path / record.image_url
        assert image.is_file()
        with Image.open(image) as im:
            assert im.size == (40, 40) and im.format == "PNG" and im.mode == "RGB"
        assert (record.width, record.height, record.format) == (40, 40, "png")
        assert set(record.class_names()) <= set(SHAPES)
        if task.has_boxes:
            assert record.label, "every detection/segmentation image has an object"
            for obj in record.label:
                assert 0.0 <= obj.top_x < obj.bottom_x <= 1.0
                assert 0.0 <= obj.top_y < obj.bottom_y <= 1.0
                for segment in obj.polygon:
                    assert all(0.0 <= v <= 1.0 for v in segment)
        if task is ImageTask.IMAGE_INSTANCE_SEGMENTATION:
            assert all(obj.polygon for obj in record.label)
    if task is ImageTask.IMAGE_INSTANCE_SEGMENTATION:
        sizes = Counter(len(obj.polygon[0]) // 2 for r in records for obj in r.label)
        assert set(sizes) <= {3, 4, 24}  # triangle, square, 24-gon circle
        squares = [obj.polygon[0] for r in records for obj in r.label if obj.label == "square"]
        assert any(abs(q[1] - q[3]) > 1e-3 for q in squares), "segmentation squares are (sometimes) rotated"


def _shape_mask(pixels, box_px):
    """Pixels of the colour at the box centre (inside every shape; shapes are solid, far from the background)."""
    x0, y0, x1, y1 = box_px
    colour = pixels[(y0 + y1 - 1) // 2, (x0 + x1 - 1) // 2]
    return np.all(pixels == colour, axis=-1)


def test_detection_boxes_are_tight_around_the_drawn_pixels(tmp_path):
    size = 64
    path = make_shapes(tmp_path, "image-object-detection", n=8, size=size, seed=1)
    checked = 0
    for row in _rows(path):
        pixels = np.asarray(Image.open(tmp_path / row["image_url"]).convert("RGB"))
        for box in row["label"]:
            x0, y0 = box["topX"] * size, box["topY"] * size
            x1, y1 = box["bottomX"] * size, box["bottomY"] * size
            # Boxes are exact pixel edges.
            assert all(abs(v - round(v)) < 1e-9 for v in (x0, y0, x1, y1))
            x0, y0, x1, y1 = (int(round(v)) for v in (x0, y0, x1, y1))
            mask = _shape_mask(pixels, (x0, y0, x1, y1))
            inside = mask[y0:y1, x0:x1]
            # Tight: the shape touches each side of its box and fills a good part of it.
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            assert inside.mean() > 0.3
            if box["label"] == "square":  # axis-aligned outside segmentation: the square fills its box
                assert inside.all()
            # Nothing of that colour in the one-pixel ring just outside the box (objects never touch).
            ring = np.zeros_like(mask)
            ring[max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1] = True
            ring[y0:y1, x0:x1] = False
            assert not (mask & ring).any()
            checked += 1
    assert checked >= 8


def test_segmentation_polygons_match_the_drawn_pixels(tmp_path):
    size = 96
    path = make_shapes(tmp_path, "image-instance-segmentation", n=6, size=size, seed=2)
    for row in _rows(path):
        pixels = np.asarray(Image.open(tmp_path / row["image_url"]).convert("RGB"))
        for instance in row["label"]:
            flat = instance["polygon"][0]
            points = [(flat[i] * size, flat[i + 1] * size) for i in range(0, len(flat), 2)]
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            box = (int(min(xs)), int(min(ys)), int(np.ceil(max(xs))), int(np.ceil(max(ys))))
            drawn = _shape_mask(pixels, box)
            # Keep only the drawn component near this polygon (another object may share its colour).
            near = np.zeros_like(drawn)
            near[max(box[1] - 2, 0):box[3] + 2, max(box[0] - 2, 0):box[2] + 2] = True
            drawn &= near
            # Independent reference: PIL fills the polygon at 8x, a pixel is in when half of it is covered.
            scale = 8
            reference = Image.new("L", (size * scale, size * scale))
            ImageDraw.Draw(reference).polygon([(x * scale, y * scale) for x, y in points], fill=1)
            coverage = np.asarray(reference, dtype=np.float64).reshape(size, scale, size, scale).mean(axis=(1, 3))
            expected = coverage >= 0.5
            iou = (drawn & expected).sum() / (drawn | expected).sum()
            assert iou > 0.9, (row["image_url"], instance["label"], iou)
            # Painted pixels stay within a pixel of the polygon's extent.
            rows, cols = np.nonzero(drawn)
            assert cols.min() >= min(xs) - 1 and cols.max() + 1 <= max(xs) + 1
            assert rows.min() >= min(ys) - 1 and rows.max() + 1 <= max(ys) + 1


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    a = make_shapes(tmp_path / "a", "image-object-detection", n=6, size=32, seed=7)
    b = make_shapes(tmp_path / "b", "image-object-detection", n=6, size=32, seed=7)
    c = make_shapes(tmp_path / "c", "image-object-detection", n=6, size=32, seed=8)
    assert a.read_bytes() == b.read_bytes()
    names = sorted(p.name for p in (tmp_path / "a" / "images").iterdir())
    assert len(names) == 6
    for name in names:
        assert (tmp_path / "a" / "images" / name).read_bytes() == (tmp_path / "b" / "images" / name).read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert any((tmp_path / "a" / "images" / n).read_bytes() != (tmp_path / "c" / "images" / n).read_bytes()
               for n in names)


def test_multiclass_classes_are_balanced_and_shuffled(tmp_path):
    path = make_shapes(tmp_path, "image-classification", n=31, size=32)
    labels = [row["label"] for row in _rows(path)]
    counts = Counter(labels)
    assert sorted(counts.values()) == [10, 10, 11]
    assert labels[:3] != list(SHAPES) or labels[3:6] != list(SHAPES)  # not left in round-robin order


def test_class_subset_and_multi_object_balance(tmp_path):
    path = make_shapes(tmp_path, "image-object-detection", n=40, size=48, classes=("triangle", "circle"))
    counts = Counter(box["label"] for row in _rows(path) for box in row["label"])
    assert set(counts) == {"triangle", "circle"}
    assert max(counts.values()) <= 1.2 * min(counts.values())
    per_image = Counter(len(row["label"]) for row in _rows(path))
    assert set(per_image) <= {1, 2, 3} and len(per_image) >= 2


def test_multilabel_has_several_labels_per_image_and_no_duplicates(tmp_path):
    path = make_shapes(tmp_path, "image-classification-multilabel", n=60, size=48, seed=5)
    labels = [row["label"] for row in _rows(path)]
    assert all(1 <= len(label) == len(set(label)) <= 3 for label in labels)
    assert sum(len(label) >= 2 for label in labels) >= 20
    counts = Counter(name for label in labels for name in label)
    assert set(counts) == set(SHAPES) and max(counts.values()) <= 1.5 * min(counts.values())
    # Label order follows the classes argument.
    order = {name: i for i, name in enumerate(SHAPES)}
    assert all([order[n] for n in label] == sorted(order[n] for n in label) for label in labels)


def test_non_square_size_and_other_formats(tmp_path):
    path = make_shapes(tmp_path, "image-object-detection", n=4, size=(64, 40), image_format="jpg")
    rows = _rows(path)
    assert all(row["image_url"].endswith(".jpg") for row in rows)
    assert all(row["image_details"] == {"format": "jpg", "width": 64, "height": 40} for row in rows)
    with Image.open(tmp_path / rows[0]["image_url"]) as im:
        assert im.size == (64, 40) and im.format == "JPEG"
    for row in rows:
        for box in row["label"]:
            assert abs(box["topX"] * 64 - round(box["topX"] * 64)) < 1e-9
            assert abs(box["topY"] * 40 - round(box["topY"] * 40)) < 1e-9


def test_smallest_size_works(tmp_path):
    path = make_shapes(tmp_path, "image-instance-segmentation", n=10, size=16)
    assert len(_records(path, ImageTask.IMAGE_INSTANCE_SEGMENTATION)) == 10


@pytest.mark.parametrize("kwargs, field", [
    ({"size": 15}, "size"), ({"n": 0}, "n"), ({"classes": ("circle", "hexagon")}, "classes"),
    ({"classes": ()}, "classes"), ({"max_objects": 0}, "max_objects"), ({"image_format": "gif"}, "image_format"),
])
def test_bad_arguments_name_the_field_and_value(tmp_path, kwargs, field):
    with pytest.raises(ConfigError) as info:
        make_shapes(tmp_path, "image-classification", **kwargs)
    assert info.value.field == field
    assert field in str(info.value)
    assert not (tmp_path / "multiclass.jsonl").exists()


def test_200_images_at_128px_are_fast(tmp_path):
    start = time.perf_counter()
    make_shapes(tmp_path, "image-instance-segmentation", n=200, size=128)
    assert time.perf_counter() - start < 5.0
