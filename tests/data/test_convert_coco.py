"""COCO -> JSONL (boxes, polygons, RLE, crowd, empty images, dropped items) and JSONL -> COCO round trips."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from jupyter_avml.cli import convert as cli_convert
from jupyter_avml.data.convert import ConversionReport, convert, from_coco, to_coco, write_coco
from jupyter_avml.data.masks import denormalize_polygons, polygons_to_mask
from jupyter_avml.data.records import ImageDataset, ImageRecord, ObjectLabel
from jupyter_avml.data.validate import read_dataset
from jupyter_avml.errors import ConfigError, DataError
from jupyter_avml.tasks import ImageTask

DET = ImageTask.IMAGE_OBJECT_DETECTION
SEG = ImageTask.IMAGE_INSTANCE_SEGMENTATION


# ---- helpers shared by the converter tests ----------------------------------------------------------------

def make_image(path: Path, size: tuple[int, int] = (64, 48), color=(200, 30, 30)) -> Path:
    """A tiny image file (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def read_back(jsonl: Path, task: ImageTask) -> ImageDataset:
    """Read a written JSONL with the project's validating reader: every row must be valid, every image decode."""
    return read_dataset(jsonl, task, check_images=True)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="avml")
    cli_convert.register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(argv)
    return args.func(args)


def has(dropped: list[str], *parts: str) -> bool:
    """Some dropped item contains every one of ``parts``."""
    return any(all(part in item for part in parts) for item in dropped)


# ---- a synthetic COCO file --------------------------------------------------------------------------------

W, H = 64, 48


def _blob_mask() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[10:30, 20:40] = True
    mask[25:40, 30:34] = True
    return mask


