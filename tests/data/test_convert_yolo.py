"""YOLO -> JSONL: data.yaml (names list/dict, folders/txt lists), dataset folders, box and segment lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_avml.data.convert import convert, from_yolo
from jupyter_avml.data.convert.yolo import label_path
from jupyter_avml.errors import ConfigError, DataError
from jupyter_avml.tasks import ImageTask
from tests.data.test_convert_coco import has, make_image, read_back, run_cli

DET = ImageTask.IMAGE_OBJECT_DETECTION
SEG = ImageTask.IMAGE_INSTANCE_SEGMENTATION


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def detect_dataset(root: Path, names_yaml: str = "names: [cat, dog]") -> Path:
    for split in ("train", "val"):
        make_image(root / "images" / split / f"{split}1.jpg")
    make_image(root / "images" / "train" / "background.jpg")  # no label file
    make_image(root / "images" / "train" / "bad.png")
    make_image(root / "images" / "train" / "allbad.png")
    write(root / "labels" / "train" / "train1.txt", "0 0.5 0.5 0.5 0.25\n1 0.25 0.75 0.1 0.2\n\n")
    write(root / "labels" / "train" / "bad.txt",
          "0 0.5 0.5 0.2 0.2\n"
          "cat 0.5 0.5 0.2 0.2\n"       # 2: not numbers
          "0 0.5 0.5 0.2\n"             # 3: 4 values
          "7 0.5 0.5 0.2 0.2\n"         # 4: unknown class
          "0 1.5 0.5 0.4 0.4\n"         # 5: outside
          "1.5 0.5 0.5 0.2 0.2\n"       # 6: class not an integer
          "1 0.5 0.5 0 0.2\n")          # 7: zero width
    write(root / "labels" / "train" / "allbad.txt", "0 3 3 0.1 0.1\n")
    write(root / "labels" / "val" / "val1.txt", "1 0.5 0.5 1.0 1.0\n")
    return write(root / "data.yaml", f"path: .\ntrain: images/train\nval: images/val\n{names_yaml}\n")


def test_yolo_detect_with_data_yaml_and_drops(tmp_path):
    data_yaml = detect_dataset(tmp_path / "ds")
    out = tmp_path / "out" / "train.jsonl"
    report = convert("yolo", data_yaml, out)
    assert report.task is DET and report.written == 3 and report.objects == 3
    rows = {Path(r["image_url"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"train1.jpg", "background.jpg", "bad.png"}
    cat, dog = rows["train1.jpg"]["label"]
    assert (cat["label"], dog["label"]) == ("cat", "dog")
    assert (cat["topX"], cat["topY"], cat["bottomX"], cat["bottomY"]) == (0.25, 0.375, 0.75, 0.625)
    assert dog["topX"] == pytest.approx(0.2) and dog["bottomY"] == pytest.approx(0.85)
    assert rows["background.jpg"]["label"] == []
    assert rows["train1.jpg"]["image_details"] == {"format": "jpg", "width": 64, "height": 48}
    d = report.dropped
    assert has(d, "labels/train/bad.txt:2", "not a line of numbers", "'cat 0.5")
    assert has(d, "labels/train/bad.txt:3", "expected 5 values", "got 4")
    assert has(d, "labels/train/bad.txt:4", "class id 7 is not in names")
    assert has(d, "labels/train/bad.txt:5", "outside the image 64x48")
    assert has(d, "labels/train/bad.txt:6", "class id must be a non-negative integer", "'1.5'")
    assert has(d, "labels/train/bad.txt:7", "zero width")
    assert has(d, "labels/train/allbad.txt:1", "outside the image")
    assert has(d, "labels/train/allbad.txt", "allbad.png is dropped")
    assert len(d) == 8
    assert len(read_back(out, DET)) == 3
    val = tmp_path / "val.jsonl"
    report = convert("yolo", data_yaml, val, split="val")
    assert report.written == 1 and report.classes == ["dog"]
    assert json.loads(val.read_text())["label"][0]["bottomX"] == 1.0


def test_yolo_names_dict_txt_lists_and_segments(tmp_path):
    root = tmp_path / "seg"
    make_image(root / "images" / "a.png")
    make_image(root / "images" / "b.png")
    write(root / "labels" / "a.txt", "3 0.1 0.1 0.9 0.1 0.5 0.9\n5 0 0 0.5 0 0.5 0.5 0 0.5\n")
    write(root / "labels" / "b.txt", "3 0.2 0.2 0.4 0.2 0.4 0.4 0.2\n"   # odd: malformed
                                     "3 0.1 0.1 0.2 0.2 0.3 0.3\n"       # collinear: zero area
                                     "5 0.5 0.5 0.9 0.5 0.9 0.9\n")
    write(root / "train.txt", "./images/a.png\nimages/b.png\n")
    data_yaml = write(root / "dataset.yaml", "train: train.txt\nnames:\n  3: person\n  5: car\n")
    records, dropped = from_yolo(data_yaml)
    result = from_yolo(data_yaml)
    assert result.task is SEG  # every line is a segment
    assert [len(r.label) for r in records] == [2, 1]
    person = records[0].label[0]
    assert person.label == "person" and person.polygon == ((0.1, 0.1, 0.9, 0.1, 0.5, 0.9),)
    assert person.box == (0.1, 0.1, 0.9, 0.9)
    assert has(dropped, "labels/b.txt:1", "expected 5 values")
    assert has(dropped, "labels/b.txt:2", "zero area")
    out = tmp_path / "seg.jsonl"
    assert convert("yolo", root, out).task is SEG  # the folder's dataset.yaml is used
    assert len(read_back(out, SEG)) == 2
    # mixed box and segment lines: detection, segments give their extent
    write(root / "labels" / "b.txt", "5 0.5 0.5 0.2 0.2\n")
    mixed = from_yolo(data_yaml)
    assert mixed.task is DET and mixed.records[0].label[0].box == (0.1, 0.1, 0.9, 0.9)
    assert any("segment line(s) read as boxes" in n for n in mixed.notes)
    forced = from_yolo(data_yaml, task=SEG)
    assert has(forced.dropped, "labels/b.txt:1", "a box line", "no polygon")


def test_yolo_dataset_folders_without_yaml(tmp_path):
    rf = tmp_path / "roboflow"
    make_image(rf / "valid" / "images" / "v.jpg")
    write(rf / "valid" / "labels" / "v.txt", "0 0.5 0.5 0.5 0.5\n")
    write(rf / "classes.txt", "thing\n")
    records, dropped = from_yolo(rf, split="val")
    assert [o.label for o in records[0].label] == ["thing"] and dropped == []
    plain = tmp_path / "plain"
    make_image(plain / "images" / "p.jpg")
    write(plain / "labels" / "p.txt", "2 0.5 0.5 0.5 0.5\n")
    result = from_yolo(plain)
    assert result.records[0].label[0].label == "2"
    assert any("classes are named by their ids" in n for n in result.notes)
    assert label_path(Path("/d/images/train/images/x.jpg")) == Path("/d/images/train/labels/x.txt")
    assert label_path(Path("/d/pics/x.jpg")) == Path("/d/pics/x.txt")


def test_yolo_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"absent: YOLO data.yaml or dataset folder not found"):
        from_yolo(tmp_path / "absent")
    data_yaml = write(tmp_path / "d" / "data.yaml", "train: images\nnames: [a]\n")
    with pytest.raises(DataError, match=r"data.yaml: no 'val' entry \(keys: train, names\)"):
        from_yolo(data_yaml, split="val")
    with pytest.raises(DataError, match=r"data.yaml: train: 'images' is neither a folder nor a .txt list"):
        from_yolo(data_yaml)
    bad = write(tmp_path / "bad.yaml", "train: [unclosed\n")
    with pytest.raises(DataError, match=r"bad.yaml:\d+: not a YAML file"):
        from_yolo(bad)
    names = write(tmp_path / "n" / "data.yaml", "train: .\nnames: 3\n")
    with pytest.raises(DataError, match=r"data.yaml: names: expected a list or a mapping"):
        from_yolo(names)
    make_image(tmp_path / "nolabels" / "images" / "a.jpg")
    with pytest.raises(DataError, match=r"nolabels: no YOLO label file for any of the 1 image\(s\).*labels/a.txt"):
        from_yolo(tmp_path / "nolabels")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: not a YOLO dataset: no data.yaml and no images folder"):
        from_yolo(tmp_path / "empty")
    with pytest.raises(ConfigError, match="split must be one of"):
        from_yolo(data_yaml, split="dev")
    with pytest.raises(ConfigError, match="not image-classification"):
        from_yolo(data_yaml, task="image-classification")


def test_cli_yolo_split(tmp_path, capsys):
    data_yaml = detect_dataset(tmp_path / "ds", names_yaml="names: {0: cat, 1: dog}")
    out = tmp_path / "val.jsonl"
    assert run_cli(["convert", "yolo", str(data_yaml), "-o", str(out), "--split", "val"]) == 0
    assert "wrote 1 image(s) with 1 object(s)" in capsys.readouterr().out
    assert json.loads(out.read_text())["label"][0]["label"] == "dog"
