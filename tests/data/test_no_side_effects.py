"""Library code of the data and config packages changes nothing process-wide and uses no private stdlib API."""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path

import pytest
from PIL import Image

import jupyter_avml
from jupyter_avml.data.validate import validate_jsonl

PACKAGE = Path(jupyter_avml.__file__).parent
FORBIDDEN = re.compile(r"gc\.(disable|freeze|set_threshold)\(|sys\.setrecursionlimit\(|_make_child_relpath"
                       r"|os\.chdir\(|socket\.setdefaulttimeout\(")


@pytest.mark.parametrize("folder", ["data", "config"])
def test_no_process_wide_switches_or_private_pathlib(folder):
    found = [f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
             for path in sorted((PACKAGE / folder).rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if FORBIDDEN.search(line)]
    assert found == []


def test_validation_leaves_the_garbage_collector_alone(tmp_path, monkeypatch):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"image_url": f"{i}/a.png", "label": "ab"[i % 2]}) + "\n" for i in range(3000)))
    calls = []
    for name in ("disable", "enable", "freeze", "unfreeze", "set_threshold", "collect"):
        monkeypatch.setattr(gc, name, lambda *args, _name=name: calls.append(_name))
    assert validate_jsonl(path, "image-classification", check_images=False).ok
    assert calls == [] and gc.isenabled()
