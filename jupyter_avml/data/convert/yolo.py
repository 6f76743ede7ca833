"""YOLO (Ultralytics / Darknet txt labels) -> records: object detection or instance segmentation.

Source
------
- a ``data.yaml``: ``names`` (a list, or a dict ``{id: name}``), ``path`` (the dataset root; relative to the
  yaml's folder, default that folder), and ``train`` / ``val`` (also ``test``): a folder of images, a ``.txt``
  list of image paths (relative lines are relative to the list's folder), or a list of those, relative to
  the root;
- or a dataset folder: its ``data.yaml``/``dataset.yaml`` when it has one, else ``images/<split>`` with
  ``labels/<split>``, ``<split>/images`` with ``<split>/labels`` (Roboflow; ``valid`` for ``val``), or
  ``images`` with ``labels``. Class names then come from ``classes.txt``/``obj.names`` (one per line); without
  them the class id is the name (said in the notes).

Labels
------
The label file of ``.../images/.../x.jpg`` is ``.../labels/.../x.txt`` (the last ``images`` folder of the path
replaced), else ``x.txt`` beside the image. One object per line, all values normalised to [0, 1]:
``cls cx cy w h`` (a box) or ``cls x1 y1 x2 y2 ... xn yn`` (a segment, n >= 3). An image without a label file,
or with an empty one, is a background image: a row with an empty label list.

Task: given, or inferred: instance segmentation when every object line is a segment, else object detection
(segments then give their extent as the box, said in the notes). Lines that do not parse, name an unknown class,
or lie outside the image beyond the clipping rule of ``_common`` are reported as ``FILE:LINE`` and dropped.
"""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_avml.data.convert._common import (
    Converted,
    Skip,
    image_format,
    make_record,
    probe_image,
    show,
    to_fraction_box,
    to_fraction_polygon,
)
from jupyter_avml.data.records import ObjectLabel
from jupyter_avml.errors import ConfigError, DataError
from jupyter_avml.tasks import ImageTask

YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")
NAME_FILES = ("classes.txt", "obj.names", "names.txt")
SPLIT_ALIASES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


def from_yolo(data_yaml_or_dir: str | os.PathLike, *, split: str = "train",
              task: ImageTask | str | None = None) -> Converted:
    """Read one split of a YOLO dataset (see the module docstring for the rules).

    Returns a ``Converted`` (unpacks as ``records, dropped``) whose ``task`` is the given or inferred one.
    """
    source = Path(data_yaml_or_dir).expanduser()
    if split not in SPLIT_ALIASES:
        raise ConfigError(f"split must be one of {', '.join(SPLIT_ALIASES)}, got {split!r}", field="split",
                          value=split)
    if task is not None:
        task = ImageTask.parse(task)
        if not task.has_boxes:
            raise ConfigError(f"YOLO labels convert to image-object-detection or image-instance-segmentation, "
                              f"not {task.value}", field="task", value=task.value)
    if not source.exists():
        raise DataError(f"{source}: YOLO data.yaml or dataset folder not found")
    notes: list[str] = []
    if source.is_dir():
        yaml_file = next((source / n for n in YAML_NAMES if (source / n).is_file()), None)
    else:
        yaml_file = source
    if yaml_file is not None:
        names, images, root = _from_yaml(yaml_file, split)
    else:
        names, images, root = _from_folder(source, split, notes)
    return _read(images, names, root, task, notes)


def _from_yaml(yaml_file: Path, split: str) -> tuple[dict[int, str], list[Path], Path]:
    from jupyter_avml.config.loader import load_config_value, read_config_text

    try:  # the configuration loader's guards: regular file, size, UTF-8, nesting, duplicate keys, aliases
        data = load_config_value(read_config_text(yaml_file, what="YOLO data.yaml"), str(yaml_file))
    except ConfigError as exc:
        line = f":{exc.line}" if exc.line else ""
        raise DataError(f"{yaml_file}{line}: not a YAML file: {exc.message}") from None
    if not isinstance(data, dict):
        raise DataError(f"{yaml_file}: not a YOLO data.yaml: expected a mapping with names and {split}")
    names = _names(data.get("names"), yaml_file)
    root = Path(str(data.get("path") or ".")).expanduser()
    if not root.is_absolute():
        root = yaml_file.parent / root
    key = next((k for k in SPLIT_ALIASES[split] if data.get(k)), None)
    if key is None:
        raise DataError(f"{yaml_file}: no {split!r} entry (keys: {', '.join(map(str, data)) or 'none'})")
    entries = data[key] if isinstance(data[key], list) else [data[key]]
    images: list[Path] = []
    for entry in entries:
        path = Path(str(entry)).expanduser()
        if not path.is_absolute():
            path = root / path
        if path.is_dir():
            images.extend(_images_in(path))
        elif path.is_file() and path.suffix.lower() == ".txt":
            images.extend(_image_list(path))
        else:
            raise DataError(f"{yaml_file}: {key}: {entry!r} is neither a folder nor a .txt list of images "
                            f"(looked for {path})")
    return names, images, root


def _names(value, yaml_file: Path) -> dict[int, str]:
    if isinstance(value, list):
        return {i: str(n) for i, n in enumerate(value)}
    if isinstance(value, dict):
        out = {}
        for key, name in value.items():
            try:
                out[int(key)] = str(name)
            except (TypeError, ValueError):
                raise DataError(f"{yaml_file}: names: class ids must be integers, got {key!r}") from None
        return out
    raise DataError(f"{yaml_file}: names: expected a list or a mapping {{id: name}}, got {value!r}")


