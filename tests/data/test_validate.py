"""Validation of whole files: every class of problem at its exact line and field; read_dataset; the CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from jupyter_avml.cli import validate as cli_validate
from jupyter_avml.data.validate import classes_of, read_dataset, validate_jsonl
from jupyter_avml.errors import ConfigError, DataError

DET = "image-object-detection"


def box(label="can", **kw):
    out = {"label": label, "topX": 0.1, "topY": 0.2, "bottomX": 0.5, "bottomY": 0.6}
    out.update(kw)
    return out


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (40, 30), (0, 128, 0)).save(folder / "ok.jpg")
    Image.new("RGB", (40, 30), (0, 0, 128)).save(folder / "ok2.png")
    Image.new("RGB", (24, 24), (0, 0, 128)).save(folder / "ok3.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 x 20, seen 20 x 40
    for name in ("rot.jpg", "rot2.jpg"):
        Image.new("RGB", (40, 20), (9, 9, 9)).save(folder / name, exif=exif.tobytes())
    (folder / "empty.jpg").write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "whole.jpg")
    (folder / "cut.jpg").write_bytes((folder / "whole.jpg").read_bytes()[:400])
    (folder / "text.jpg").write_text("hello\n")
    return folder


# (line, field) expected for each row of the crafted file; None: a valid row.
CRAFTED = [
    ({"image_url": "images/ok.jpg", "image_details": {"width": 40, "height": 30}, "label": [box()]}, None),
    ('{"image_url": "images/ok.jpg", "label": [', [(2, "row")]),                           # not JSON
    ('["images/ok.jpg", "can"]', [(3, "row")]),                                            # not an object
    ({"label": [box()]}, [(4, "image_url")]),                                               # missing image_url
    ({"image_url": "images/ok2.png"}, [(5, "label")]),                                      # missing label
    ({"image_url": "images/ok2.png", "labels": [], "label": [box()]}, [(6, "labels")]),     # unknown top field
    ({"image_url": "images/ok2.png", "label": [box(confidence=0.9)]}, [(7, "label[0].confidence")]),
    ({"image_url": "images/ok2.png", "image_details": {"size": 3}, "label": []}, [(8, "image_details.size")]),
    ({"image_url": "images/ok2.png", "label": "can"}, [(9, "label")]),                      # wrong form
    ({"image_url": "images/ok2.png", "label": [box(bottomY=1.7)]}, [(10, "label[0].bottomY")]),
    ({"image_url": "images/ok2.png", "label": [box(topX=0.6)]}, [(11, "label[0]")]),        # topX >= bottomX
    ({"image_url": "images/ok2.png", "label": [box(topY=0.6)]}, [(12, "label[0]")]),        # topY >= bottomY
    ({"image_url": "images/nothere.jpg", "label": [box()]}, [(13, "image_url")]),           # missing image
    ({"image_url": "images/empty.jpg", "label": [box()]}, [(14, "image_url")]),             # zero bytes
    ({"image_url": "images/cut.jpg", "label": [box()]}, [(15, "image_url")]),               # truncated
    ({"image_url": "images/text.jpg", "label": [box()]}, [(16, "image_url")]),              # not an image
    ({"image_url": "images/ok2.png", "image_details": {"width": 41}, "label": [box()]},
     [(17, "image_details.width")]),
    ({"image_url": "images/rot.jpg", "image_details": {"width": "40px", "height": 20}, "label": [box()]},
     [(18, "image_details.width"), (18, "image_details.height")]),                         # before EXIF rotation
    ({"image_url": "images/rot2.jpg", "image_details": {"width": 20, "height": 40}, "label": [box()]}, None),
    ({"image_url": "images/whole.jpg", "image_details": {"format": "gif"}, "label": []},
     [(20, "image_details.format")]),
    ({"image_url": "images/ok.jpg", "image_details": {"width": 40, "height": 30}, "label": [box("milk")]},
     [(21, "image_url")]),                                                                  # conflicting duplicate
    ({"image_url": "images/ok.jpg", "image_details": {"width": 40, "height": 30}, "label": [box()]}, None),
    ({"image_url": "images/whole.jpg", "label": [box("cann")]}, None),                      # unknown to training
    ({"image_url": "AmlDatastore://image_data/a.jpg", "label": [box()]}, [(24, "image_url")]),
    ("", None),                                                                             # blank line
    ({"image_url": "images/ok3.png", "label": [box("milk", isCrowd="true"), box(topX="0.3")]}, None),
]
IMAGE_LINES = {13, 14, 15, 16, 17, 18}


def write_crafted(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row, _ in CRAFTED))
    return path


def expected(skip_lines=()):
    return [item for _, items in CRAFTED for item in (items or []) if item[0] not in skip_lines]


def test_every_problem_class_at_its_line_and_field(tmp_path, images):
    path = write_crafted(tmp_path)
    report = validate_jsonl(path, DET, known_classes=["can", "milk"])
    got = [(p.line, p.field) for p in report.problems]
    assert got == sorted(expected() + [(23, "label[0].label")], key=lambda item: item[0])
    assert not report.ok
    assert report.rows == 25  # 26 lines, one blank
    assert [r.line for r in report.records] == [1, 19, 26]
    assert report.duplicates_dropped == 1  # line 22: identical to line 1
    assert report.classes == ["can", "milk"]
    assert [r.line for r in report.rejected] == sorted({line for line, _ in got})
    assert report.images_checked == 9  # unique local paths of rows that reached the image check
    by_line = {p.line: p for p in report.problems}
    assert "line 1" in by_line[21].message
    assert "file not found" in by_line[13].message and by_line[13].value == "images/nothere.jpg"
    assert "file is empty (0 bytes)" in by_line[14].message
    assert "truncated or corrupt image" in by_line[15].message
    assert "not an image file" in by_line[16].message
    assert "which is 20 px wide" in [p for p in report.problems if p.line == 18][0].message
    assert "did you mean 'can'?" in by_line[23].message and by_line[23].value == "cann"
    assert str(by_line[10]).startswith(f"{path}:10: label[0].bottomY: outside [0, 1]")
    assert str(by_line[10]).endswith("(1.7)")
    assert all(str(p).startswith(f"{path}:{p.line}: {p.field}: ") for p in report.problems)
    # resolved paths: relative to the JSONL folder
    assert report.records[0].path == images / "ok.jpg"


def test_without_image_checks(tmp_path, images):
    path = write_crafted(tmp_path)
    report = validate_jsonl(path, DET, check_images=False)
    assert [(p.line, p.field) for p in report.problems] == expected(skip_lines=IMAGE_LINES)
    assert [r.line for r in report.records] == [1, 13, 14, 15, 16, 17, 18, 19, 23, 26]
    assert report.images_checked is None
    assert "images: not checked" in report.summary()


def test_segmentation_polygons(tmp_path):
    def row(polygon):
        name = f"{len(lines)}.png"
        Image.new("RGB", (32, 32)).save(tmp_path / name)
        return json.dumps({"image_url": name, "label": [{"label": "x", "isCrowd": 0, "polygon": polygon}]})

    lines: list[str] = []

    for polygon in ([[0.1, 0.1, 0.9, 0.1, 0.5, 0.9]],
                    [[0.1, 0.1, 0.9, 0.1]],                          # fewer than 3 points
                    [[0.1, 0.1, 0.9, 0.1, 0.5]],                     # odd number of values
                    [[0.1, 0.1, 0.2, 0.2, 0.3, 0.3]],                # collinear: zero area
                    [[0.1, 0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.9]],      # bow-tie: zero area
                    [0.2, 0.2, 0.8, 0.2, 0.8, 0.8, 0.2, 0.8]):       # flat list: one segment
        lines.append(row(polygon))
    path = tmp_path / "seg.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = validate_jsonl(path, "image-instance-segmentation")
    assert [(p.line, p.field) for p in report.problems] == [
        (2, "label[0].polygon[0]"), (3, "label[0].polygon[0]"), (4, "label[0].polygon[0]"),
        (5, "label[0].polygon[0]")]
    assert [r.line for r in report.records] == [1, 6]
    assert report.records[1].label[0].box == (0.2, 0.2, 0.8, 0.8)


def test_report_format_limits_problems(tmp_path, images):
    path = write_crafted(tmp_path)
    report = validate_jsonl(path, DET)
    text = report.format(max_problems=3)
    lines = text.splitlines()
    assert lines[0] == f"{path}: {DET}: 25 rows, 4 valid, 20 rejected, 1 identical duplicate dropped"
    problem_lines = [line for line in lines if line.startswith(f"{path}:") and line != lines[0]]
    assert problem_lines == [str(p) for p in report.problems[:3]]
    assert lines[-1] == f"... and {len(report.problems) - 3} more"
    assert "  can: 3 objects in 3 images" in lines  # lines 1, 19, 26
    assert "  milk: 1 object in 1 image" in lines
    assert "cann" in report.classes


def test_valid_file_and_classification_summary(tmp_path, images):
    path = tmp_path / "cls.jsonl"
    path.write_text("\n".join(json.dumps({"image_url": f"images/{n}", "label": c})
                              for n, c in [("ok.jpg", "a"), ("ok2.png", "b"), ("whole.jpg", "a")]) + "\n")
    report = validate_jsonl(path, "image-classification")
    assert report.ok and report.problems == []
    assert report.class_counts() == {"a": (2, 2), "b": (1, 1)}
    text = report.format()
    assert "  a: 2 images" in text and text.endswith("OK: no problems found")


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    report = validate_jsonl(empty, DET)
    assert not report.ok and [(p.line, p.field) for p in report.problems] == [(0, "file")]
    with pytest.raises(DataError, match=r"nope\.jsonl: file not found"):
        validate_jsonl(tmp_path / "nope.jsonl", DET)


def test_not_utf8_is_reported(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    path = tmp_path / "latin.jsonl"
    # the third row gives the valid rows two classes (one class would be a problem of its own)
    path.write_bytes(b'{"image_url": "a.png", "label": "caf\xe9"}\n{"image_url": "a.png", "label": "ok"}\n'
                     b'{"image_url": "b.png", "label": "fine"}\n')
    report = validate_jsonl(path, "image-classification")
    assert [(p.line, p.field) for p in report.problems] == [(1, "row")]
    assert "not UTF-8" in report.problems[0].message


def test_read_dataset_raises_with_all_problems(tmp_path, images):
    path = write_crafted(tmp_path)
    with pytest.raises(DataError) as info:
        read_dataset(path, DET)
    error = info.value
    assert [(p.line, p.field) for p in error.problems] == expected()
    message = str(error)
    assert f"{path}:2: row: not valid JSON" in message
    assert f"{path}:13: image_url: image " in message


def test_read_dataset_skip_invalid_writes_rejected_rows(tmp_path, images):
    path = write_crafted(tmp_path)
    out = tmp_path / "out" / "rejected.jsonl"
    dataset = read_dataset(path, DET, skip_invalid=True, rejected_out=out)
    assert [r.line for r in dataset.records] == [1, 19, 23, 26]
    assert dataset.classes == ["can", "cann", "milk"]
    assert all(r.path is not None and r.path.is_file() for r in dataset)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rows] == sorted({line for line, _ in expected()})
    original = path.read_text().splitlines()
    for row in rows:
        assert row["text"] == original[row["line"] - 1]
        assert row["problems"] and all(p.startswith(f"{path}:{row['line']}: ") for p in row["problems"])
    by_line = {r["line"]: r for r in rows}
    assert len(by_line[18]["problems"]) == 2
    assert "duplicate of line 1" in by_line[21]["problems"][0]


def test_known_classes_from_training_file(tmp_path, images):
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"image_url": "images/ok.jpg", "label": ["a", "b"]}) + "\n"
                     + "not json\n")
    assert classes_of(train, "image-classification-multilabel") == ["a", "b"]
    valid = tmp_path / "valid.jsonl"
    valid.write_text(json.dumps({"image_url": "images/ok2.png", "label": ["b", "c"]}) + "\n")
    report = validate_jsonl(valid, "image-classification-multilabel", known_classes=classes_of(
        train, "image-classification-multilabel"))
    assert [(p.line, p.field, p.value) for p in report.problems] == [(1, "label[1]", "c")]
    assert "not in the training data (known: a, b)" in report.problems[0].message


# --------------------------------------------------------------------------------------------------------
# CLI


def cli(argv, workspace=None):
    parser = argparse.ArgumentParser(prog="avml")
    parser.add_argument("--workspace", default=None)
    cli_validate.register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(([f"--workspace={workspace}"] if workspace else []) + argv)
    return args.func(args)


def test_cli_exit_codes_and_output(tmp_path, images, capsys, workspace):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"image_url": "images/ok.jpg", "label": [box()]}) + "\n")
    assert cli(["validate", str(good), "--task", DET]) == 0
    out = capsys.readouterr().out
    assert f"{good}: {DET}: 1 row, 1 valid, 0 rejected" in out and "OK: no problems found" in out

    bad = write_crafted(tmp_path)
    assert cli(["validate", str(bad), "--task", DET], workspace=tmp_path / "ws2") == 2
    out = capsys.readouterr().out
    assert f"{bad}:2: row: not valid JSON" in out
    assert f"{bad}:13: image_url: " in out
    assert not (tmp_path / "ws2").exists()  # no download: the cache folder is not created

    assert cli(["validate", str(bad), "--task", DET, "--no-image-check"]) == 2
    out = capsys.readouterr().out
    assert f"{bad}:13: " not in out and "images: not checked" in out


def test_cli_prefix_map_and_known_classes(tmp_path, images, capsys):
    store = tmp_path / "store"
    store.mkdir()
    Image.new("RGB", (8, 8)).save(store / "a.png")
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"image_url": "images/ok.jpg", "label": "cat"}) + "\n")
    valid = tmp_path / "valid.jsonl"
    valid.write_text(json.dumps({"image_url": "AmlDatastore://image_data/a.png", "label": "cat"}) + "\n"
                     + json.dumps({"image_url": "AmlDatastore://image_data/a.png", "label": "dog"}) + "\n")
    code = cli(["validate", str(valid), "--task", "image-classification",
                "--prefix-map", f"AmlDatastore://image_data/={store}", "--known-classes-from", str(train)])
    out = capsys.readouterr().out
    assert code == 2
    assert f"{valid}:2: label: class not in the training data (known: cat) ('dog')" in out
    assert f"{valid}:1:" not in out

    with pytest.raises(ConfigError, match="--prefix-map: expected PREFIX=DIR"):
        cli(["validate", str(valid), "--task", "image-classification", "--prefix-map", "nodir"])
    with pytest.raises(ConfigError, match="task must be one of"):
        cli(["validate", str(valid), "--task", "segmentation"])
