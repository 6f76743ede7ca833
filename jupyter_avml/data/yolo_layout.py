"""JSONL records -> the dataset folder ultralytics reads, cached in the workspace.

Layout of ``<workspace>/cache/yolo/<digest>/``::

    data.yaml                  names (index -> class), nc, train: images/train, val: images/val
    images/train/000000.jpg    one file per training record, in record order
    labels/train/000000.txt    one line per object: "class x_centre y_centre width height"
    images/val/..., labels/val/...

Labels: the class index is the position of the class in ``class_names``; the box is our fractions turned
into ultralytics' normalised centre/size (``x_centre = (topX + bottomX) / 2``, ``width = bottomX - topX``),
clipped to [0, 1]. A record without objects gets an empty label file (a background image for ultralytics).

Crowd boxes (``isCrowd: 1``) are left out of the label files: ultralytics has no crowd notion, and a crowd
box describes a region of many instances, not one object to regress (ultralytics' own COCO converter and
detectron2 drop them the same way). Our evaluation still sees them, with the crowd rule of
``jupyter_avml.metrics.detection``, because it reads the records, not this folder.

Images are hard links to the record's file (a symbolic link when hard links fail, e.g. across devices, a
copy when both fail), named by index with the extension of their actual format. A file that ultralytics
would decode differently from our decoder (``jupyter_avml.data.images.load_image``) is written instead as
a PNG decoded by ours: EXIF-rotated files, transparency (ours composites over white, OpenCV drops alpha),
16-bit, palette, CMYK and other modes, formats outside JPEG/PNG/BMP/WebP, and JPEGs that do not end with
the end-of-image marker (e.g. trailing bytes: ultralytics calls them corrupt and rewrites them). So training
sees the pixels that evaluation and inference see.

Cache key (``digest``): a SHA-256 of the layout version, the class names and, per split and record, the
image file's absolute path, size and modification time and the label lines. The same records give the
same folder, reused by every later run; a changed file (size or mtime), label or class list gives a new
one. The folder is built under a temporary name in ``cache/yolo`` and renamed into place, so a folder
named by a digest is always complete, and concurrent builders of the same digest both end with it.
ultralytics adds its own ``labels/*.cache`` files there on first read (written atomically by it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jupyter_avml.data.records import ImageRecord, ObjectLabel
from jupyter_avml.errors import DataError

log = logging.getLogger(__name__)

LAYOUT_VERSION = "jupyter_avml.yolo-layout/1"
SPLITS = ("train", "val")
DATA_YAML = "data.yaml"

# PIL format -> file extension, for the files ultralytics (OpenCV) decodes as we do.
_LINKABLE_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp"}
_LINKABLE_MODES = frozenset({"RGB", "L"})


@dataclass(frozen=True)
class YoloLayout:
    """A dataset folder in ultralytics' layout.

    Attributes
    ----------
    root : Path
        ``<cache>/yolo/<digest>``.
    digest : str
        The content hash naming the folder (see the module docstring).
    class_names : list[str]
        Class names in index order (as in ``data.yaml``).
    reused : bool
        True when the folder already existed (nothing was written).
    """

    root: Path
    digest: str
    class_names: list[str]
    reused: bool

    @property
    def data_yaml(self) -> Path:
        return self.root / DATA_YAML

    def images_dir(self, split: str) -> Path:
        return self.root / "images" / split

    def labels_dir(self, split: str) -> Path:
        return self.root / "labels" / split


def label_lines(record: ImageRecord, class_index: dict[str, int]) -> list[str]:
    """The YOLO label lines of one detection record (crowd and empty boxes left out, see the module docstring)."""
    lines = []
    for obj in record.label:
        if not isinstance(obj, ObjectLabel):
            raise DataError(f"{record.where}: a YOLO layout needs object labels, got {obj!r}")
        if obj.is_crowd:
            continue
        x0, y0, x1, y1 = (min(1.0, max(0.0, v)) for v in obj.box)
        width, height = x1 - x0, y1 - y0
        if width <= 0 or height <= 0:
            continue
        if obj.label not in class_index:
            raise DataError(f"{record.where}: class {obj.label!r} is not one of the run's classes "
                            f"({', '.join(class_index)})")
        lines.append(f"{class_index[obj.label]} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {width:.6f} {height:.6f}")
    return lines


def layout_digest(splits: dict[str, Sequence[ImageRecord]], class_names: Sequence[str]) -> str:
    """The cache key of a layout: see the module docstring."""
    class_index = {name: i for i, name in enumerate(class_names)}
    digest = hashlib.sha256()
    digest.update(json.dumps([LAYOUT_VERSION, list(class_names)]).encode())
    for split in SPLITS:
        digest.update(f"\n[{split}]".encode())
        for record in splits[split]:
            path = _image_path(record)
            try:
                info = path.stat()
            except OSError as exc:
                raise DataError(f"{record.where}: cannot read image {path}: {exc.strerror or exc}") from None
            digest.update(json.dumps([str(path), info.st_size, info.st_mtime_ns,
                                      label_lines(record, class_index)]).encode())
    return digest.hexdigest()[:32]


def build_yolo_layout(train: Sequence[ImageRecord], valid: Sequence[ImageRecord], class_names: Sequence[str],
                      cache_dir: str | os.PathLike) -> YoloLayout:
    """The layout of these records under ``<cache_dir>/yolo/<digest>``, built when absent (see the module docstring).

    Parameters
    ----------
    train, valid
        Detection records whose ``path`` is resolved (as ``load_run_data`` returns them).
    class_names
        All class names, in the index order the model is trained with.
    cache_dir
        The workspace's ``cache`` folder.
    """
    class_names = list(class_names)
    splits = {"train": list(train), "val": list(valid)}
    digest = layout_digest(splits, class_names)
    parent = Path(cache_dir) / "yolo"
    root = parent / digest
    if (root / DATA_YAML).is_file():
        return YoloLayout(root, digest, class_names, reused=True)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=parent))
    try:
        counts = _write_layout(tmp, splits, class_names)
        try:
            os.rename(tmp, root)  # atomic: a folder named by its digest is complete
        except OSError:
            if not (root / DATA_YAML).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process built the same digest first
            return YoloLayout(root, digest, class_names, reused=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("YOLO dataset layout %s: %s", root, counts)
    return YoloLayout(root, digest, class_names, reused=False)


def _write_layout(root: Path, splits: dict[str, list[ImageRecord]], class_names: list[str]) -> dict[str, int]:
    import yaml

    class_index = {name: i for i, name in enumerate(class_names)}
    counts = {"linked": 0, "symlinked": 0, "copied": 0, "converted": 0, "crowd_boxes_left_out": 0}
    for split, records in splits.items():
        images, labels = root / "images" / split, root / "labels" / split
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        digits = max(6, len(str(len(records))))
        for index, record in enumerate(records):
            stem = f"{index:0{digits}d}"
            how = _place_image(_image_path(record), images, stem)
            counts[how] += 1
            lines = label_lines(record, class_index)
            counts["crowd_boxes_left_out"] += sum(1 for obj in record.label if obj.is_crowd)
            (labels / f"{stem}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    data = {"names": dict(enumerate(class_names)), "nc": len(class_names),
            "train": "images/train", "val": "images/val"}
    (root / DATA_YAML).write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return counts


def _image_path(record: ImageRecord) -> Path:
    if record.path is None:
        raise DataError(f"{record.where}: image {record.image_url} was not resolved to a local file")
    return Path(record.path).absolute()


def _place_image(source: Path, folder: Path, stem: str) -> str:
    """Put ``source`` into ``folder`` as ``stem.<ext>``; returns how (linked, symlinked, copied, converted)."""
    suffix = _linkable_suffix(source)
    if suffix is None:
        from jupyter_avml.data.images import load_image

        load_image(source).save(folder / f"{stem}.png", format="PNG")
        return "converted"
    target = folder / f"{stem}{suffix}"
    try:
        os.link(source, target)
        return "linked"
    except OSError:
        pass
    try:
        os.symlink(source, target)
        return "symlinked"
    except OSError:
        shutil.copyfile(source, target)
        return "copied"


def _linkable_suffix(path: Path) -> str | None:
    """The extension to link ``path`` under when OpenCV decodes it to the pixels ``load_image`` gives, else None."""
    from PIL import Image

    from jupyter_avml.data.images import _orientation

    try:
        with Image.open(path) as im:
            suffix = _LINKABLE_FORMATS.get(im.format or "")
            plain = im.mode in _LINKABLE_MODES and "transparency" not in im.info and _orientation(im) == 1
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot open the image: {exc}") from None
    if suffix is None or not plain:
        return None
    if suffix == ".jpg":
        with open(path, "rb") as handle:  # ultralytics rewrites JPEGs without an end-of-image marker
            handle.seek(-2, os.SEEK_END)
            if handle.read() != b"\xff\xd9":
                return None
    return suffix