def coco_fixture(root: Path) -> Path:
    images = root / "images"
    for name in ("poly.png", "rle.png", "crowd.png", "empty.png", "far.png", "clip.png"):
        make_image(images / name)
    blob = _blob_mask()
    compressed = mask_utils.encode(np.asfortranarray(blob.astype(np.uint8)))
    from tests.data.test_masks import uncompressed_counts

    data = {
        "images": [
            {"id": 1, "file_name": "poly.png", "width": W, "height": H},
            {"id": 2, "file_name": "rle.png", "width": W, "height": H},
            {"id": 3, "file_name": "crowd.png", "width": W, "height": H},
            {"id": 4, "file_name": "empty.png", "width": W, "height": H},
            {"id": 5, "file_name": "missing.png", "width": W, "height": H},
            {"id": 6, "file_name": "far.png", "width": W, "height": H},
            {"id": 7, "file_name": "clip.png", "width": W, "height": H},
        ],
        "categories": [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}, {"id": 11, "name": "unused"}],
        "annotations": [
            {"id": 100, "image_id": 1, "category_id": 7, "bbox": [8, 4, 24, 20], "iscrowd": 0, "area": 1,
             "segmentation": [[8, 4, 32, 4, 32, 24, 8, 24], [40, 30, 60, 30, 50, 44]]},
            {"id": 101, "image_id": 1, "category_id": 9, "bbox": [40, 30, 20, 14], "iscrowd": 0, "area": 1,
             "segmentation": [[40, 30, 60, 30, 60, 44, 40, 44]]},
            {"id": 102, "image_id": 2, "category_id": 9, "bbox": [20, 10, 20, 30], "iscrowd": 0, "area": 1,
             "segmentation": {"size": [H, W], "counts": compressed["counts"].decode("ascii")}},
            {"id": 103, "image_id": 3, "category_id": 7, "bbox": [20, 10, 20, 30], "iscrowd": 1, "area": 1,
             "segmentation": {"size": [H, W], "counts": uncompressed_counts(blob)}},
            {"id": 104, "image_id": 5, "category_id": 7, "bbox": [1, 1, 5, 5], "iscrowd": 0,
             "segmentation": [[1, 1, 6, 1, 6, 6]]},
            {"id": 105, "image_id": 6, "category_id": 7, "bbox": [50, 10, 40, 10], "iscrowd": 0,
             "segmentation": [[50, 10, 90, 10, 90, 20]]},
            {"id": 106, "image_id": 7, "category_id": 9, "bbox": [30.0, 20.0, 34.5, 28.4], "iscrowd": 0,
             "segmentation": [[30, 20, 64.5, 20, 64.5, 48.4, 30, 48.4]]},
            {"id": 107, "image_id": 7, "category_id": 42, "bbox": [1, 1, 2, 2], "iscrowd": 0},
            {"id": 108, "image_id": 99, "category_id": 7, "bbox": [1, 1, 2, 2], "iscrowd": 0},
            {"id": 109, "image_id": 7, "category_id": 7, "bbox": [5, 5, 10, 10], "iscrowd": 0},
        ],
    }
    path = root / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_detection_boxes_crowd_empty_images_and_drops(tmp_path):
    src = coco_fixture(tmp_path / "coco")
    out = tmp_path / "out" / "train.jsonl"
    report = convert("coco", src, out)
    assert isinstance(report, ConversionReport) and report.task is DET
    assert report.written == 5  # poly, rle, crowd, empty, clip
    assert report.classes == ["cat", "dog"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_name = {Path(r["image_url"]).name: r for r in rows}
    assert set(by_name) == {"poly.png", "rle.png", "crowd.png", "empty.png", "clip.png"}
    for row in rows:  # image_url resolves from the output's folder; details from the file
        assert (out.parent / row["image_url"]).resolve().is_file()
        assert row["image_details"] == {"format": "png", "width": W, "height": H}
    cat = by_name["poly.png"]["label"][0]
    assert cat["label"] == "cat" and cat["isCrowd"] == 0
    assert (cat["topX"], cat["topY"], cat["bottomX"], cat["bottomY"]) == (8 / W, 4 / H, 32 / W, 24 / H)
    assert by_name["crowd.png"]["label"][0]["isCrowd"] == 1
    assert by_name["empty.png"]["label"] == []
    clipped = by_name["clip.png"]["label"]
    assert len(clipped) == 2  # the box 0.5 px over the border is clamped, the unknown category dropped
    assert clipped[0]["bottomX"] == 1.0 and clipped[0]["bottomY"] == 1.0
    d = report.dropped
    assert has(d, "annotations.json", "image id 5", "missing.png", "not found")
    assert has(d, "annotations.json", "annotation id 105", "outside the image 64x48", "xmax=90")
    assert has(d, "image id 6", "far.png", "all 1 annotation(s) dropped")
    assert has(d, "annotation id 107", "category_id", "42")
    assert has(d, "annotation id 108", "image_id", "99")
    assert len(d) == 5
    assert any("unused" in note for note in report.notes)
    assert "wrote 5 image(s) with 6 object(s)" in report.summary()
    dataset = read_back(out, DET)
    assert len(dataset) == 5


def test_coco_instance_segmentation_polygons_rle_and_crowd(tmp_path):
    src = coco_fixture(tmp_path / "coco")
    records, dropped = from_coco(src, task=SEG)
    by_name = {Path(r.image_url).name: r for r in records}
    poly = by_name["poly.png"].label[0]
    assert len(poly.polygon) == 2  # both segments of the instance are kept
    assert poly.polygon[0] == (8 / W, 4 / H, 32 / W, 4 / H, 32 / W, 24 / H, 8 / W, 24 / H)
    assert poly.box == (8 / W, 4 / H, 60 / W, 44 / H)  # the extent of the polygon, as the JSONL reader computes
    blob = _blob_mask()
    for name, crowd in (("rle.png", False), ("crowd.png", True)):  # compressed and uncompressed RLE
        (instance,) = by_name[name].label
        assert instance.is_crowd is crowd
        back = polygons_to_mask(denormalize_polygons(instance.polygon, W, H), H, W)
        assert np.array_equal(back, blob), name
    assert not has(dropped, "annotation id 102") and not has(dropped, "annotation id 103")
    # The clip image's box-only annotation has no segmentation: dropped with a message.
    assert has(dropped, "annotation id 109", "no segmentation")
    out = tmp_path / "seg.jsonl"
    report = convert("coco", src, out, task="image-instance-segmentation")
    assert report.task is SEG and report.written == 5
    assert len(read_back(out, SEG)) == 5


def test_coco_round_trip_keeps_boxes_and_polygons(tmp_path):
    src = coco_fixture(tmp_path / "coco")
    original = json.loads(src.read_text())
    for task in (DET, SEG):
        out = tmp_path / f"{task.value}.jsonl"
        convert("coco", src, out, task=task)
        back = to_coco(read_back(out, task), task, base_dir=tmp_path / "coco" / "images")
        _assert_same_annotations(original, back, task)


def _assert_same_annotations(original: dict, back: dict, task: ImageTask) -> None:
    """Every annotation of ``back`` is one of ``original``: same image, class, crowd flag, and box (detection)
    or polygons (segmentation) within 1e-6 relative; values up to 1 px over the border come back clamped.
    RLE annotations (traced into polygons) are compared as masks elsewhere."""
    cats = {c["id"]: c["name"] for c in original["categories"]}
    names = {i["id"]: Path(i["file_name"]).name for i in original["images"]}
    sizes = {i["id"]: (i["width"], i["height"]) for i in original["images"]}
    back_cats = {c["id"]: c["name"] for c in back["categories"]}
    assert [c["id"] for c in back["categories"]] == list(range(1, len(back_cats) + 1))
    back_names = {i["id"]: Path(i["file_name"]).name for i in back["images"]}

    def expected_geometry(ann):
        width, height = sizes[ann["image_id"]]
        if task is DET:
            x, y, w, h = ann["bbox"]
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
            return [[x0, y0, x1 - x0, y1 - y0]]
        if not isinstance(ann.get("segmentation"), list):
            return None
        out = []
        for seg in ann["segmentation"]:
            a = np.asarray(seg, float)
            a[0::2], a[1::2] = np.clip(a[0::2], 0, width), np.clip(a[1::2], 0, height)
            out.append(a.tolist())
        return out

    compared = 0
    for ann in back["annotations"]:
        got = [ann["bbox"]] if task is DET else ann["segmentation"]
        matches = [a for a in original["annotations"]
                   if names.get(a["image_id"]) == back_names[ann["image_id"]]
                   and cats.get(a["category_id"]) == back_cats[ann["category_id"]]
                   and a.get("iscrowd", 0) == ann["iscrowd"]]
        assert matches, f"{back_names[ann['image_id']]}: {back_cats[ann['category_id']]} not in the original"
        geometries = [g for g in map(expected_geometry, matches) if g is not None]
        if task is SEG and not geometries:
            continue  # an RLE source
        assert any(len(g) == len(got) and all(_close(a, b, 1e-6) for a, b in zip(g, got, strict=True))
                   for g in geometries), (got, geometries)
        compared += 1
    assert compared > 0


def _close(a, b, rel: float) -> bool:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= rel * np.maximum(1.0, np.abs(a))))


