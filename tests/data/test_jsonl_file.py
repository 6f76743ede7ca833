"""Reading a JSONL file: regular files only, lines capped and counted across read blocks, other formats named."""

from __future__ import annotations

import json

import pytest

from jupyter_avml.data import jsonl_file
from jupyter_avml.data.jsonl_file import check_data_file, iter_jsonl_checked, not_jsonl_reason
from jupyter_avml.errors import DataError


@pytest.fixture
def small_blocks(monkeypatch):
    """Read 7 bytes at a time, so that lines cross block boundaries everywhere."""
    monkeypatch.setattr(jsonl_file, "READ_BLOCK", 7)


@pytest.mark.parametrize("blocks", ["default", "small"])
def test_lines_are_numbered_across_blocks(tmp_path, monkeypatch, blocks):
    if blocks == "small":
        monkeypatch.setattr(jsonl_file, "READ_BLOCK", 7)
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\n   \n{"b": "xx"}\n{"c": 3}')  # BOM, CRLF, blanks, no final EOL
    assert list(iter_jsonl_checked(path)) == [(1, '{"a": 1}', None), (4, '{"b": "xx"}', None), (5, '{"c": 3}', None)]


def test_overlong_lines_anywhere(tmp_path, small_blocks):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"ok1\n" + b"x" * 30 + b"\nok2\n" + b"y" * 25)
    rows = list(iter_jsonl_checked(path, max_line_bytes=10))
    assert [(n, t) for n, t, _ in rows] == [(1, "ok1"), (2, "x" * 30 + "..."), (3, "ok2"), (4, "y" * 25 + "...")]
    assert rows[1][2] == "line too long: 30 bytes (at most 10 per line); each line of a JSONL file is one row"
    assert rows[3][2].startswith("line too long: 25 bytes")
    assert rows[0][2] is None and rows[2][2] is None


def test_overlong_line_inside_one_block(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"a\n" + b"z" * 50 + b"\nb\n")
    rows = list(iter_jsonl_checked(path, max_line_bytes=20))
    assert [(n, e is None) for n, _, e in rows] == [(1, True), (2, False), (3, True)]
    assert "50 bytes" in rows[1][2]


def test_not_utf8_per_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"a": "caf\xe9"}\n{"b": 1}\n')
    [(line, text, error), second] = iter_jsonl_checked(path)
    assert line == 1 and "\ufffd" in text and error == "not UTF-8 text: invalid continuation byte at byte 10"
    assert second == (2, '{"b": 1}', None)


def test_check_data_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        check_data_file(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="is a folder, not a JSONL file"):
        check_data_file(tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="a folder of its path is a file"):
        check_data_file(tmp_path / "f" / "d.jsonl")
    check_data_file(tmp_path / "f")


def test_not_jsonl_reason_only_for_whole_documents(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    # a JSONL row may mention "images"; only the shape of a COCO document is recognised
    jsonl.write_text(json.dumps({"image_url": "images/a.png", "label": "x", "images": []}) + "\n")
    assert not_jsonl_reason(jsonl) is None
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"image_url": "a.png",\n"label": "x"}\n')  # a bad row, not a document
    assert not_jsonl_reason(broken) is None
    pretty = tmp_path / "pretty.json"
    pretty.write_text('\ufeff{\n  "image_url": "a.png",\n  "label": "x"\n}\n', encoding="utf-8")
    assert "one JSON document (an object spread over several lines)" in not_jsonl_reason(pretty)
