"""Parsing one JSONL row per task: the spec's forms, the looser real-world forms, and the problems reported."""

from __future__ import annotations

import pytest

from jupyter_avml.data.jsonl import Problem, iter_jsonl, parse_record, shoelace_area
from jupyter_avml.data.records import ObjectLabel
from jupyter_avml.tasks import ImageTask

CLS = ImageTask.IMAGE_CLASSIFICATION
MULTI = ImageTask.IMAGE_CLASSIFICATION_MULTILABEL
DET = ImageTask.IMAGE_OBJECT_DETECTION
SEG = ImageTask.IMAGE_INSTANCE_SEGMENTATION


def parse(obj, task):
    problems: list[Problem] = []
    record = parse_record(obj, task, source="f.jsonl", line=7, problems=problems)
    return record, problems


def fields(problems):
    return [p.field for p in problems]


def box(**kw):
    out = {"label": "can", "topX": 0.1, "topY": 0.2, "bottomX": 0.5, "bottomY": 0.6}
    out.update(kw)
    return out


# --------------------------------------------------------------------------------------------------------


def test_problem_str():
    assert str(Problem("a.jsonl", 3, "label[0].topX", "outside [0, 1]", 1.5)) == \
        "a.jsonl:3: label[0].topX: outside [0, 1] (1.5)"
    assert str(Problem("a.jsonl", 3, "label", "missing")) == "a.jsonl:3: label: missing"
    long = str(Problem("a.jsonl", 1, "row", "not valid JSON", "x" * 500))
    shown = long[long.index("(") + 1:-1]
    assert len(shown) == 80 and shown.startswith("'xxx") and shown.endswith("...")