def test_coco_images_folder_found_in_usual_layout_and_errors(tmp_path):
    root = tmp_path / "ds"
    make_image(root / "val2017" / "a.jpg")
    ann_dir = root / "annotations"
    ann_dir.mkdir(parents=True)
    src = ann_dir / "instances_val2017.json"
    src.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
                               "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
    records, dropped = from_coco(src)
    assert len(records) == 1 and records[0].path.parent.name == "val2017" and records[0].label == ()
    records, _ = from_coco(src, images_dir=root / "val2017")
    assert len(records) == 1
    (root / "val2017" / "a.jpg").unlink()
    with pytest.raises(DataError, match="instances_val2017.json: none of its images.*give the images folder"):
        from_coco(src)
    with pytest.raises(DataError, match=r"nope\.json: COCO annotation file not found"):
        from_coco(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"bad\.json:1: not a JSON file"):
        from_coco(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match=r"wrong\.json: not a COCO annotation file: no annotations / categories"):
        from_coco(wrong)
    with pytest.raises(ConfigError, match="image-classification"):
        from_coco(src, task="image-classification")


def test_to_coco_reads_sizes_from_the_image_and_checks_classes(tmp_path):
    image = make_image(tmp_path / "img" / "a.png", size=(40, 20))
    record = ImageRecord(str(image), (ObjectLabel("b", 0.25, 0.5, 0.75, 1.0, True),), path=image)
    data = to_coco([record], DET)
    assert data["images"] == [{"id": 1, "file_name": str(image), "width": 40, "height": 20}]
    (ann,) = data["annotations"]
    assert ann["bbox"] == [10.0, 10.0, 20.0, 10.0] and ann["area"] == 200.0 and ann["iscrowd"] == 1
    assert "segmentation" not in ann
    assert data["categories"] == [{"id": 1, "name": "b", "supercategory": ""}]
    with pytest.raises(DataError, match="class not in class_names"):
        to_coco([record], DET, class_names=["a"])
    with pytest.raises(ConfigError, match="image-classification cannot be written as COCO"):
        to_coco([record], "image-classification")
    missing = ImageRecord("nowhere/x.png", (), source=str(tmp_path / "t.jsonl"), line=3)
    with pytest.raises(DataError, match=r"t\.jsonl:3: image_details: no width/height"):
        to_coco([missing], DET)
    seg = ImageRecord(str(image), (ObjectLabel.from_polygon("b", ((0.0, 0.0, 0.5, 0.0, 0.5, 1.0),)),),
                      width=40, height=20, path=image)
    out = write_coco([seg], tmp_path / "coco" / "out.json", SEG)
    data = json.loads(out.read_text())
    assert data["images"][0]["file_name"] == "../img/a.png"
    (ann,) = data["annotations"]
    assert ann["segmentation"] == [[0.0, 0.0, 20.0, 0.0, 20.0, 20.0]]
    assert ann["area"] == pytest.approx(200.0, rel=0.1)  # rasterised triangle, as COCO measures it


