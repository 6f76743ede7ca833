"""A plain-text summary of a dataset: classes, image sizes, objects per image."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence

from jupyter_avml.data.records import ImageRecord, sorted_classes
from jupyter_avml.tasks import ImageTask


def summarize(records: Sequence[ImageRecord], task: ImageTask | str) -> str:
    """Counts per class, image sizes (min/median/max) and, for detection/segmentation, objects per image.

    Image sizes come from ``image_details`` and, where absent, from the header of the image file at
    ``record.path`` (when it exists); sizes known for no record are reported as unknown.
    """
    task = ImageTask.parse(task)
    records = list(records)
    classes = sorted_classes(records)
    images_with = Counter()  # class -> images that contain it
    objects = Counter()  # class -> instances (detection/segmentation)
    crowd = 0
    for record in records:
        names = record.class_names()
        images_with.update(set(names))
        if task.has_boxes:
            objects.update(names)
            crowd += sum(1 for obj in record.label if obj.is_crowd)

    head = (f"{task.value}: {len(records)} image{_s(len(records))}, "
            f"{len(classes)} class{'es' if len(classes) != 1 else ''}")
    if task.has_boxes:
        total = sum(objects.values())
        head += f", {total} object{_s(total)}" + (f" ({crowd} crowd)" if crowd else "")
    lines = [head]

    width = max([len("class")] + [len(c) for c in classes])
    if task.has_boxes:
        lines.append(f"  {'class':<{width}}  {'images':>6}  {'objects':>7}")
        for name in classes:
            lines.append(f"  {name:<{width}}  {images_with[name]:>6}  {objects[name]:>7}")
    else:
        lines.append(f"  {'class':<{width}}  {'images':>6}  {'share':>6}")
        for name in classes:
            share = images_with[name] / len(records) if records else 0.0
            lines.append(f"  {name:<{width}}  {images_with[name]:>6}  {share:>6.1%}")

    sizes = [size for size in (_size(record) for record in records) if size is not None]
    if sizes:
        widths = sorted(w for w, _ in sizes)
        heights = sorted(h for _, h in sizes)
        unknown = len(records) - len(sizes)
        lines.append(f"image width  min/median/max: {widths[0]}/{_median(widths)}/{widths[-1]} px; "
                     f"height: {heights[0]}/{_median(heights)}/{heights[-1]} px"
                     + (f" ({unknown} unknown)" if unknown else ""))
    else:
        lines.append("image sizes: unknown (no image_details and no readable image files)")

    if task.has_boxes and records:
        per_image = [len(record.label) for record in records]
        lines.append(f"objects per image min/mean/max: {min(per_image)}/{statistics.fmean(per_image):.2f}/"
                     f"{max(per_image)}")
    elif task.is_multilabel and records:
        per_image = [len(set(record.class_names())) for record in records]
        empty = per_image.count(0)
        lines.append(f"labels per image min/mean/max: {min(per_image)}/{statistics.fmean(per_image):.2f}/"
                     f"{max(per_image)}" + (f"; {empty} image{_s(empty)} with no label" if empty else ""))
    return "\n".join(lines)


def _size(record: ImageRecord) -> tuple[int, int] | None:
    if record.width and record.height:
        return int(record.width), int(record.height)
    if record.path is not None and record.path.is_file():
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(record.path) as image:  # reads the header only
                return image.size
        except (OSError, UnidentifiedImageError):
            return None
    return None


def _median(values: list[int]) -> str:
    middle = statistics.median(values)
    return str(int(middle)) if float(middle).is_integer() else f"{middle:.1f}"


def _s(count: int) -> str:
    return "" if count == 1 else "s"