def test_iter_jsonl(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n   \n{"b": 2}\r\n{"c": 3}')
    assert list(iter_jsonl(path)) == [(1, '{"a": 1}'), (4, '{"b": 2}'), (5, '{"c": 3}')]


# --------------------------------------------------------------------------------------------------------
# the spec's forms


def test_multiclass():
    record, problems = parse({"image_url": "a.jpg", "label": "can"}, CLS)
    assert problems == []
    assert (record.image_url, record.label, record.source, record.line) == ("a.jpg", "can", "f.jsonl", 7)


def test_multilabel_and_empty():
    record, problems = parse({"image_url": "a.jpg", "label": ["can", "milk_bottle"]}, MULTI)
    assert problems == [] and record.label == ("can", "milk_bottle")
    record, problems = parse({"image_url": "a.jpg", "label": []}, MULTI)
    assert problems == [] and record.label == ()


def test_detection():
    obj = {"image_url": "a.jpg", "image_details": {"format": "jpg", "width": 640, "height": 480},
           "label": [box(isCrowd=0), box(label="milk", topX=0.0, bottomX=1.0, isCrowd=1)]}
    record, problems = parse(obj, DET)
    assert problems == []
    assert (record.width, record.height, record.format) == (640, 480, "jpg")
    assert record.label == (ObjectLabel("can", 0.1, 0.2, 0.5, 0.6, False),
                            ObjectLabel("milk", 0.0, 0.2, 1.0, 0.6, True))
    record, problems = parse({"image_url": "a.jpg", "label": []}, DET)
    assert problems == [] and record.label == ()


def test_segmentation_box_comes_from_the_polygon():
    polygon = [[0.1, 0.2, 0.5, 0.2, 0.5, 0.7], [0.6, 0.6, 0.9, 0.6, 0.8, 0.9]]
    obj = {"image_url": "a.jpg", "label": [{"label": "can", "isCrowd": 0, "polygon": polygon}]}
    record, problems = parse(obj, SEG)
    assert problems == []
    [obj_label] = record.label
    assert obj_label.box == (0.1, 0.2, 0.9, 0.9)
    assert obj_label.polygon == ((0.1, 0.2, 0.5, 0.2, 0.5, 0.7), (0.6, 0.6, 0.9, 0.6, 0.8, 0.9))


# --------------------------------------------------------------------------------------------------------
# loose forms


def test_numbers_as_strings_and_px():
    obj = {"image_url": "a.jpg", "image_details": {"format": "JPEG", "width": "2230px", "height": " 400 PX "},
           "label": [{"label": "can", "topX": "0.26", "topY": " 0.1", "bottomX": "1", "bottomY": 0.9}]}
    record, problems = parse(obj, DET)
    assert problems == []
    assert (record.width, record.height, record.format) == (2230, 400, "jpeg")
    assert record.label[0].box == (0.26, 0.1, 1.0, 0.9)


@pytest.mark.parametrize("value,expected", [(0, False), (1, True), (True, True), (False, False), ("true", True),
                                            ("FALSE", False), ("0", False), ("1", True), (1.0, True)])
def test_is_crowd_forms(value, expected):
    record, problems = parse({"image_url": "a.jpg", "label": [box(isCrowd=value)]}, DET)
    assert problems == [] and record.label[0].is_crowd is expected


def test_single_box_object_instead_of_a_list():
    record, problems = parse({"image_url": "a.jpg", "label": box(isCrowd="true")}, DET)
    assert problems == [] and record.label == (ObjectLabel("can", 0.1, 0.2, 0.5, 0.6, True),)
    record, problems = parse({"image_url": "a.jpg", "label": {"label": "x", "polygon": [0.1, 0.1, 0.5, 0.1, 0.3, 0.4]}},
                             SEG)
    assert problems == [] and record.label[0].polygon == ((0.1, 0.1, 0.5, 0.1, 0.3, 0.4),)


def test_flat_polygon_is_one_segment():
    record, problems = parse({"image_url": "a.jpg", "label": [{"label": "x", "isCrowd": "0",
                                                               "polygon": ["0.1", 0.1, 0.5, 0.1, 0.3, 0.4]}]}, SEG)
    assert problems == [] and record.label[0].polygon == ((0.1, 0.1, 0.5, 0.1, 0.3, 0.4),)


def test_format_case_and_dot_and_null_details():
    record, _ = parse({"image_url": "a.jpg", "image_details": {"format": ".PNG"}, "label": "x"}, CLS)
    assert record.format == "png"
    record, problems = parse({"image_url": "a.jpg", "image_details": None, "label": "x"}, CLS)
    assert problems == [] and record.width is None


def test_integer_class_names_and_labeling_export_field():
    record, problems = parse({"image_url": "a.jpg", "label": 3, "label_confidence": [1.0]}, CLS)
    assert problems == [] and record.label == "3"


def test_coordinate_slack_is_clamped():
    record, problems = parse({"image_url": "a.jpg", "label": [box(topX=-5e-7, bottomX=1.0000005)]}, DET)
    assert problems == [] and record.label[0].top_x == 0.0 and record.label[0].bottom_x == 1.0
    record, problems = parse({"image_url": "a.jpg", "label": [box(bottomX=1.00001)]}, DET)
    assert record is None and fields(problems) == ["label[0].bottomX"]


# --------------------------------------------------------------------------------------------------------
# problems


def test_not_an_object():
    record, problems = parse(["a.jpg", "can"], CLS)
    assert record is None
    assert [(p.line, p.field) for p in problems] == [(7, "row")]
    assert "expected a JSON object" in problems[0].message


def test_missing_and_unknown_fields_all_reported():
    record, problems = parse({"imageUrl": "a.jpg", "lable": "can"}, CLS)
    assert record is None
    assert sorted(fields(problems)) == sorted(["image_url", "imageUrl", "label", "lable"])
    by_field = {p.field: p for p in problems}
    assert "did you mean 'image_url'?" in by_field["imageUrl"].message
    assert "did you mean 'label'?" in by_field["lable"].message
    assert by_field["image_url"].value is None and "missing" in by_field["image_url"].message


def test_unknown_fields_inside_boxes_and_details():
    obj = {"image_url": "a.jpg", "image_details": {"widht": 3},
           "label": [box(topx=0.1), {**box(), "polygon": [[0.1, 0.1]]}]}
    _, problems = parse(obj, DET)
    by_field = {p.field: p.message for p in problems}
    assert set(by_field) == {"image_details.widht", "label[0].topx", "label[1].polygon"}
    assert "did you mean 'width'?" in by_field["image_details.widht"]
    assert "did you mean 'topX'?" in by_field["label[0].topx"]
    assert "image-instance-segmentation" in by_field["label[1].polygon"]


def test_wrong_label_forms_say_what_the_task_expects():
    _, problems = parse({"image_url": "a.jpg", "label": "can"}, DET)
    assert fields(problems) == ["label"]
    assert problems[0].message.startswith("image-object-detection expects a list of boxes")
    assert "got a string" in problems[0].message

    _, problems = parse({"image_url": "a.jpg", "label": ["can"]}, CLS)
    assert fields(problems) == ["label"] and "image-classification-multilabel" in problems[0].message

    _, problems = parse({"image_url": "a.jpg", "label": "can"}, MULTI)
    assert fields(problems) == ["label"] and 'write ["can"]' in problems[0].message

    _, problems = parse({"image_url": "a.jpg", "label": ["can", "x"]}, DET)
    assert fields(problems) == ["label[0]", "label[1]"]

    _, problems = parse({"image_url": "a.jpg", "label": [box()]}, SEG)
    assert fields(problems) == ["label[0].polygon"] and "missing" in problems[0].message


def test_multilabel_duplicates():
    _, problems = parse({"image_url": "a.jpg", "label": ["can", "milk", "can"]}, MULTI)
    assert [(p.field, p.value) for p in problems] == [("label[2]", "can")]
    assert "also label[0]" in problems[0].message


def test_box_problems():
    obj = {"image_url": "a.jpg", "label": [
        box(topX=1.2),                       # out of range (pixels?)
        box(topX=0.5, bottomX=0.5),          # zero width
        box(topY=0.7, bottomY=0.6),          # inverted
        {"label": "can", "topX": 0.1},       # missing three coordinates
        box(topX="abc", label=""),           # not a number, empty label
        box(topY=float("nan")),              # NaN is not a coordinate
    ]}
    record, problems = parse(obj, DET)
    assert record is None
    assert fields(problems) == ["label[0].topX", "label[1]", "label[2]", "label[3].topY", "label[3].bottomX",
                                "label[3].bottomY", "label[4].label", "label[4].topX", "label[5].topY"]
    assert "looks like pixels" in problems[0].message
    assert problems[1].message == "topX must be less than bottomX"
    assert problems[2].message == "topY must be less than bottomY"


def test_polygon_problems():
    def instance(polygon):
        return {"label": "x", "polygon": polygon}

    obj = {"image_url": "a.jpg", "label": [
        instance([[0.1, 0.1, 0.5, 0.1]]),                              # 2 points
        instance([[0.1, 0.1, 0.5, 0.1, 0.3]]),                         # odd count
        instance([[0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4]]),          # collinear: zero area
        instance([[0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0]]),          # bow-tie: lobes cancel
        instance([[0.1, 0.1, 0.5, 0.1, 0.3, 0.4], [0.1, 1.5, 0.2, 0.2, 0.3, 0.1]]),  # 2nd segment out of range
        instance([[0.1, 0.1], [0.5, 0.1], [0.3, 0.4]]),                # [x, y] pairs
        instance([]),                                                  # no segments
    ]}
    record, problems = parse(obj, SEG)
    assert record is None
    assert fields(problems) == ["label[0].polygon[0]", "label[1].polygon[0]", "label[2].polygon[0]",
                                "label[3].polygon[0]", "label[4].polygon[1][1]", "label[5].polygon",
                                "label[6].polygon"]
    messages = [p.message for p in problems]
    assert messages[0] == "fewer than 3 points (2)"
    assert messages[1].startswith("odd number of values (5)")
    assert messages[2].startswith("zero area") and messages[3].startswith("zero area")
    assert messages[4].startswith("outside [0, 1]")
    assert "[x, y] points" in messages[5]


def test_shoelace_area():
    assert shoelace_area([0, 0, 1, 0, 1, 1, 0, 1]) == 1.0
    assert shoelace_area([0, 0, 0, 1, 1, 1, 1, 0]) == -1.0
    assert shoelace_area([0, 0, 1, 1, 1, 0, 0, 1]) == 0.0


def test_details_problems():
    obj = {"image_url": "a.jpg", "image_details": {"format": "gif", "width": "wide", "height": 0}, "label": "x"}
    record, problems = parse(obj, CLS)
    assert record is None
    assert [(p.field, p.value) for p in problems] == [("image_details.width", "wide"), ("image_details.height", 0),
                                                      ("image_details.format", "gif")]
    _, problems = parse({"image_url": "a.jpg", "image_details": "big", "label": "x"}, CLS)
    assert fields(problems) == ["image_details"]


def test_bad_image_url_types():
    _, problems = parse({"image_url": 12, "label": "x"}, CLS)
    assert [(p.field, p.value) for p in problems] == [("image_url", 12)]
    _, problems = parse({"image_url": "  ", "label": "x"}, CLS)
    assert [(p.field, p.message) for p in problems] == [("image_url", "empty")]