def _from_folder(root: Path, split: str, notes: list[str]) -> tuple[dict[int, str], list[Path], Path]:
    layouts = []
    for name in SPLIT_ALIASES[split]:
        layouts += [root / "images" / name, root / name / "images"]
    layouts.append(root / "images")
    folder = next((p for p in layouts if p.is_dir()), None)
    if folder is None:
        raise DataError(f"{root}: not a YOLO dataset: no data.yaml and no images folder "
                        f"(looked for {', '.join(show(p, root) for p in layouts)})")
    if folder == root / "images" and any((folder / n).is_dir() for n in ("train", "val", "valid")):
        raise DataError(f"{root}: images/ has split folders but none for {split!r}")
    names: dict[int, str] = {}
    names_file = next((root / n for n in NAME_FILES if (root / n).is_file()), None)
    if names_file is not None:
        lines = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines()]
        names = {i: n for i, n in enumerate(n for n in lines if n)}
    else:
        notes.append(f"{root}: no data.yaml or {'/'.join(NAME_FILES)}: classes are named by their ids")
    return names, _images_in(folder), root


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and image_format(p) and not p.name.startswith("."))


def _image_list(txt: Path) -> list[Path]:
    out = []
    for line in txt.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            path = Path(line).expanduser()
            out.append(path if path.is_absolute() else txt.parent / path)
    return out


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder of the path becomes ``labels``; else the txt beside it."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _read(images: list[Path], names: dict[int, str], root: Path, task: ImageTask | None,
          notes: list[str]) -> Converted:
    dropped: list[str] = []
    parsed = []  # (image, size, label file, [(line, class id, values)])
    seen: set[Path] = set()
    for image in images:
        key = image.resolve()
        if key in seen:
            continue
        seen.add(key)
        try:
            size = probe_image(image)
        except Skip as exc:
            dropped.append(f"{show(image, root)}: {exc}")
            continue
        txt, lines = _parse_labels(label_path(image), names, root, dropped)
        if lines is not None:
            parsed.append((image, size, txt, lines))
    if not parsed:
        raise DataError(f"{root}: no usable image in this split", problems=dropped)
    if not any(txt.is_file() for _, _, txt, _ in parsed):
        # Not a YOLO dataset (or labels elsewhere): writing every image as background would be wrong.
        raise DataError(f"{root}: no YOLO label file for any of the {len(parsed)} image(s) of this split "
                        f"(the first would be {parsed[0][2]})")
    boxes = sum(1 for *_, lines in parsed for _, _, v in lines if len(v) == 4)
    segments = sum(1 for *_, lines in parsed for _, _, v in lines if len(v) != 4)
    if task is None:
        task = ImageTask.IMAGE_INSTANCE_SEGMENTATION if segments and not boxes else ImageTask.IMAGE_OBJECT_DETECTION
        if segments and boxes:
            notes.append(f"{segments} segment line(s) read as boxes (their extent): {boxes} line(s) are boxes, "
                         "so the task is image-object-detection")
    records = []
    for image, size, txt, lines in parsed:
        width, height = size
        objects = []
        for number, class_id, values in lines:
            name = names.get(class_id, str(class_id))
            where = f"{show(txt, root)}:{number}"
            try:
                if len(values) == 4:
                    if task is ImageTask.IMAGE_INSTANCE_SEGMENTATION:
                        raise Skip("a box line (cls cx cy w h) has no polygon for image-instance-segmentation")
                    cx, cy, w, h = values
                    if w < 0 or h < 0:
                        raise Skip(f"negative width or height ({' '.join(f'{v:g}' for v in values)})")
                    box = to_fraction_box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, width, height,
                                          normalized=True)
                    objects.append(ObjectLabel(name, *box))
                else:
                    item_notes: list[str] = []
                    try:
                        polygon = to_fraction_polygon([values], width, height, item_notes, normalized=True)
                    except Skip:
                        if item_notes:  # the one segment was left out: say why
                            raise Skip(item_notes[0].replace("polygon segment 1", "the segment")) from None
                        raise
                    objects.append(ObjectLabel.from_polygon(name, polygon))
            except Skip as exc:
                dropped.append(f"{where}: {exc}")
        if lines and not objects:
            dropped.append(f"{show(txt, root)}: all {len(lines)} object line(s) dropped, so the image "
                           f"{image.name} is dropped (an empty label would say it shows no object)")
            continue
        records.append(make_record(image, tuple(objects), size, txt if txt.is_file() else image))
    classes = [names[k] for k in sorted(names)]
    return Converted(records, dropped, task, classes, notes)


def _parse_labels(txt: Path, names: dict[int, str], root: Path, dropped: list[str]):
    """``(txt, [(line number, class id, normalised values)])``; unparsable lines go to ``dropped``."""
    if not txt.is_file():
        return txt, []
    out = []
    try:
        text = txt.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        dropped.append(f"{show(txt, root)}: cannot read the label file ({exc}); its image is dropped")
        return txt, None
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{show(txt, root)}:{number}"
        try:
            numbers = [float(t) for t in tokens]
        except ValueError:
            dropped.append(f"{where}: not a line of numbers ({line.strip()[:60]!r})")
            continue
        class_value, values = numbers[0], numbers[1:]
        if not class_value.is_integer() or class_value < 0:
            dropped.append(f"{where}: class id must be a non-negative integer ({tokens[0]!r})")
            continue
        class_id = int(class_value)
        if names and class_id not in names:
            dropped.append(f"{where}: class id {class_id} is not in names (ids {min(names)}..{max(names)})")
            continue
        if len(values) != 4 and (len(values) < 6 or len(values) % 2):
            dropped.append(f"{where}: expected 5 values (cls cx cy w h) or a class and at least 3 x y pairs, "
                           f"got {len(tokens)} ({line.strip()[:60]!r})")
            continue
        out.append((number, class_id, values))
    return txt, out
