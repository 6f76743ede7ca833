"""JSONL records -> ultralytics' dataset layout: labels, links and conversions, the content-addressed cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from jupyter_avml.data import yolo_layout
from jupyter_avml.data.images import load_image
from jupyter_avml.data.records import ImageRecord, ObjectLabel
from jupyter_avml.data.yolo_layout import build_yolo_layout, label_lines, layout_digest

CLASSES = ["cat", "dog"]


def _png(path: Path, size=(40, 30), color=(200, 30, 30), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, color)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path)
    return path


def _record(path: Path, *objects: ObjectLabel, line: int = 1) -> ImageRecord:
    return ImageRecord(image_url=path.name, label=tuple(objects), path=path, source="train.jsonl", line=line)


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "src"
    for name in ("a.png", "b.png", "c.png"):
        _png(folder / name)
    return folder


def test_labels_are_class_index_and_normalised_centre_size_without_crowd_boxes(images):
    record = _record(images / "a.png",
                     ObjectLabel("dog", 0.1, 0.2, 0.5, 0.6),
                     ObjectLabel("cat", 0.25, 0.0, 0.75, 0.5, is_crowd=True),
                     ObjectLabel("cat", -0.1, 0.9, 0.3, 1.2))  # out of the image: clipped to [0, 1]
    assert label_lines(record, {"cat": 0, "dog": 1}) == ["1 0.300000 0.400000 0.400000 0.400000",
                                                         "0 0.150000 0.950000 0.300000 0.100000"]


def test_layout_has_data_yaml_images_and_labels_in_record_order(images, tmp_path):
    train = [_record(images / "a.png", ObjectLabel("dog", 0.1, 0.2, 0.5, 0.6)),
             _record(images / "b.png")]  # no objects: an empty label file (a background image)
    valid = [_record(images / "c.png", ObjectLabel("cat", 0.0, 0.0, 1.0, 1.0),
                     ObjectLabel("dog", 0.5, 0.5, 0.7, 0.9, is_crowd=True))]
    layout = build_yolo_layout(train, valid, CLASSES, tmp_path / "cache")

    assert layout.root == tmp_path / "cache" / "yolo" / layout.digest and not layout.reused
    data = yaml.safe_load(layout.data_yaml.read_text())
    assert data == {"names": {0: "cat", 1: "dog"}, "nc": 2, "train": "images/train", "val": "images/val"}
    assert sorted(p.name for p in layout.images_dir("train").iterdir()) == ["000000.png", "000001.png"]
    assert _read_lines(layout.labels_dir("train") / "000000.txt") == ["1 0.300000 0.400000 0.400000 0.400000"]
    assert _read_lines(layout.labels_dir("train") / "000001.txt") == []
    assert _read_lines(layout.labels_dir("val") / "000000.txt") == ["0 0.500000 0.500000 1.000000 1.000000"]
    linked = layout.images_dir("train") / "000000.png"
    assert os.path.samefile(linked, images / "a.png")  # a link, not a copy
    # nothing left behind but the finished folder
    assert [p.name for p in (tmp_path / "cache" / "yolo").iterdir()] == [layout.digest]


def test_ultralytics_reads_the_layout(images, tmp_path):
    from jupyter_avml.models.ultralytics_env import prepare_ultralytics

    prepare_ultralytics(tmp_path / "ws")
    from ultralytics.data.utils import img2label_paths, verify_image_label

    train = [_record(images / "a.png", ObjectLabel("dog", 0.1, 0.2, 0.5, 0.6), ObjectLabel("cat", 0.6, 0.1, 0.9, 0.4))]
    layout = build_yolo_layout(train, train, CLASSES, tmp_path / "cache")
    image = next(layout.images_dir("train").iterdir())
    label = img2label_paths([str(image)])[0]
    assert Path(label) == layout.labels_dir("train") / "000000.txt"
    im_file, labels, shape, *_, nm, nf, ne, nc, msg = verify_image_label(
        (str(image), label, "", False, len(CLASSES), 0, 0, False))
    assert (nm, nf, ne, nc) == (0, 1, 0, 0), msg
    assert shape == (30, 40)
    np.testing.assert_allclose(labels, [[1, 0.3, 0.4, 0.4, 0.4], [0, 0.75, 0.25, 0.3, 0.3]], atol=1e-6)


def test_the_cache_is_reused_for_the_same_data_and_changes_with_it(images, tmp_path):
    cache = tmp_path / "cache"
    train = [_record(images / "a.png", ObjectLabel("dog", 0.1, 0.2, 0.5, 0.6))]
    valid = [_record(images / "b.png", ObjectLabel("cat", 0.1, 0.2, 0.5, 0.6))]
    first = build_yolo_layout(train, valid, CLASSES, cache)
    label_file = first.labels_dir("train") / "000000.txt"
    written = label_file.stat().st_mtime_ns

    again = build_yolo_layout(list(train), list(valid), CLASSES, cache)
    assert again.reused and again.digest == first.digest and again.root == first.root
    assert label_file.stat().st_mtime_ns == written  # nothing rewritten

    moved_box = [_record(images / "a.png", ObjectLabel("dog", 0.1, 0.2, 0.5, 0.7))]
    other_classes = CLASSES + ["eel"]
    digests = {first.digest,
               build_yolo_layout(moved_box, valid, CLASSES, cache).digest,
               build_yolo_layout(train, valid, other_classes, cache).digest,
               build_yolo_layout(valid, train, CLASSES, cache).digest}  # splits swapped
    assert len(digests) == 4

    # A changed image file (same path) gives a new layout, whose link is the new content.
    _png(images / "a.png", size=(50, 30), color=(0, 0, 255))
    changed = build_yolo_layout(train, valid, CLASSES, cache)
    assert changed.digest not in digests and not changed.reused
    new_image = next(changed.images_dir("train").iterdir())
    assert np.asarray(Image.open(new_image))[0, 0].tolist() == [0, 0, 255]
    assert layout_digest({"train": train, "val": valid}, CLASSES) == changed.digest


def test_files_ultralytics_would_decode_differently_are_converted_with_our_decoder(tmp_path):
    src = tmp_path / "src"
    rgba = src / "rgba.png"
    src.mkdir()
    pixels = np.zeros((20, 30, 4), dtype=np.uint8)
    pixels[..., 0] = 255
    pixels[:, 15:, 3] = 255  # left half transparent: white for us, black for OpenCV
    Image.fromarray(pixels, "RGBA").save(rgba)
    rotated = src / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    Image.new("RGB", (40, 20), (10, 200, 10)).save(rotated, exif=exif)
    trailing = src / "trailing.jpg"
    Image.new("RGB", (32, 32), (90, 90, 200)).save(trailing, quality=95)
    trailing.write_bytes(trailing.read_bytes() + b"\x00" * 16)  # bytes after the end-of-image marker
    gif = src / "palette.gif"
    Image.new("RGB", (24, 24), (0, 0, 255)).save(gif)
    gray = _png(src / "gray.png", mode="L")
    jpeg = src / "plain.JPEG"
    Image.new("RGB", (24, 24), (0, 0, 255)).save(jpeg, format="JPEG")

    records = [_record(path) for path in (rgba, rotated, trailing, gif, gray, jpeg)]
    layout = build_yolo_layout(records, records[:1], CLASSES, tmp_path / "cache")
    placed = sorted(layout.images_dir("train").iterdir())
    assert [p.name for p in placed] == ["000000.png", "000001.png", "000002.png", "000003.png", "000004.png",
                                        "000005.jpg"]
    for path, source in zip(placed[:4], (rgba, rotated, trailing, gif), strict=True):
        assert not os.path.samefile(path, source)
        np.testing.assert_array_equal(np.asarray(Image.open(path)), np.asarray(load_image(source)))
    assert Image.open(placed[1]).size == (20, 40)  # upright
    assert os.path.samefile(placed[4], gray) and os.path.samefile(placed[5], jpeg)


def test_links_fall_back_to_symlinks_then_copies(images, tmp_path, monkeypatch):
    records = [_record(images / "a.png"), _record(images / "b.png")]

    def no_hard_links(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(yolo_layout.os, "link", no_hard_links)
    layout = build_yolo_layout(records[:1], records[:1], CLASSES, tmp_path / "one")
    placed = layout.images_dir("train") / "000000.png"
    assert placed.is_symlink() and os.path.samefile(placed, images / "a.png")

    def no_symlinks(*args):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(yolo_layout.os, "symlink", no_symlinks)
    layout = build_yolo_layout(records[1:], records[1:], CLASSES, tmp_path / "two")
    placed = layout.images_dir("train") / "000000.png"
    assert not placed.is_symlink() and placed.read_bytes() == (images / "b.png").read_bytes()


def test_a_concurrent_builder_of_the_same_digest_wins_cleanly(images, tmp_path, monkeypatch):
    records = [_record(images / "a.png", ObjectLabel("dog", 0.1, 0.2, 0.5, 0.6))]
    cache = tmp_path / "cache"
    original = yolo_layout._write_layout

    def racing(root, splits, class_names):
        counts = original(root, splits, class_names)
        # Another process finishes the same layout while we write ours.
        other = root.parent / layout_digest(splits, class_names)
        shutil.copytree(root, other, symlinks=True)
        return counts

    monkeypatch.setattr(yolo_layout, "_write_layout", racing)
    layout = build_yolo_layout(records, records, CLASSES, cache)
    assert layout.reused and layout.data_yaml.is_file()
    assert [p.name for p in (cache / "yolo").iterdir()] == [layout.digest]  # our temporary folder is gone


def test_a_failed_build_leaves_no_folder(images, tmp_path):
    from jupyter_avml.errors import DataError
    from jupyter_avml.models.ultralytics_env import prepare_ultralytics

    # Once ultralytics is imported, a non-image file must still give our DataError (not ultralytics' attempt to
    # install a HEIF plugin, see prepare_ultralytics).
    prepare_ultralytics(tmp_path / "ws")

    broken = images / "broken.png"
    broken.write_text("not an image")
    records = [_record(images / "a.png", ObjectLabel("dog", 0.1, 0.2, 0.5, 0.6))]
    with pytest.raises(DataError, match="broken.png"):
        build_yolo_layout(records, [_record(broken)], CLASSES, tmp_path / "cache")
    assert list((tmp_path / "cache" / "yolo").iterdir()) == []
    unknown_class = [_record(images / "b.png", ObjectLabel("eel", 0.1, 0.2, 0.5, 0.6), line=7)]
    with pytest.raises(DataError, match=r"train.jsonl:7: class 'eel' is not one of the run's classes \(cat, dog\)"):
        build_yolo_layout(records, unknown_class, CLASSES, tmp_path / "cache")
