"""Pascal VOC -> records: one xml per image (object detection), plus per-instance mask PNGs (instance
segmentation).

Folders
-------
``src_dir`` is the dataset folder. Annotations: ``annotations_dir``, else a sub-folder named ``Annotations``
or ``annotations`` (any case), else ``src_dir`` itself when it holds ``.xml`` files. Images: ``images_dir``,
else ``JPEGImages``, ``images`` or ``PNGImages`` (any case), else the annotations folder. The image of an xml
is the file its ``<filename>`` names inside the images folder (a name without an extension is looked up by
stem; no ``<filename>``: the xml's own stem). ``<path>`` is ignored: it is where the annotator's machine kept
the file.

Boxes
-----
``<bndbox>`` is converted as ``top_x = xmin / width`` ... with ``<size>`` (or the image header when
``<size>`` is missing), under the clipping rule of ``_common``. ``<difficult>1</difficult>`` boxes are KEPT as
ordinary boxes (``isCrowd`` 0): VOC's "difficult" means hard to recognise, not a crowd region, and the spec's
``isCrowd`` excludes a box from the metric, which "difficult" does not ask for. ``<truncated>`` is ignored.

Instance masks (``masks_dir``)
------------------------------
One PNG per image, matched to the image by stem: ``STEM.png`` or ``STEM_mask.png``. The images converted are
those with a mask; annotated images without one are listed in one dropped item (VOC annotates far more images
than it segments). Pixel value ``k > 0`` is instance
``k``; 255 is VOC's boundary/"void" and is ignored. This reads both PennFudan ``PedMasks`` (grayscale,
values 1..n) and VOC ``SegmentationObject`` (palette PNGs whose INDEX is the instance; the palette colours
are not used). Instance ``k`` is the ``k``-th ``<object>`` of the image's xml (VOC's own convention), which
gives its class; without an xml every instance gets the class ``label``. Instances without an object, objects
without an instance, and instances smaller than a few pixels are reported and dropped. Each instance's pixels
are traced into polygons with ``masks.mask_to_polygons``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from jupyter_avml.data.convert._common import (
    Converted,
    ImageIndex,
    Skip,
    check_aspect,
    find_child_dir,
    make_record,
    probe_image,
    require_dir,
    show,
    to_fraction_box,
    to_fraction_polygon,
)
from jupyter_avml.data.records import ObjectLabel
from jupyter_avml.errors import ConfigError, DataError
from jupyter_avml.tasks import ImageTask

ANNOTATION_DIRS = ("Annotations", "annotations")
IMAGE_DIRS = ("JPEGImages", "images", "PNGImages")
MASK_DIRS = ("SegmentationObject", "PedMasks", "masks")
VOID = 255


def from_voc(src_dir: str | os.PathLike, *, images_dir: str | os.PathLike | None = None,
             annotations_dir: str | os.PathLike | None = None, masks_dir: str | os.PathLike | None = None,
             task: ImageTask | str | None = None, label: str | None = None) -> Converted:
    """Read a Pascal VOC dataset folder (see the module docstring for the rules).

    ``task`` defaults to instance segmentation when ``masks_dir`` is given, else object detection. For
    instance segmentation without ``masks_dir``, a ``SegmentationObject``/``PedMasks``/``masks`` sub-folder is
    used. ``label`` names the class of mask instances that have no xml.

    Returns a ``Converted`` (unpacks as ``records, dropped``).
    """
    src = require_dir(src_dir, "Pascal VOC dataset folder")
    if task is None:
        task = ImageTask.IMAGE_INSTANCE_SEGMENTATION if masks_dir is not None else ImageTask.IMAGE_OBJECT_DETECTION
    task = ImageTask.parse(task)
    if not task.has_boxes:
        raise ConfigError(f"Pascal VOC converts to image-object-detection or image-instance-segmentation, "
                          f"not {task.value}", field="task", value=task.value)
    ann_dir = _annotations_dir(src, annotations_dir, required=task is ImageTask.IMAGE_OBJECT_DETECTION)
    img_dir = _images_dir(src, images_dir, ann_dir)
    index = ImageIndex(img_dir)
    xmls = {p.stem: p for p in sorted(ann_dir.glob("*.xml")) if p.is_file()} if ann_dir else {}
    if task is ImageTask.IMAGE_OBJECT_DETECTION:
        if masks_dir is not None:
            raise ConfigError("instance masks (masks_dir, --masks) are read for image-instance-segmentation, "
                              "not image-object-detection", field="task", value=task.value)
        if not xmls:
            raise DataError(f"{ann_dir}: no .xml annotation files")
        reader = _Reader(src, index, task, label)
        for xml in xmls.values():
            reader.detection(xml)
        return reader.result()
    masks = _mask_files(src, masks_dir)
    reader = _Reader(src, index, task, label)
    used: set[str] = set()
    for xml in xmls.values():
        reader.segmentation(xml, xml.stem, masks, used)
    for stem in masks:
        if stem not in used:  # a mask without an xml: its instances get the class ``label``
            reader.segmentation(None, stem, masks, used)
    return reader.result()


def _annotations_dir(src: Path, given, *, required: bool) -> Path | None:
    if given is not None:
        return require_dir(given, "annotations folder")
    found = find_child_dir(src, ANNOTATION_DIRS)
    if found is not None:
        return found
    if any(src.glob("*.xml")):
        return src
    if required:
        raise DataError(f"{src}: no annotations folder ({' or '.join(ANNOTATION_DIRS)}) and no .xml files; "
                        "give it with annotations_dir= (--annotations DIR)")
    return None


def _images_dir(src: Path, given, ann_dir: Path | None) -> Path:
    if given is not None:
        return require_dir(given, "images folder")
    found = find_child_dir(src, IMAGE_DIRS)
    if found is not None:
        return found
    if ann_dir is not None:
        return ann_dir
    raise DataError(f"{src}: no images folder ({', '.join(IMAGE_DIRS)}); give it with images_dir= (--images DIR)")


def _mask_files(src: Path, given) -> dict[str, Path]:
    if given is not None:
        folder = require_dir(given, "masks folder")
    else:
        folder = find_child_dir(src, MASK_DIRS)
        if folder is None:
            raise DataError(f"{src}: instance segmentation needs the per-instance mask PNGs: no "
                            f"{', '.join(MASK_DIRS)} folder; give it with masks_dir= (--masks DIR)")
    masks: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() == ".png":
            stem = path.stem[:-5] if path.stem.lower().endswith("_mask") else path.stem
            masks.setdefault(stem, path)
    if not masks:
        raise DataError(f"{folder}: no .png instance masks")
    return masks


class _Parsed:
    """One xml: the image it names, its annotated size, and its objects as (name, pixel box or Skip)."""

    def __init__(self, filename: str | None, size: tuple[float, float] | None, objects: list):
        self.filename = filename
        self.size = size
        self.objects = objects


class _Reader:
    def __init__(self, src: Path, index: ImageIndex, task: ImageTask, label: str | None):
        self.src = src
        self.index = index
        self.task = task
        self.label = label
        self.records = []
        self.dropped: list[str] = []
        self.classes: dict[str, None] = {}
        self.without_mask: list[str] = []

    def result(self) -> Converted:
        if self.without_mask:
            shown = ", ".join(self.without_mask[:5]) + (" ..." if len(self.without_mask) > 5 else "")
            self.dropped.append(f"{len(self.without_mask)} annotation file(s) have no instance mask (STEM.png or "
                                f"STEM_mask.png), their images are left out: {shown}")
        return Converted(self.records, self.dropped, self.task, list(self.classes))

    def _where(self, path: Path) -> str:
        return show(path, self.src.parent)

    # -- detection -------------------------------------------------------------------------------------
    def detection(self, xml: Path) -> None:
        where = self._where(xml)
        try:
            parsed = _parse_xml(xml)
            image = self._image(parsed.filename or xml.stem)
            actual = probe_image(image)
            frame = _frame(parsed.size, actual)
        except Skip as exc:
            self.dropped.append(f"{where}: {exc}; the image is dropped")
            return
        objects = []
        for number, (name, box) in enumerate(parsed.objects, 1):
            try:
                if isinstance(box, Skip):
                    raise box
                objects.append(ObjectLabel(name, *to_fraction_box(*box, *frame)))
                self.classes.setdefault(name, None)
            except Skip as exc:
                self.dropped.append(f"{where}: object {number}{_named(name)}: {exc}")
        if parsed.objects and not objects:
            self.dropped.append(f"{where}: all {len(parsed.objects)} object(s) dropped, so the image is dropped "
                                "(an empty label would say it shows no object)")
            return
        self.records.append(make_record(image, tuple(objects), actual, xml))

    # -- instance segmentation -------------------------------------------------------------------------
    def segmentation(self, xml: Path | None, stem: str, masks: dict[str, Path], used: set[str]) -> None:
        """One image: ``xml`` (None for a mask without an xml, then ``stem`` is the mask's)."""
        mask_path = masks.get(stem)
        where = self._where(xml or mask_path)
        try:
            parsed = _parse_xml(xml) if xml is not None else None
            image = self._image((parsed.filename or stem) if parsed else stem)
            # The mask belongs to the IMAGE: match its stem first, the xml's second.
            for key in (image.stem, stem):
                if key in masks:
                    mask_path = masks[key]
                    used.add(key)
                    break
            if mask_path is None:
                # The segmentation set is the images with a mask (VOC annotates far more images than it
                # segments): one summary line for all the others, not one per image.
                self.without_mask.append(where)
                return
            actual = probe_image(image)
            _frame(parsed.size if parsed else None, actual)  # checks the xml's size against the image
        except Skip as exc:
            if mask_path is not None:
                used.add(stem)
            self.dropped.append(f"{where}: {exc}; the image is dropped")
            return
        source = xml or mask_path
        expected = len(parsed.objects) if parsed else 0
        mwhere = self._where(mask_path)
        try:
            instances = _read_instances(mask_path, actual)
        except Skip as exc:
            self.dropped.append(f"{mwhere}: {exc}; the image is dropped")
            return
        if parsed is None and self.label is None:
            self.dropped.append(f"{mwhere}: no xml annotation for this mask and no class given for mask instances "
                                "(label=..., --label NAME); the image is dropped")
            return
        objects = []
        for value, mask in instances:
            if parsed is not None:
                if value > expected:
                    self.dropped.append(f"{mwhere}: instance {value} has no <object> number {value} in "
                                        f"{xml.name} ({expected} object(s))")
                    continue
                name = parsed.objects[value - 1][0]
                if name is None:
                    self.dropped.append(f"{where}: object {value}: no <name> (the class); mask instance {value} "
                                        "dropped")
                    continue
            else:
                name = self.label
            try:
                objects.append(ObjectLabel.from_polygon(name, _instance_polygon(mask, actual)))
                self.classes.setdefault(name, None)
            except Skip as exc:
                self.dropped.append(f"{mwhere}: instance {value} ({name}): {exc}")
        if parsed is not None:
            present = {value for value, _ in instances}
            for number, (name, _box) in enumerate(parsed.objects, 1):
                if number not in present:
                    self.dropped.append(f"{where}: object {number}{_named(name)}: no pixels of value {number} in "
                                        f"{mask_path.name}")
        if (instances or expected) and not objects:
            self.dropped.append(f"{mwhere}: no instance could be converted, so the image is dropped "
                                "(an empty label would say it shows no object)")
            return
        self.records.append(make_record(image, tuple(objects), actual, source))

    def _image(self, filename: str) -> Path:
        found = self.index.find(filename)
        if found is None:
            raise Skip(f"image {filename!r} not found in {self.index.root}")
        return found


def _parse_xml(xml: Path) -> _Parsed:
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else "?"
        raise Skip(f"malformed XML at line {line} ({exc})") from None
    except OSError as exc:
        raise Skip(f"cannot read the file ({exc.strerror or exc})") from None
    if root.tag != "annotation":
        raise Skip(f"not a Pascal VOC annotation: the root element is <{root.tag}>, expected <annotation>")
    filename = (root.findtext("filename") or "").strip() or None
    size = None
    size_el = root.find("size")
    if size_el is not None:
        try:
            width, height = float(size_el.findtext("width")), float(size_el.findtext("height"))
        except (TypeError, ValueError):
            raise Skip(f"<size> width/height are not numbers ({size_el.findtext('width')!r}, "
                       f"{size_el.findtext('height')!r})") from None
        if width > 0 and height > 0:
            size = (width, height)
        elif not (width == 0 and height == 0):  # 0x0 is written by some tools for "unknown"
            raise Skip(f"<size> width/height must be positive ({width:g}x{height:g})")
    objects = []
    for obj in root.findall("object"):
        name = (obj.findtext("name") or "").strip()
        box = None
        if not name:
            box = Skip("no <name> (the class)")
            name = None
        else:
            bndbox = obj.find("bndbox")
            if bndbox is None:
                box = Skip("no <bndbox>")
            else:
                texts = [bndbox.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
                try:
                    box = tuple(float(t) for t in texts)
                except (TypeError, ValueError):
                    box = Skip(f"<bndbox> xmin/ymin/xmax/ymax are not all numbers ({texts})")
        objects.append((name, box))
    return _Parsed(filename, size, objects)


def _frame(size: tuple[float, float] | None, actual: tuple[int, int]) -> tuple[float, float]:
    if size is None:
        return float(actual[0]), float(actual[1])
    check_aspect(size, actual)
    return size


def _read_instances(mask_path: Path, actual: tuple[int, int]) -> list[tuple[int, np.ndarray]]:
    from PIL import Image

    try:
        with Image.open(mask_path) as im:
            if im.mode not in ("P", "L", "I", "I;16", "1"):
                raise Skip(f"mask mode {im.mode} is not an instance-index image (expected a grayscale or palette "
                           "PNG whose pixel values are instance numbers)")
            values = np.asarray(im)
    except (OSError, SyntaxError, ValueError) as exc:
        raise Skip(f"cannot read the mask ({exc})") from None
    if values.shape[::-1] != tuple(actual):
        raise Skip(f"mask size {values.shape[1]}x{values.shape[0]} differs from the image's "
                   f"{actual[0]}x{actual[1]}")
    present = [int(v) for v in np.unique(values) if v != 0 and v != VOID]
    return [(v, values == v) for v in present]


def _named(name: str | None) -> str:
    return f" ({name})" if name else ""


def _instance_polygon(mask: np.ndarray, actual: tuple[int, int]):
    from jupyter_avml.data.masks import mask_to_polygons

    polygons = mask_to_polygons(mask)
    if not polygons:
        raise Skip(f"instance too small: {int(mask.sum())} pixel(s)")
    # The mask has the image file's size; fractions are the same in any proportional frame.
    return to_fraction_polygon(polygons, float(actual[0]), float(actual[1]))
