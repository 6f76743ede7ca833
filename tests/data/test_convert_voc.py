"""Pascal VOC -> JSONL: folder conventions, image lookup, dropped items, instance masks; the raccoon set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jupyter_avml.data.convert import convert, from_voc
from jupyter_avml.data.masks import denormalize_polygons, polygons_to_mask
from jupyter_avml.errors import ConfigError, DataError
from jupyter_avml.tasks import ImageTask
from tests.data.test_convert_coco import has, make_image, read_back, run_cli

DET = ImageTask.IMAGE_OBJECT_DETECTION
SEG = ImageTask.IMAGE_INSTANCE_SEGMENTATION


def voc_xml(path: Path, filename: str | None, objects: list[tuple], size: tuple[int, int] | None = (64, 48),
            other_path: str = "/home/someone/else/x.jpg") -> Path:
    """objects: (name, xmin, ymin, xmax, ymax[, difficult])."""
    parts = ["<annotation>", "<folder>JPEGImages</folder>"]
    if filename is not None:
        parts.append(f"<filename>{filename}</filename>")
    parts.append(f"<path>{other_path}</path>")
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for obj in objects:
        name, xmin, ymin, xmax, ymax, *rest = obj
        difficult = rest[0] if rest else 0
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>1</truncated>"
                     f"<difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
                     f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")
    parts.append("</annotation>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path


def voc_fixture(root: Path, ann: str = "Annotations", img: str = "JPEGImages") -> Path:
    a, i = root / ann, root / img
    make_image(i / "good.jpg")
    voc_xml(a / "good.xml", "good.jpg", [("cat", 8, 4, 32, 24), ("dog", 40, 30, 64, 48, 1)])
    make_image(i / "noext.png")
    voc_xml(a / "noext.xml", "noext", [("cat", 1, 1, 10, 10)])
    voc_xml(a / "missing.xml", "missing.jpg", [("cat", 1, 1, 10, 10)])
    make_image(i / "degenerate.jpg")
    voc_xml(a / "degenerate.xml", "degenerate.jpg", [("cat", 10, 5, 10, 20), ("dog", 2, 2, 20, 20)])
    make_image(i / "outside.jpg")
    voc_xml(a / "outside.xml", "outside.jpg", [("cat", 30, 10, 100, 20)])
    make_image(i / "clip.jpg")
    voc_xml(a / "clip.xml", "clip.jpg", [("dog", 0, 0, 65, 49)])  # 1-based xmax = width + 1: clamped
    (a / "broken.xml").write_text("<annotation><filename>good.jpg</filename><object>")
    make_image(i / "empty.jpg")
    voc_xml(a / "empty.xml", "empty.jpg", [])
    make_image(i / "nosize.jpg", size=(32, 32))
    voc_xml(a / "nosize.xml", "nosize.jpg", [("cat", 0, 0, 16, 16)], size=None)
    make_image(i / "rotated.jpg", size=(48, 64))
    voc_xml(a / "rotated.xml", "rotated.jpg", [("cat", 0, 0, 16, 16)])
    make_image(i / "noname.jpg")
    (a / "noname.xml").write_text("<annotation><size><width>64</width><height>48</height></size><object>"
                                  "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
                                  "</object></annotation>")
    return root


@pytest.mark.parametrize("ann,img", [("Annotations", "JPEGImages"), ("annotations", "images"),
                                     ("ANNOTATIONS", "Images")])
def test_voc_detection_folders_lookup_and_drops(tmp_path, ann, img):
    src = voc_fixture(tmp_path / "voc", ann, img)
    out = tmp_path / "out" / "voc.jsonl"
    report = convert("voc", src, out)
    assert report.task is DET
    rows = {Path(r["image_url"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"good.jpg", "noext.png", "degenerate.jpg", "clip.jpg", "empty.jpg", "nosize.jpg"}
    assert report.written == 6 and report.objects == 6
    for row in rows.values():
        assert (out.parent / row["image_url"]).resolve().is_file()
    good = rows["good.jpg"]
    assert good["image_details"] == {"format": "jpg", "width": 64, "height": 48}
    cat, dog = good["label"]
    assert (cat["topX"], cat["topY"], cat["bottomX"], cat["bottomY"]) == (8 / 64, 4 / 48, 32 / 64, 24 / 48)
    assert dog["isCrowd"] == 0  # difficult is kept as an ordinary box
    assert rows["noext.png"]["image_details"]["format"] == "png"
    assert [o["label"] for o in rows["degenerate.jpg"]["label"]] == ["dog"]
    assert rows["clip.jpg"]["label"][0]["bottomX"] == 1.0 and rows["clip.jpg"]["label"][0]["bottomY"] == 1.0
    assert rows["empty.jpg"]["label"] == []
    assert rows["nosize.jpg"]["label"][0]["bottomX"] == 0.5  # size read from the image header
    d = report.dropped
    assert has(d, "missing.xml", "'missing.jpg' not found")
    assert has(d, "degenerate.xml", "object 1 (cat)", "zero width", "xmin=10, ymin=5, xmax=10")
    assert has(d, "outside.xml", "object 1 (cat)", "outside the image 64x48", "xmax=100")
    assert has(d, "outside.xml", "all 1 object(s) dropped")
    assert has(d, "broken.xml", "malformed XML at line 1")
    assert has(d, "rotated.xml", "64x48 does not match the image file's 48x64")
    assert has(d, "noname.xml", "object 1", "no <name>")
    assert len(d) == 8
    assert len(read_back(out, DET)) == 6


def test_voc_explicit_folders_and_errors(tmp_path):
    make_image(tmp_path / "pics" / "a.jpg")
    voc_xml(tmp_path / "xmls" / "a.xml", "a.jpg", [("cat", 1, 1, 10, 10)])
    records, dropped = from_voc(tmp_path, images_dir=tmp_path / "pics", annotations_dir=tmp_path / "xmls")
    assert len(records) == 1 and dropped == [] and records[0].label[0].label == "cat"
    with pytest.raises(DataError, match=r"nowhere: Pascal VOC dataset folder not found"):
        from_voc(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"no annotations folder \(Annotations or annotations\)"):
        from_voc(tmp_path)
    with pytest.raises(DataError, match=r"nope: images folder not found"):
        from_voc(tmp_path, images_dir=tmp_path / "nope", annotations_dir=tmp_path / "xmls")
    with pytest.raises(ConfigError, match="image-classification"):
        from_voc(tmp_path, annotations_dir=tmp_path / "xmls", task="image-classification")
    with pytest.raises(ConfigError, match="not image-object-detection"):
        from_voc(tmp_path, annotations_dir=tmp_path / "xmls", masks_dir=tmp_path, task=DET)


def _instance_png(path: Path, instances: np.ndarray, palette: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(instances.astype(np.uint8), mode="L")
    if palette:
        im = im.convert("P")
        im.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256)])
    im.save(path)
    return path


def _two_people() -> np.ndarray:
    inst = np.zeros((48, 64), np.uint8)
    inst[5:40, 5:20] = 1
    inst[10:45, 30:50] = 2
    inst[8:12, 55:57] = 3  # 8 px: an instance with no <object> when the xml lists two
    return inst


def test_voc_pedmasks_without_xml_use_the_label_option(tmp_path):
    root = tmp_path / "PennFudan"
    make_image(root / "PNGImages" / "FudanPed00001.png")
    make_image(root / "PNGImages" / "FudanPed00002.png")
    inst = _two_people()
    _instance_png(root / "PedMasks" / "FudanPed00001_mask.png", inst, palette=False)
    _instance_png(root / "PedMasks" / "FudanPed00002_mask.png", np.zeros((24, 32)), palette=False)
    out = tmp_path / "ped.jsonl"
    report = convert("voc", root, out, masks_dir=root / "PedMasks", label="person")
    assert report.task is SEG and report.written == 1 and report.objects == 3
    assert has(report.dropped, "FudanPed00002_mask.png", "mask size 32x24 differs from the image's 64x48")
    (record,) = read_back(out, SEG).records
    for value, obj in zip((1, 2, 3), record.label, strict=True):
        assert obj.label == "person" and not obj.is_crowd
        back = polygons_to_mask(denormalize_polygons(obj.polygon, 64, 48), 48, 64)
        assert np.array_equal(back, inst == value)
    records, dropped = from_voc(root, masks_dir=root / "PedMasks")
    assert records == [] and has(dropped, "FudanPed00001_mask.png", "no xml annotation", "--label")
    with pytest.raises(DataError, match="nothing could be converted"):
        convert("voc", root, tmp_path / "none.jsonl", masks_dir=root / "PedMasks")


def test_voc_segmentation_object_palette_pngs_match_the_kth_object(tmp_path):
    root = tmp_path / "VOC2012"
    make_image(root / "JPEGImages" / "2007_000001.jpg")
    voc_xml(root / "Annotations" / "2007_000001.xml", "2007_000001.jpg",
            [("person", 5, 5, 20, 40), ("bicycle", 30, 10, 50, 45), ("dog", 1, 1, 3, 3)])
    inst = _two_people()
    inst[inst == 3] = 0
    inst[4, 4:22] = 255  # VOC's void boundary is ignored
    _instance_png(root / "SegmentationObject" / "2007_000001.png", inst, palette=True)
    make_image(root / "JPEGImages" / "nomask.jpg")
    voc_xml(root / "Annotations" / "nomask.xml", "nomask.jpg", [("cat", 1, 1, 9, 9)])
    out = tmp_path / "seg.jsonl"
    report = convert("voc", root, out, task=SEG)  # the SegmentationObject folder is found by name
    assert report.written == 1
    (record,) = read_back(out, SEG).records
    assert [o.label for o in record.label] == ["person", "bicycle"]
    back = polygons_to_mask(denormalize_polygons(record.label[1].polygon, 64, 48), 48, 64)
    assert np.array_equal(back, inst == 2)
    assert has(report.dropped, "2007_000001.xml", "object 3 (dog)", "no pixels of value 3")
    assert has(report.dropped, "1 annotation file(s) have no instance mask", "Annotations/nomask.xml")
    # an instance with no matching <object>
    inst[40:44, 55:60] = 3
    voc_xml(root / "Annotations" / "2007_000001.xml", "2007_000001.jpg",
            [("person", 5, 5, 20, 40), ("bicycle", 30, 10, 50, 45)])
    _instance_png(root / "SegmentationObject" / "2007_000001.png", inst, palette=True)
    records, dropped = from_voc(root, task=SEG)
    assert has(dropped, "2007_000001.png", "instance 3 has no <object> number 3")
    (root / "SegmentationObject").rename(root / "elsewhere")
    with pytest.raises(DataError, match=r"VOC2012: instance segmentation needs .* no SegmentationObject, PedMasks, "
                                        r"masks folder"):
        from_voc(root, task=SEG)


def test_cli_voc(tmp_path, capsys):
    src = voc_fixture(tmp_path / "voc")
    out = tmp_path / "cli.jsonl"
    assert run_cli(["convert", "voc", str(src), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote 6 image(s) with 6 object(s) for image-object-detection" in printed
    assert "broken.xml: malformed XML" in printed


def test_real_raccoon(shared_data, tmp_path):
    out = tmp_path / "deep" / "raccoon.jsonl"
    report = convert("voc", shared_data / "raccoon", out)
    assert (report.written, report.objects, report.dropped, report.classes) == (200, 217, [], ["raccoon"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 200 and sum(len(r["label"]) for r in rows) == 217
    for row in rows:
        assert (out.parent / row["image_url"]).resolve().is_file()
        assert row["image_details"]["format"] == "jpg"
        for box in row["label"]:
            coords = [box["topX"], box["topY"], box["bottomX"], box["bottomY"]]
            assert all(0.0 <= c <= 1.0 for c in coords)
            assert box["topX"] < box["bottomX"] and box["topY"] < box["bottomY"]
    dataset = read_back(out, DET)
    assert len(dataset) == 200 and dataset.classes == ["raccoon"]