def test_cli_convert_coco_prints_report_and_exits(tmp_path, capsys):
    src = coco_fixture(tmp_path / "coco")
    out = tmp_path / "cli.jsonl"
    assert run_cli(["convert", "coco", str(src), "-o", str(out), "--task", "image-instance-segmentation"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 5 image(s)" in printed and "annotation id 109" in printed
    coco_out = tmp_path / "back.json"
    assert run_cli(["convert", "jsonl", str(out), "-o", str(coco_out), "--task", "image-instance-segmentation"]) == 0
    back = json.loads(coco_out.read_text())
    assert len(back["images"]) == 5
    assert all((tmp_path / i["file_name"]).is_file() for i in back["images"])
    direct = tmp_path / "direct.json"
    assert run_cli(["convert", "coco", str(src), "-o", str(direct), "--to-coco"]) == 0
    assert len(json.loads(direct.read_text())["annotations"]) == 6
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"images": [{"id": 1, "file_name": "poly.png", "width": W, "height": H}],
                                 "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 500, 5]}],
                                 "categories": [{"id": 1, "name": "x"}]}))
    with pytest.raises(DataError, match="nothing could be converted"):
        run_cli(["convert", "coco", str(empty), "-o", str(tmp_path / "e.jsonl"), "--images",
                 str(tmp_path / "coco" / "images")])
    assert "outside the image" in capsys.readouterr().err
    assert not (tmp_path / "e.jsonl").exists()
    with pytest.raises(ConfigError, match="needs its task"):
        run_cli(["convert", "jsonl", str(out), "-o", str(tmp_path / "x.json")])
    with pytest.raises(ConfigError, match="unknown format 'pascal'"):
        run_cli(["convert", "pascal", str(src), "-o", str(tmp_path / "x.jsonl")])
    with pytest.raises(ConfigError, match="format coco does not take masks_dir"):
        run_cli(["convert", "coco", str(src), "-o", str(tmp_path / "x.jsonl"), "--masks", str(tmp_path)])


# ---- real data ----------------------------------------------------------------------------------------------

def test_real_coco_sample(shared_data, tmp_path):
    src = shared_data / "coco-sample" / "annotations.json"
    original = json.loads(src.read_text())
    out = tmp_path / "sample.jsonl"
    report = convert("coco", src, out, task=SEG)
    assert report.written == 6 and report.objects == 36 and report.dropped == []
    dataset = read_back(out, SEG)
    by_name = {Path(r.image_url).name: r for r in dataset.records}
    assert by_name["000000000089.jpg"].label == ()  # the image without annotations
    crowd = [obj for r in dataset.records for obj in r.label if obj.is_crowd]
    assert len(crowd) == 1 and crowd[0].label == "bottle" and crowd[0].polygon
    # the crowd RLE traced into polygons covers the same pixels
    rle_ann = next(a for a in original["annotations"] if isinstance(a["segmentation"], dict))
    img = next(i for i in original["images"] if i["id"] == rle_ann["image_id"])
    rle = mask_utils.frPyObjects(rle_ann["segmentation"], img["height"], img["width"])
    expected = mask_utils.decode(rle).astype(bool)
    back = polygons_to_mask(denormalize_polygons(crowd[0].polygon, img["width"], img["height"]),
                            img["height"], img["width"])
    assert (back & expected).sum() / (back | expected).sum() > 0.95
    two = [obj for r in dataset.records for obj in r.label if len(obj.polygon) == 2]
    assert len(two) == 1  # annotation 257712 has two segments
    for task in (DET, SEG):
        jsonl = tmp_path / f"rt-{task.value}.jsonl"
        convert("coco", src, jsonl, task=task)
        back_coco = to_coco(read_back(jsonl, task), task)
        _assert_same_annotations(original, back_coco, task)
