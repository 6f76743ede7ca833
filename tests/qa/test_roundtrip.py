"""The four tasks into FiftyOne and back: labels equal, boxes to 1e-6, masks and polygons at IoU >= 0.99; one dataset
per registered version, reused; rows mapped back to their file and line; exact duplicates found at import."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from jupyter_avml.data.dataset_registry import get_dataset
from jupyter_avml.data.masks import denormalize_polygons, polygons_to_mask
from jupyter_avml.data.shapes import make_shapes
from jupyter_avml.qa import export, to_fiftyone
from jupyter_avml.qa.labels import GROUND_TRUTH
from jupyter_avml.tasks import ImageTask

TASKS = ["image-classification", "image-classification-multilabel", "image-object-detection",
         "image-instance-segmentation"]


def _polygon_iou(a, b, width: int, height: int) -> float:
    first = polygons_to_mask(denormalize_polygons(a, width, height), height, width)
    second = polygons_to_mask(denormalize_polygons(b, width, height), height, width)
    union = np.logical_or(first, second).sum()
    return float(np.logical_and(first, second).sum() / union) if union else 1.0


@pytest.mark.parametrize("task", TASKS)
def test_four_tasks_to_fiftyone_and_back(task, tmp_path, qa_workspace, fo_datasets):
    jsonl = make_shapes(tmp_path / "data", task, n=8, size=40, seed=11, color_by_class=True, max_objects=3)
    if task == "image-object-detection":  # a crowd object must survive the trip
        lines = jsonl.read_text().splitlines()
        row = json.loads(lines[0])
        row["label"][0]["isCrowd"] = 1
        lines[0] = json.dumps(row)
        jsonl.write_text("\n".join(lines) + "\n")
    dataset = to_fiftyone(jsonl, task=task, progress=False)
    version = get_dataset(jsonl.stem)
    originals = version.records()
    assert len(dataset) == len(originals) == 8
    assert sorted(dataset.distinct("tags")) == ["train", "validation"]
    assert dataset.info["avml"]["reference"] == version.reference and dataset.info["avml"]["complete"]

    # Each sample names its row: the file given and its line, and the snapshot row.
    given = [json.loads(line) for line in jsonl.read_text().splitlines()]
    for sample in dataset.iter_samples():
        assert sample.jsonl_file == str(jsonl.resolve())
        row = given[sample.jsonl_line - 1]
        assert (tmp_path / "data" / row["image_url"]).resolve() == originals[sample.avml_row].path
        assert sample.filepath == str(originals[sample.avml_row].path)

    # Labels as FiftyOne holds them
    by_row = {s.avml_row: s for s in dataset.iter_samples()}
    for row, record in enumerate(originals):
        label = by_row[row][GROUND_TRUTH]
        if task == "image-classification":
            assert label.label == record.label
        elif task == "image-classification-multilabel":
            assert [c.label for c in label.classifications] == list(record.label)
        else:
            assert [d.label for d in label.detections] == [o.label for o in record.label]
            assert [bool(d["iscrowd"]) for d in label.detections] == [o.is_crowd for o in record.label]
            if task == "image-object-detection":
                for detection, obj in zip(label.detections, record.label, strict=True):
                    x, y, w, h = detection.bounding_box
                    assert np.allclose([x, y, x + w, y + h], obj.box, atol=1e-6)
    if task == "image-object-detection":
        assert any(d["iscrowd"] for d in by_row[0][GROUND_TRUTH].detections)

    # ... and back: an edit of every object's form converts back within the tolerances.
    if task in ("image-object-detection", "image-instance-segmentation"):
        from jupyter_avml.qa.labels import detection_to_object

        for row, record in enumerate(originals):
            for detection, obj in zip(by_row[row][GROUND_TRUTH].detections, record.label, strict=True):
                back = detection_to_object(detection, ImageTask.parse(task), 40, 40)
                assert back.label == obj.label and back.is_crowd == obj.is_crowd
                if task == "image-object-detection":
                    assert np.allclose(back.box, obj.box, atol=1e-6)
                else:
                    assert _polygon_iou(back.polygon, obj.polygon, 40, 40) >= 0.99

    # Unchanged, the export is the registered version itself; every label comes back equal.
    result = export(dataset)
    assert not result.created and result.version.version == version.version
    assert not result.excluded and not result.relabeled

    # Running again reuses the dataset; a changed file is a new version and a new dataset.
    again = to_fiftyone(jsonl, task=task, progress=False)
    assert again.name == dataset.name and len(fo_datasets.list_datasets()) == 1
    lines = jsonl.read_text().splitlines()
    jsonl.write_text("\n".join(lines[:-1]) + "\n")
    changed = to_fiftyone(jsonl, task=task, progress=False)
    assert changed.name != dataset.name and len(changed) == 7
    assert changed.info["avml"]["version"] == version.version + 1


def test_exact_duplicates_are_tagged_at_import_and_the_split_follows_its_settings(tmp_path, qa_workspace, fo_datasets):
    jsonl = make_shapes(tmp_path / "data", "image-classification", n=10, size=32, seed=2, color_by_class=True)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    copy = tmp_path / "data" / "images" / "copy.png"
    shutil.copy(tmp_path / "data" / rows[3]["image_url"], copy)
    rows.append({**rows[3], "image_url": "images/copy.png"})
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = to_fiftyone(jsonl, task="image-classification", progress=False)
    duplicates = dataset.match_tags("duplicate")
    assert len(duplicates) == 1 and duplicates.first().filepath == str(copy.resolve())
    assert duplicates.first().duplicate_of == str((tmp_path / "data" / rows[3]["image_url"]).resolve())
    assert dataset.count_sample_tags()["validation"] == 3  # split_ratio 0.2, stratified (ceil per class)

    retagged = to_fiftyone(jsonl, task="image-classification", progress=False, split_ratio=0.5, seed=1)
    assert retagged.name == dataset.name
    assert retagged.count_sample_tags()["validation"] >= 5
    assert retagged.info["avml"]["split_ratio"] == 0.5
