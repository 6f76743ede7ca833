"""ImageRecord: a plain data class whose path may be given as text and always reads as a Path."""

from __future__ import annotations

import pickle
from pathlib import Path

from jupyter_avml.data.records import ImageRecord


def test_path_given_as_text_reads_as_a_path():
    record = ImageRecord("images/a.png", "cat")
    assert record.path is None
    record.path = "/data/./images/a.png"
    assert record.path == Path("/data/images/a.png") and isinstance(record.path, Path)
    assert record.path is record.path  # built once


def test_equality_repr_and_pickle():
    a = ImageRecord("a.png", ("x", "y"), 10, 8, "png", Path("/d/a.png"), "f.jsonl", 3)
    b = ImageRecord(image_url="a.png", label=("x", "y"), width=10, height=8, format="png", path="/d/a.png",
                    source="f.jsonl", line=3)
    assert a == b and a != ImageRecord("a.png", ("x", "y"))
    assert repr(a) == (f"ImageRecord(image_url='a.png', label=('x', 'y'), width=10, height=8, format='png', "
                       f"path={Path('/d/a.png')!r}, source='f.jsonl', line=3)")
    assert pickle.loads(pickle.dumps(b)) == a
    assert ImageRecord.__hash__ is None
