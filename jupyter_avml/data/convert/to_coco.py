"""Records (a JSONL dataset) -> a COCO annotation dict / file, for tools that speak COCO (pycocotools' COCOeval,
FiftyOne, detectron2...).

Output
------
- ``images``: ``id`` 1..N in record order, ``file_name`` (relative to the json's folder for ``write_coco``,
  else the record's ``image_url``), ``width``/``height`` (from the record, else read from the image header);
- ``annotations``: ``id`` 1..M, ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]`` in pixels, ``area``
  (pixels: the polygon's rasterised area as COCO computes it, else ``w * h``), ``iscrowd``, and
  ``segmentation`` (polygons in pixels) for instances that have polygons;
- ``categories``: ``id`` 1..C in the order of ``class_names`` (default: the dataset's sorted classes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from jupyter_avml.data.records import ImageDataset, ImageRecord, sorted_classes
from jupyter_avml.errors import ConfigError, DataError
from jupyter_avml.fileio import atomic_write
from jupyter_avml.tasks import ImageTask


def to_coco(dataset: ImageDataset | Iterable[ImageRecord], task: ImageTask | str | None = None,
            class_names: list[str] | None = None, *, base_dir: str | os.PathLike | None = None) -> dict:
    """The COCO annotation dict of detection / instance segmentation records (see the module docstring).

    Parameters
    ----------
    dataset : an ``ImageDataset`` or records (fraction coordinates).
    task : the records' task; default ``dataset.task``.
    class_names : category order (ids 1..C); must contain every class the records use.
    base_dir : when given, ``file_name`` is the image path relative to this folder (for records whose image
        path is known), else the record's ``image_url``.

    Raises
    ------
    DataError
        an image size is unknown and the image cannot be read, a class is missing from ``class_names``, or a
        segmentation instance has no polygon (the problems are listed).
    """
    from jupyter_avml.data.masks import denormalize_polygons
    from jupyter_avml.data.writer import relative_url

    if task is None:
        if not isinstance(dataset, ImageDataset):
            raise ConfigError("to_coco needs the task of the records", field="task", value=None)
        task = dataset.task
    task = ImageTask.parse(task)
    if not task.has_boxes:
        raise ConfigError(f"COCO annotations hold boxes and polygons: {task.value} cannot be written as COCO",
                          field="task", value=task.value)
    records = list(dataset.records if isinstance(dataset, ImageDataset) else dataset)
    if class_names is None:
        class_names = dataset.classes if isinstance(dataset, ImageDataset) and dataset.classes \
            else sorted_classes(records)
    category = {name: i for i, name in enumerate(class_names, 1)}
    jsonl_dir = Path(dataset.source).parent if isinstance(dataset, ImageDataset) and dataset.source else None
    problems: list[str] = []
    images, annotations = [], []
    for image_id, record in enumerate(records, 1):
        path = _local_path(record, jsonl_dir)
        size = _size(record, path, problems)
        if size is None:
            continue
        width, height = size
        file_name = relative_url(path, Path(base_dir)) if base_dir is not None and path is not None \
            else record.image_url
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for index, obj in enumerate(record.label):
            if obj.label not in category:
                problems.append(f"{record.where}: label[{index}]: class not in class_names ({obj.label!r})")
                continue
            x, y = obj.top_x * width, obj.top_y * height
            w, h = (obj.bottom_x - obj.top_x) * width, (obj.bottom_y - obj.top_y) * height
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": category[obj.label],
                   "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(obj.is_crowd)}
            if obj.polygon:
                ann["segmentation"] = denormalize_polygons(obj.polygon, width, height)
                ann["area"] = _polygon_area(ann["segmentation"], width, height)
            elif task is ImageTask.IMAGE_INSTANCE_SEGMENTATION:
                problems.append(f"{record.where}: label[{index}]: instance without a polygon ({obj.label!r})")
                continue
            annotations.append(ann)
    if problems:
        raise DataError(f"cannot write COCO: {len(problems)} problem(s), first: {problems[0]}", problems=problems)
    return {
        "info": {"description": f"written by jupyter_avml ({task.value})"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": ""} for name, i in category.items()],
    }


def write_coco(dataset: ImageDataset | Iterable[ImageRecord], path: str | os.PathLike,
               task: ImageTask | str | None = None, class_names: list[str] | None = None) -> Path:
    """Write ``to_coco`` as a json file (``file_name`` relative to its folder); returns the path written.

    Written to a temporary name and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    data = to_coco(dataset, task, class_names, base_dir=path.parent)
    return atomic_write(path, lambda handle: json.dump(data, handle), binary=False)


def _local_path(record: ImageRecord, jsonl_dir: Path | None) -> Path | None:
    if record.path is not None:
        return Path(record.path)
    from jupyter_avml.data.urls import resolve_image_url

    base = jsonl_dir or (Path(record.source).parent if record.source else None)
    try:
        # Without a cache folder remote URLs are not fetched: they raise, and the record's image_url is kept.
        return resolve_image_url(record.image_url, base)
    except DataError:
        return None


def _size(record: ImageRecord, path: Path | None, problems: list[str]) -> tuple[int, int] | None:
    if record.width and record.height:
        return int(record.width), int(record.height)
    from jupyter_avml.data.images import image_size

    if path is None:
        problems.append(f"{record.where}: image_details: no width/height, and the image cannot be found "
                        f"locally to read them ({record.image_url!r})")
        return None
    try:
        return image_size(path)
    except DataError as exc:
        problems.append(f"{record.where}: image_details: no width/height, and reading the image failed: {exc}")
        return None


def _polygon_area(segments: list[list[float]], width: int, height: int) -> float:
    from pycocotools import mask as mask_utils

    usable = [seg for seg in segments if len(seg) >= 6]
    if not usable:
        return 0.0
    return float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(usable, int(height), int(width)))))
