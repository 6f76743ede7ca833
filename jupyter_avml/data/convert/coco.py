"""COCO annotation json -> records (object detection, or instance segmentation).

- ``bbox`` ``[x, y, w, h]`` in pixels -> fractions of the image's ``width``/``height`` (clipping rule in
  ``_common``).
- Instance segmentation: polygon segmentations are kept segment by segment; RLE segmentations (``counts`` as a
  list: uncompressed; as a string: compressed) are decoded with ``pycocotools.mask`` and traced into polygons
  (``masks.mask_to_polygons``). The box of an instance is the extent of its polygon, as the JSONL reader
  computes it. An annotation without a segmentation is dropped with a message.
- ``iscrowd`` -> ``isCrowd``. Category ids -> category names.
- An image without annotations becomes a row with an empty label list (valid for detection/segmentation);
  an image whose annotations were all dropped is dropped (see ``_common``).
- Images are looked up as ``file_name`` inside the images folder: given, else the first of ``images/`` beside
  the json, the json's folder, and for the usual ``annotations/instances_val2017.json`` layout ``../val2017``,
  ``../images/val2017``, ``../images`` and ``..`` that holds the images named.
- ``width``/``height`` of the json are the frame the annotations were drawn in; the image file must have the
  same aspect ratio (a proportional resize is fine).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from jupyter_avml.data.convert._common import (
    Converted,
    Skip,
    check_aspect,
    make_record,
    probe_image,
    require_dir,
    require_file,
    to_fraction_box,
    to_fraction_polygon,
)
from jupyter_avml.data.records import ObjectLabel
from jupyter_avml.errors import ConfigError, DataError
from jupyter_avml.tasks import ImageTask

_BOX_TASKS = (ImageTask.IMAGE_OBJECT_DETECTION, ImageTask.IMAGE_INSTANCE_SEGMENTATION)


def from_coco(json_path: str | os.PathLike, *, images_dir: str | os.PathLike | None = None,
              task: ImageTask | str | None = None) -> Converted:
    """Read a COCO annotation file (see the module docstring for the rules).

    Returns a ``Converted`` (unpacks as ``records, dropped``).

    Raises
    ------
    DataError
        the file is missing, not JSON, not a COCO annotation file, or none of its images can be found.
    ConfigError
        ``task`` is a classification task.
    """
    json_path = require_file(json_path, "COCO annotation file")
    task = ImageTask.parse(task) if task is not None else ImageTask.IMAGE_OBJECT_DETECTION
    if task not in _BOX_TASKS:
        raise ConfigError(f"COCO converts to {' or '.join(t.value for t in _BOX_TASKS)}, not {task.value}",
                          field="task", value=task.value)
    data = _load(json_path)
    name = str(json_path)
    dropped: list[str] = []

    categories: dict = {}
    for index, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat:
            dropped.append(f"{name}: categories[{index}]: not an object with an id ({_short(cat)})")
            continue
        categories[cat["id"]] = str(cat.get("name", cat["id"]))

    images: dict = {}
    order: list = []
    for index, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            dropped.append(f"{name}: images[{index}]: not an object with an id and a file_name ({_short(img)})")
            continue
        if img["id"] in images:
            dropped.append(f"{name}: images[{index}]: image id {img['id']} appears again ({img['file_name']})")
            continue
        images[img["id"]] = img
        order.append(img["id"])
    if not images:
        raise DataError(f"{json_path}: the COCO file lists no usable image")

    by_image: dict = {image_id: [] for image_id in order}
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            dropped.append(f"{name}: annotations[{index}]: not an object ({_short(ann)})")
            continue
        where = f"{name}: annotation id {ann.get('id', f'[{index}]')}"
        if ann.get("image_id") not in images:
            dropped.append(f"{where}: image_id is not an image of the file ({_short(ann.get('image_id'))})")
            continue
        if ann.get("category_id") not in categories:
            dropped.append(f"{where}: category_id is not a category of the file ({_short(ann.get('category_id'))})")
            continue
        by_image[ann["image_id"]].append((where, ann))

    root = _images_root(json_path, [images[i]["file_name"] for i in order], images_dir)
    records = []
    for image_id in order:
        img = images[image_id]
        where = f"{name}: image id {image_id} ({img['file_name']})"
        try:
            path = _image_path(root, img["file_name"])
            actual = probe_image(path)
            frame = _frame(img, actual)
        except Skip as exc:
            count = len(by_image[image_id])
            dropped.append(f"{where}: {exc}; the image and its {count} annotation(s) dropped")
            continue
        objects = []
        for ann_where, ann in by_image[image_id]:
            try:
                objects.append(_object(ann, categories[ann["category_id"]], frame, task, ann_where, dropped))
            except Skip as exc:
                dropped.append(f"{ann_where} (image {img['file_name']}): {exc}")
        if by_image[image_id] and not objects:
            dropped.append(f"{where}: all {len(by_image[image_id])} annotation(s) dropped, so the image is dropped "
                           "(an empty label would say it shows no object)")
            continue
        records.append(make_record(path, tuple(objects), actual, json_path))
    used = {categories[a["category_id"]] for anns in by_image.values() for _, a in anns}
    declared = [categories[k] for k in sorted(categories, key=_sort_key)]
    notes = []
    unused = [c for c in declared if c not in used]
    if unused:
        notes.append(f"{len(unused)} categories of {name} have no annotation: {', '.join(unused[:20])}"
                     + (" ..." if len(unused) > 20 else ""))
    return Converted(records, dropped, task, declared, notes)


def _load(json_path: Path) -> dict:
    try:
        with open(json_path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(f"{json_path}:{exc.lineno}: not a JSON file: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{json_path}: not a JSON text file: {exc.reason}") from None
    except RecursionError:  # the JSON parser recurses once per level
        raise DataError(f"{json_path}: not a COCO annotation file: nested too deeply") from None
    if not isinstance(data, dict):
        raise DataError(f"{json_path}: not a COCO annotation file: expected a JSON object with images, "
                        f"annotations and categories, got a {type(data).__name__}")
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data.get(key), list)]
    if missing:
        raise DataError(f"{json_path}: not a COCO annotation file: no {' / '.join(missing)} list "
                        f"(keys found: {', '.join(sorted(data)) or 'none'})")
    return data


def _images_root(json_path: Path, file_names: list[str], images_dir) -> Path:
    if images_dir is not None:
        return require_dir(images_dir, "images folder")
    here = json_path.parent
    up = here.parent
    split = json_path.stem.rsplit("_", 1)[-1]  # instances_val2017 -> val2017
    candidates = [here / "images", here, up / split, up / "images" / split, up / "images", up]
    sample = file_names[:50]
    best, best_hits = None, 0
    for folder in dict.fromkeys(candidates):
        if not folder.is_dir():
            continue
        hits = sum(1 for f in sample if _exists(folder, f))
        if hits > best_hits:
            best, best_hits = folder, hits
    if best is None:
        tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
        raise DataError(f"{json_path}: none of its images (e.g. {sample[0]!r}) is in {tried}; "
                        "give the images folder (images_dir=..., --images DIR)")
    return best


def _exists(folder: Path, file_name: str) -> bool:
    return (folder / file_name).is_file() or (folder / Path(file_name).name).is_file()


def _image_path(root: Path, file_name: str) -> Path:
    path = root / file_name
    if path.is_file():
        return path
    # Some exports write a folder prefix (``val2017/x.jpg``) that the images folder already is.
    flat = root / Path(file_name.replace("\\", "/")).name
    if flat.is_file():
        return flat
    raise Skip(f"image file not found in {root}")


def _frame(img: dict, actual: tuple[int, int]) -> tuple[float, float]:
    """The (width, height) the annotations were drawn in: the json's, checked against the file's."""
    width, height = img.get("width"), img.get("height")
    if width is None and height is None:
        return float(actual[0]), float(actual[1])
    try:
        width, height = float(width), float(height)
    except (TypeError, ValueError):
        raise Skip(f"width/height are not numbers ({_short(img.get('width'))}, {_short(img.get('height'))})") \
            from None
    if not (width > 0 and height > 0):
        raise Skip(f"width/height must be positive ({_short(img.get('width'))}, {_short(img.get('height'))})")
    check_aspect((width, height), actual)
    return width, height


def _object(ann: dict, label: str, frame: tuple[float, float], task: ImageTask, where: str,
            dropped: list[str]) -> ObjectLabel:
    width, height = frame
    crowd = _crowd(ann.get("iscrowd", 0))
    if task is ImageTask.IMAGE_OBJECT_DETECTION:
        bbox = ann.get("bbox")
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
            raise Skip(f"bbox must be a list [x, y, w, h] ({_short(bbox)})")
        try:
            x, y, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError):
            raise Skip(f"bbox holds a value that is not a number ({_short(bbox)})") from None
        if w < 0 or h < 0:
            raise Skip(f"bbox has a negative width or height ({_short(bbox)})")
        return ObjectLabel(label, *to_fraction_box(x, y, x + w, y + h, width, height), is_crowd=crowd)
    segmentation = ann.get("segmentation")
    if not segmentation:
        raise Skip("no segmentation (instance segmentation needs a polygon or an RLE mask)")
    notes: list[str] = []
    if isinstance(segmentation, dict):
        segments = _rle_polygons(segmentation, width, height)
    elif isinstance(segmentation, list):
        if all(isinstance(v, (int, float)) for v in segmentation):
            segmentation = [segmentation]  # one flat segment written without the outer list
        segments = segmentation
    else:
        raise Skip(f"segmentation must be a list of polygons or an RLE object ({_short(segmentation)})")
    polygon = to_fraction_polygon(segments, width, height, notes)
    dropped.extend(f"{where}: {note}" for note in notes)
    return ObjectLabel.from_polygon(label, polygon, is_crowd=crowd)


def _rle_polygons(rle: dict, width: float, height: float) -> list[list[float]]:
    from jupyter_avml.data.masks import mask_to_polygons, rle_to_mask

    if not (float(width).is_integer() and float(height).is_integer()):
        raise Skip(f"an RLE mask needs an integer image size, got {width:g}x{height:g}")
    try:
        mask = rle_to_mask(rle, int(height), int(width))
    except (ValueError, TypeError) as exc:
        raise Skip(f"RLE segmentation cannot be decoded: {exc}") from None
    polygons = mask_to_polygons(mask)
    if not polygons:
        raise Skip(f"RLE segmentation has no region of at least a few pixels ({int(mask.sum())} pixels set)")
    return polygons


def _crowd(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _sort_key(value):
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
