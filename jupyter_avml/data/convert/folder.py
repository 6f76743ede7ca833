"""An image folder with one sub-folder per class (torchvision's ``ImageFolder`` layout) -> multi-class records.

Every sub-folder of ``root`` (hidden ones aside) is a class named after the folder; its images are found
recursively. Images are the spec's formats (``_common.IMAGE_FORMATS``); other files inside a class folder,
images directly inside ``root`` and images that cannot be opened are reported and left out. Hidden files
(``.DS_Store``...) are skipped silently.
"""

from __future__ import annotations

import os

from jupyter_avml.data.convert._common import (
    IMAGE_FORMATS,
    Converted,
    Skip,
    image_format,
    make_record,
    probe_image,
    require_dir,
    show,
)
from jupyter_avml.errors import DataError
from jupyter_avml.tasks import ImageTask


def from_folder(root: str | os.PathLike) -> Converted:
    """Read a class-per-sub-folder image folder (see the module docstring).

    Returns a ``Converted`` (unpacks as ``records, dropped``) for ``image-classification``.
    """
    root = require_dir(root, "image folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class sub-folders (expected one folder of images per class)")
    dropped: list[str] = []
    notes: list[str] = []
    for path in sorted(root.iterdir()):
        if path.is_file() and image_format(path):
            dropped.append(f"{show(path, root)}: image directly in the dataset folder, not in a class folder")
    records = []
    for folder in class_dirs:
        count = 0
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue
            if image_format(path) is None:
                dropped.append(f"{show(path, root)}: not an image of the spec's formats "
                               f"({', '.join(IMAGE_FORMATS)}) ({path.suffix or 'no extension'})")
                continue
            try:
                size = probe_image(path)
            except Skip as exc:
                dropped.append(f"{show(path, root)}: {exc}")
                continue
            records.append(make_record(path, folder.name, size, folder))
            count += 1
        if count == 0:
            notes.append(f"{show(folder, root)}: class folder without usable images")
    return Converted(records, dropped, ImageTask.IMAGE_CLASSIFICATION, [p.name for p in class_dirs], notes)
