"""``datasets``: make synthetic shapes data, register datasets, list and show registered versions.

    avml datasets make-shapes OUT --task TASK [-n 200] [--size 128] [--seed 0]
    avml datasets register NAME PATH --task TASK [--description TEXT] [--prefix-map PREFIX=FOLDER ...]
    avml datasets list
    avml datasets show NAME [--version N] [--verify]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jupyter_avml.cli.table import SHELL, Verb, add_verbs, arg
from jupyter_avml.errors import ConfigError
from jupyter_avml.tasks import ImageTask
from jupyter_avml.workspace import Workspace

TASK_HELP = "one of " + ", ".join(t.value for t in ImageTask)


def make_shapes_verb(args, door=None) -> tuple[Path, str]:
    """Write the shapes dataset; returns (the JSONL path, its summary)."""
    from jupyter_avml.data.shapes import make_shapes
    from jupyter_avml.data.summary import summarize
    from jupyter_avml.data.validate import read_dataset

    task = ImageTask.parse(args.task)
    path = make_shapes(args.out, task, n=args.n, size=args.size, seed=args.seed, classes=args.classes,
                       max_objects=args.max_objects, image_format=args.image_format)
    return Path(path), summarize(read_dataset(path, task, check_images=False).records, task)


def register_verb(args, door=None):
    """Register ``args.path`` as the next version of ``args.name``; returns (DatasetVersion, created)."""
    from jupyter_avml.data.dataset_registry import register_dataset_ex

    return register_dataset_ex(args.name, args.path, task=args.task, workspace=Workspace.resolve(args.workspace),
                               description=args.description, prefix_map=_prefix_map(args.prefix_map))


def show_registered(result, args, door) -> None:
    version, created = result
    details = (f"sha256 {version.content_hash[:12]}, {version.rows} rows, {version.images} images, "
               f"{len(version.classes)} classes")
    if created:
        print(f"registered {version.name} version {version.version} ({details})")
    else:
        print(f"already registered: {version.name} version {version.version} has identical content ({details})")
    print(f"reference: {version.reference}")


def list_verb(args, door=None):
    from jupyter_avml.data.dataset_registry import list_datasets

    ws = Workspace.resolve(args.workspace)
    return ws, list_datasets(ws)


def show_list(result, args, door) -> None:
    ws, versions = result
    if not versions:
        print(f"no datasets registered in {ws.root}")
        return
    header = ("name", "version", "task", "rows", "images", "classes", "created")
    rows = [(v.name, str(v.version), v.task, str(v.rows), str(v.images), _classes_cell(v.classes), v.created)
            for v in versions]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    numeric = {1, 3, 4}
    for row in [header, *rows]:
        cells = [cell.rjust(w) if i in numeric else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells).rstrip())


def show_verb(args, door=None):
    from jupyter_avml.data.dataset_registry import get_dataset

    return get_dataset(args.name, args.version, workspace=Workspace.resolve(args.workspace), verify=args.verify)


def show_version(version, args, door) -> None:
    from jupyter_avml.data.summary import summarize

    print(f"{version.name} version {version.version}  ({version.reference})")
    print(f"  task:        {version.task}")
    print(f"  rows:        {version.rows}")
    print(f"  images:      {version.images}")
    print(f"  classes:     {', '.join(version.classes)}")
    print(f"  hash:        sha256 {version.content_hash}")
    print(f"  created:     {version.created}")
    print(f"  source:      {version.source}")
    print(f"  snapshot:    {version.path}")
    if version.description:
        print(f"  description: {version.description}")
    if args.verify:
        print("  verified:    every image matches its registered hash")
    print()
    print(summarize(version.records(), version.task))


def _version_json(version) -> dict:
    return {"name": version.name, "version": version.version, "reference": version.reference, "task": version.task,
            "rows": version.rows, "images": version.images, "classes": version.classes,
            "content_hash": version.content_hash, "created": version.created, "source": version.source,
            "path": str(version.path), "description": version.description}


VERBS = (
    Verb("datasets make-shapes", "write a synthetic shapes dataset (images + JSONL)", make_shapes_verb,
         description="Write circles, squares and triangles on varied backgrounds as images and a JSONL file "
                     "for TASK.",
         args=(arg("out", metavar="OUT", help="folder to write (images/ and the JSONL go inside)"),
               arg("--task", required=True, help=TASK_HELP),
               arg("-n", type=int, default=200, help="number of images (default 200)"),
               arg("--size", type=int, default=128, help="image side in pixels, >= 16 (default 128)"),
               arg("--seed", type=int, default=0, help="random seed (default 0)"),
               arg("--classes", default="circle,square,triangle",
                   help="comma-separated subset of circle,square,triangle (default all three)"),
               arg("--max-objects", type=int, default=3,
                   help="most shapes per image for multi-label/detection/segmentation (default 3)"),
               arg("--format", dest="image_format", default="png", help="png (default), jpg, bmp, tif")),
         text=lambda result, args, door: print(f"{result[0]}\n{result[1]}"),
         json=lambda result, args: {"path": str(result[0]), "summary": result[1]}),
    Verb("datasets register", "register a JSONL file as a new dataset version", register_verb,
         description="Validate PATH and register it as the next version of NAME (identical content returns the "
                     "existing version).",
         args=(arg("name", metavar="NAME", help="dataset name: letters, digits, '_', '.', '-'"),
               arg("path", metavar="PATH", help="the JSONL file"),
               arg("--task", required=True, help=TASK_HELP),
               arg("--description", default="", help="free text stored with the version"),
               arg("--prefix-map", action="append", default=[], metavar="PREFIX=FOLDER",
                   help="map an image_url prefix (e.g. AmlDatastore://image_data/) to a local folder; repeatable")),
         text=show_registered, json=lambda result, args: {**_version_json(result[0]), "created_now": result[1]}),
    Verb("datasets list", "list registered dataset versions", list_verb, text=show_list,
         json=lambda result, args: [_version_json(v) for v in result[1]]),
    Verb("datasets show", "details and class counts of a dataset version", show_verb,
         args=(arg("name", metavar="NAME", help="the dataset's name"),
               arg("--version", default=None, help="version number (default: the latest)"),
               arg("--verify", action="store_true",
                   help="re-hash the images and fail if any changed since registration")),
         text=show_version, json=lambda version, args: _version_json(version)),
)

GROUP_HELP = "make shapes data; register, list and show dataset versions"


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``datasets`` and its commands to an ``avml`` subparsers (as ``cli/main.py`` does)."""
    return add_verbs(subparsers, VERBS, SHELL, {"datasets": GROUP_HELP})["datasets"]


def _prefix_map(items: list[str]) -> dict[str, str] | None:
    out = {}
    for item in items:
        prefix, sep, folder = item.partition("=")
        if not sep or not prefix or not folder:
            raise ConfigError(f"--prefix-map expects PREFIX=FOLDER, got {item!r}", field="--prefix-map", value=item)
        out[prefix] = folder
    return out or None


def _classes_cell(classes: list[str], limit: int = 40) -> str:
    text = f"{len(classes)}: " + ",".join(classes)
    return text if len(text) <= limit else text[:limit - 3] + "..."
