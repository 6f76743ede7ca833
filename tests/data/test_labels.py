"""Near-duplicate class names and class counts (data.labels), through validation and directly."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from jupyter_avml.data.labels import label_key, near_duplicate_problems
from jupyter_avml.data.records import ImageRecord, ObjectLabel
from jupyter_avml.data.validate import validate_jsonl
from jupyter_avml.tasks import ImageTask


@pytest.mark.parametrize("a, b", [("Cat", "cat"), (" cat", "cat"), ("c\u200bat", "cat"), ("cat\ufeff", "cat"),
                                  ("ｃａｔ", "cat"), ("STRASSE", "straße"), ("so\u00adft", "soft")])
def test_label_key_ignores_what_a_reader_cannot_see(a, b):
    assert label_key(a) == label_key(b)


@pytest.mark.parametrize("a, b", [("cat", "cats"), ("cat", "c at"), ("a_b", "a-b"), ("1", "01")])
def test_label_key_keeps_what_a_reader_sees(a, b):
    assert label_key(a) != label_key(b)


def test_the_most_used_spelling_is_kept_and_the_first_on_a_tie():
    task = ImageTask.IMAGE_CLASSIFICATION
    records = [ImageRecord(f"{i}.png", name, line=i + 1) for i, name in enumerate(["Dog", "dog", "dog", "Cat",
                                                                                    "cat"])]
    problems = near_duplicate_problems(records, sorted({r.label for r in records}), task, "f.jsonl")
    assert [(p.line, p.value) for p in problems] == [(1, "Dog"), (5, "cat")]
    assert "'cat' differs from 'Cat' only in case ('Cat': 1 uses from line 4; 'cat': 1 from line 5)" \
        in problems[1].message


def test_detection_fields_name_the_box():
    task = ImageTask.IMAGE_OBJECT_DETECTION
    box = dict(top_x=0.1, top_y=0.1, bottom_x=0.5, bottom_y=0.5)
    records = [ImageRecord("a.png", (ObjectLabel("car", **box), ObjectLabel("car", **box)), line=1),
               ImageRecord("b.png", (ObjectLabel("truck", **box), ObjectLabel("Car", **box)), line=2)]
    [problem] = near_duplicate_problems(records, ["Car", "car", "truck"], task, "d.jsonl")
    assert (problem.line, problem.field, problem.value) == (2, "label[1].label", "Car")


def test_multilabel_rows_with_a_variant_are_rejected_whole(tmp_path):
    for name in "abc":
        Image.new("RGB", (8, 8)).save(tmp_path / f"{name}.png")
    path = tmp_path / "ml.jsonl"
    rows = [{"image_url": "a.png", "label": ["red", "round"]}, {"image_url": "b.png", "label": ["Red "]},
            {"image_url": "c.png", "label": ["round"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = validate_jsonl(path, "image-classification-multilabel")
    assert [(p.line, p.field) for p in report.problems] == [(2, "label[0]")]
    assert [r.line for r in report.records] == [1, 3] and report.classes == ["red", "round"]
    assert [row.line for row in report.rejected] == [2]


def test_detection_with_one_class_is_fine(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    path = tmp_path / "od.jsonl"
    path.write_text(json.dumps({"image_url": "a.png", "label": [
        {"label": "person", "topX": 0.1, "topY": 0.1, "bottomX": 0.5, "bottomY": 0.5}]}) + "\n")
    report = validate_jsonl(path, "image-object-detection")
    assert report.ok and not report.warnings
