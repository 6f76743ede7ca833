"""Class-per-folder images and multi-label CSV -> JSONL; convert()'s own errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_avml.data.convert import convert, from_csv, from_folder
from jupyter_avml.errors import ConfigError, DataError
from jupyter_avml.tasks import ImageTask
from tests.data.test_convert_coco import has, make_image, read_back, run_cli

MC = ImageTask.IMAGE_CLASSIFICATION
ML = ImageTask.IMAGE_CLASSIFICATION_MULTILABEL


def folder_fixture(root: Path) -> Path:
    make_image(root / "can" / "a.jpg")
    make_image(root / "can" / "nested" / "b.png")
    make_image(root / "milk bottle" / "c.bmp")
    make_image(root / "milk bottle" / "d.tiff")
    make_image(root / "milk bottle" / "e.webp")  # not one of the spec's formats
    (root / "can" / "notes.txt").write_text("hello")
    (root / "can" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "can" / ".DS_Store").write_bytes(b"\0")
    make_image(root / "stray.jpg")
    (root / "empty").mkdir()
    (root / ".hidden").mkdir()
    make_image(root / ".hidden" / "x.jpg")
    return root


def test_folder_classes_formats_and_drops(tmp_path):
    src = folder_fixture(tmp_path / "imgs")
    out = tmp_path / "out" / "mc.jsonl"
    report = convert("folder", src, out)
    assert report.task is MC and report.written == 4
    assert report.classes == ["can", "milk bottle"]
    rows = {Path(r["image_url"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert {k: v["label"] for k, v in rows.items()} == {"a.jpg": "can", "b.png": "can", "c.bmp": "milk bottle",
                                                         "d.tiff": "milk bottle"}
    assert rows["d.tiff"]["image_details"] == {"format": "tiff", "width": 64, "height": 48}
    d = report.dropped
    assert has(d, "milk bottle/e.webp", "not an image of the spec's formats", ".webp")
    assert has(d, "can/notes.txt", ".txt")
    assert has(d, "can/broken.jpg", "not an image file")
    assert has(d, "stray.jpg", "not in a class folder")
    assert len(d) == 4
    assert any("empty" in n and "without usable images" in n for n in report.notes)
    assert len(read_back(out, MC)) == 4
    with pytest.raises(ConfigError, match="format folder gives image-classification data, not image-object-detection"):
        convert("folder", src, out, task="image-object-detection")
    make_image(tmp_path / "flat" / "a.jpg")
    with pytest.raises(DataError, match=r"flat: no class sub-folders"):
        from_folder(tmp_path / "flat")
    with pytest.raises(DataError, match=r"absent: image folder not found"):
        from_folder(tmp_path / "absent")


def csv_images(root: Path) -> Path:
    for name in ("a.jpg", "b.png", "c.jpg", "train_0.jpg"):
        make_image(root / name)
    return root


def test_csv_without_header_relative_paths_and_drops(tmp_path):
    root = csv_images(tmp_path / "data")
    csv_file = root / "labels.csv"
    csv_file.write_text("a.jpg,cat dog\n"
                        "b.png,\n"                 # no class present
                        "c.jpg,dog dog\n"          # repeated class kept once
                        "missing.jpg,cat\n"
                        "a.jpg,cat\n"              # listed again
                        "train_0,cat,dog\n"        # three columns
                        "\n")
    out = tmp_path / "out" / "ml.jsonl"
    report = convert("csv", csv_file, out)
    assert report.task is ML and report.written == 3 and report.classes == ["cat", "dog"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(Path(r["image_url"]).name, r["label"]) for r in rows] == [
        ("a.jpg", ["cat", "dog"]), ("b.png", []), ("c.jpg", ["dog"])]
    assert all((out.parent / r["image_url"]).resolve().is_file() for r in rows)
    d = report.dropped
    assert has(d, "labels.csv:4", "image not found", "'missing.jpg'")
    assert has(d, "labels.csv:5", "listed again, first at line 1")
    assert has(d, "labels.csv:6", "expected 2 columns", "got 3")
    assert len(d) == 3 and report.notes == []  # no header taken
    assert len(read_back(out, ML)) == 3


def test_csv_with_header_images_dir_stems_and_one_hot(tmp_path):
    root = csv_images(tmp_path / "pics")
    csv_file = tmp_path / "meta" / "train.csv"
    csv_file.parent.mkdir()
    csv_file.write_text("image_name,tags\ntrain_0,haze primary\na.jpg,primary\n")
    records, dropped = from_csv(csv_file, images_dir=root)
    assert [(r.path.name, r.label) for r in records] == [("train_0.jpg", ("haze", "primary")),
                                                         ("a.jpg", ("primary",))]
    assert dropped == [] and records[0].source == str(csv_file) and records[0].line == 2
    result = from_csv(csv_file, images_dir=root)
    assert any("train.csv:1: taken as a header row" in n for n in result.notes)
    one_hot = tmp_path / "pics" / "onehot.csv"
    one_hot.write_text("file,cat,dog,bird\na.jpg,1,0,1\nb.png,0,0,0\nc.jpg,yes,maybe,0\n")
    records, dropped = from_csv(one_hot)
    assert [r.label for r in records] == [("cat", "bird"), ()]
    assert has(dropped, "onehot.csv:4", "column 'dog': expected 0 or 1", "'maybe'")
    assert from_csv(one_hot).classes == ["cat", "dog", "bird"]
    with pytest.raises(DataError, match=r"nope.csv: CSV file not found"):
        from_csv(tmp_path / "nope.csv")
    blank = tmp_path / "blank.csv"
    blank.write_text("\n\n")
    with pytest.raises(DataError, match=r"blank.csv: empty CSV file"):
        from_csv(blank)


def test_convert_errors_and_cli(tmp_path, capsys):
    root = csv_images(tmp_path / "data")
    csv_file = root / "l.csv"
    csv_file.write_text("a.jpg,x\n")
    with pytest.raises(ConfigError, match="unknown format 'xml'; choose one of coco, voc, yolo, folder, csv, jsonl"):
        convert("xml", csv_file, tmp_path / "o.jsonl")
    with pytest.raises(ConfigError, match=r"format csv does not take split \(it takes: images_dir\)"):
        convert("csv", csv_file, tmp_path / "o.jsonl", split="val")
    with pytest.raises(DataError, match="the output must be a file path"):
        convert("csv", csv_file, tmp_path)
    with pytest.raises(ConfigError, match="cannot be written as COCO"):
        convert("csv", csv_file, tmp_path / "o.json", output_format="coco")
    nothing = root / "nothing.csv"
    nothing.write_text("gone.jpg,x\n")
    with pytest.raises(DataError, match=r"nothing.csv: nothing could be converted \(1 item\(s\) dropped") as info:
        convert("csv", nothing, tmp_path / "n.jsonl")
    assert has(info.value.problems, "nothing.csv:1", "image not found")
    out = tmp_path / "cli.jsonl"
    assert run_cli(["convert", "csv", str(csv_file), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 image(s) for image-classification-multilabel" in printed and "dropped 0 item(s)" in printed
    folder = folder_fixture(tmp_path / "f")
    assert run_cli(["convert", "folder", str(folder), "-o", str(tmp_path / "f.jsonl")]) == 0
    printed = capsys.readouterr().out
    assert "stray.jpg: image directly in the dataset folder" in printed
