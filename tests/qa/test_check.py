"""The QA pass on the data alone: avml validate's numbers, in FiftyOne, with duplicates, tiny and degenerate boxes
and unreadable images tagged; what is kept can be registered (export) and trained on."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

from jupyter_avml.cli.main import main
from jupyter_avml.data.shapes import make_shapes
from jupyter_avml.qa import check_data, export
from jupyter_avml.qa.labels import GROUND_TRUTH

SIZE = 48


def _hostile_detection_file(tmp_path):
    """Shapes plus: a missing image, a truncated one, a copy of an image, a tiny box and a box under a pixel."""
    jsonl = make_shapes(tmp_path / "data", "image-object-detection", n=8, size=SIZE, seed=3, color_by_class=True)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    images = tmp_path / "data" / "images"
    (images / "truncated.png").write_bytes((images / "shape_00001.png").read_bytes()[:60])
    shutil.copy(images / "shape_00002.png", images / "copy.png")
    box = {"label": "circle", "topX": 0.1, "topY": 0.1, "bottomX": 0.2, "bottomY": 0.2}
    rows += [
        {"image_url": "images/missing.png", "label": [box]},
        {"image_url": "images/truncated.png", "label": [box]},
        {**rows[2], "image_url": "images/copy.png"},
    ]
    rows[0]["label"].append({"label": "square", "topX": 0.5, "topY": 0.5, "bottomX": 0.5 + 2 / SIZE,
                             "bottomY": 0.5 + 3 / SIZE})  # 2 x 3 px: tiny
    rows[1]["label"].append({"label": "square", "topX": 0.5, "topY": 0.5, "bottomX": 0.5 + 0.5 / SIZE,
                             "bottomY": 0.6})  # half a pixel wide: covers no pixel
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return jsonl


def test_the_data_alone_with_the_numbers_of_avml_validate(tmp_path, qa_workspace, fo_datasets):
    jsonl = _hostile_detection_file(tmp_path)
    check = check_data(jsonl, task="image-object-detection", progress=False)

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["validate", str(jsonl), "--task", "image-object-detection", "--json"])
    validated = json.loads(out.getvalue())
    counts = check.counts()
    assert status == 2 and not validated["ok"]
    assert (counts["rows"], counts["valid"], counts["problems"]) == (validated["rows"], validated["valid"],
                                                                      len(validated["problems"]))
    assert sorted(counts["class_counts"]) == validated["classes"]
    assert counts["rows"] == 11 and counts["valid"] == 9 and counts["rejected"] == 2
    assert str(check.report.format()) in repr(check)  # the same report as avml validate's text

    dataset = check.dataset
    assert len(dataset) == 11  # the 9 valid rows and the 2 unreadable ones, shown with their problems
    unreadable = dataset.match_tags("unreadable")
    assert sorted(unreadable.values("jsonl_line")) == [9, 10] and counts["unreadable_images"] == 2
    assert all("image" in problems[0] for problems in unreadable.values("problems"))
    assert counts["duplicate_images"] == 1 and dataset.match_tags("duplicate").first().jsonl_line == 11
    assert counts["tiny_objects"] == 1 and counts["degenerate_objects"] == 1
    assert dataset.count_label_tags(GROUND_TRUTH) == {"tiny": 1, "degenerate": 1}
    assert dataset.match_tags("tiny").values("jsonl_line") == [1]
    assert dataset.match_tags("degenerate").values("jsonl_line") == [2]
    assert counts["object_sides_px"]["min"] < 1.0

    # Checking the same file again reuses the dataset; what is kept registers as a dataset to train on.
    assert check_data(jsonl, task="image-object-detection", progress=False).dataset.name == dataset.name
    dataset.match_tags("duplicate").tag_samples("exclude")
    result = export(dataset)
    assert result.created and result.kept == 8 and result.version.name == jsonl.stem
    assert sum("unreadable image" in item for item in result.excluded) == 2
