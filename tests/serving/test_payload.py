"""Request bodies into images, settings and the form of the answer (no model, no server)."""

from __future__ import annotations

import base64

import pytest

from jupyter_avml.serving.errors import RequestError
from jupyter_avml.serving.payload import LIST, MLFLOW, SINGLE, check_content_type, parse_request

IMAGES = [b"first image", b"second image"]
B64 = [base64.b64encode(data).decode() for data in IMAGES]


@pytest.mark.parametrize("content_type, kind", [
    ("application/octet-stream", "raw"), ("image/png", "raw"), ("application/json; charset=utf-8", "json"),
    ("application/vnd.api+json", "json")])
def test_content_types(content_type, kind):
    assert check_content_type(content_type) == kind


@pytest.mark.parametrize("content_type", [None, "", "text/csv", "multipart/form-data"])
def test_other_content_types_are_415(content_type):
    with pytest.raises(RequestError) as caught:
        check_content_type(content_type)
    assert caught.value.status == 415 and "application/octet-stream" in caught.value.message


def test_raw_bytes_are_one_image_with_query_settings_and_filename():
    parsed = parse_request("raw", b"bytes", {"box_score_thresh": "0.5", "filename": "a.png"}, 4)
    assert (parsed.images, parsed.form, parsed.settings, parsed.filename) == (
        [b"bytes"], SINGLE, {"box_score_thresh": "0.5"}, "a.png")
    assert parsed.image_label(0) == "the request body"


@pytest.mark.parametrize("payload, form", [
    ({"image": B64[0]}, SINGLE),
    ({"image": B64}, LIST),
    ([{"image": B64[0]}, {"image": B64[1]}], LIST),
    ({"dataframe_split": {"columns": ["image"], "data": [[B64[0]], [B64[1]]]}}, MLFLOW),
    ({"dataframe_split": {"columns": ["id", "image"], "data": [[7, B64[0]], [8, B64[1]]]}}, MLFLOW),
    ({"dataframe_records": [{"image": B64[0]}, {"image": B64[1]}]}, MLFLOW),
    ({"instances": [{"image": {"b64": B64[0]}}, {"image": {"b64": B64[1]}}]}, MLFLOW),
    ({"instances": [B64[0], B64[1]]}, MLFLOW),
    ({"inputs": {"image": B64}}, MLFLOW),
    ({"inputs": [{"image": "data:image/png;base64," + B64[0]}, {"image": B64[1]}]}, MLFLOW),
])
def test_json_forms(payload, form):
    import json

    parsed = parse_request("json", json.dumps(payload).encode(), {}, 8)
    expected = IMAGES[:1] if form == SINGLE else IMAGES
    assert parsed.images == expected and parsed.form == form


def test_params_join_query_settings_and_win():
    import json

    body = json.dumps({"image": B64[0], "params": {"box_score_thresh": 0.7, "img_size": 320}}).encode()
    parsed = parse_request("json", body, {"box_score_thresh": "0.1", "box_iou_thresh": "0.4"}, 8)
    assert parsed.settings == {"box_score_thresh": 0.7, "img_size": 320, "box_iou_thresh": "0.4"}


@pytest.mark.parametrize("body, status, code", [
    (b"", 400, "empty_body"), (b"[", 400, "bad_json"), (b"null", 400, "bad_json"), (b"[]", 400, "no_images"),
    (b'{"image": []}', 400, "no_images"), (b'{"image": null}', 400, "bad_base64"),
    (b'{"image": "%%%"}', 400, "bad_base64"), (b'{"dataframe_split": {"data": [["x", "y"]]}}', 400, "bad_json"),
    (b'{"inputs": 3}', 400, "bad_json"), (b'{"image": ["AAAA", "AAAA", "AAAA"]}', 413, "too_many_images")])
def test_bad_json_bodies(body, status, code):
    with pytest.raises(RequestError) as caught:
        parse_request("json", body, {}, 2)
    assert (caught.value.status, caught.value.code) == (status, code), caught.value.message
