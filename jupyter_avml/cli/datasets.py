"""``avml datasets``: make synthetic shapes data, register datasets, list and show registered versions.

    avml datasets make-shapes OUT --task TASK [-n 200] [--size 128] [--seed 0]
    avml datasets register NAME PATH --task TASK [--description TEXT] [--prefix-map PREFIX=FOLDER ...]
    avml datasets list
    avml datasets show NAME [--version N] [--verify]
"""

from __future__ import annotations

import argparse

from jupyter_avml.errors import ConfigError
from jupyter_avml.tasks import ImageTask
from jupyter_avml.workspace import Workspace

TASK_HELP = "one of " + ", ".join(t.value for t in ImageTask)


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``datasets`` verb and its subcommands to ``subparsers``."""
    parser = subparsers.add_parser(
        "datasets", help="make shapes data; register, list and show dataset versions",
        description="Synthetic shapes data and the workspace's dataset registry.")
    commands = parser.add_subparsers(dest="datasets_command", metavar="COMMAND")
    commands.required = True

    make = commands.add_parser("make-shapes", help="write a synthetic shapes dataset (images + JSONL)",
                               description="Write circles, squares and triangles on varied backgrounds "
                                           "as images and a JSONL file for TASK.")
    make.add_argument("out", metavar="OUT", help="folder to write (images/ and the JSONL go inside)")
    make.add_argument("--task", required=True, help=TASK_HELP)
    make.add_argument("-n", type=int, default=200, help="number of images (default 200)")
    make.add_argument("--size", type=int, default=128, help="image side in pixels, >= 16 (default 128)")
    make.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    make.add_argument("--classes", default="circle,square,triangle",
                      help="comma-separated subset of circle,square,triangle (default all three)")
    make.add_argument("--max-objects", type=int, default=3,
                      help="most shapes per image for multi-label/detection/segmentation (default 3)")
    make.add_argument("--format", dest="image_format", default="png", help="png (default), jpg, bmp, tif")
    make.set_defaults(func=cmd_make_shapes)

    reg = commands.add_parser("register", help="register a JSONL file as a new dataset version",
                              description="Validate PATH and register it as the next version of NAME "
                                          "(identical content returns the existing version).")
    reg.add_argument("name", metavar="NAME", help="dataset name: letters, digits, '_', '.', '-'")
    reg.add_argument("path", metavar="PATH", help="the JSONL file")
    reg.add_argument("--task", required=True, help=TASK_HELP)
    reg.add_argument("--description", default="", help="free text stored with the version")
    reg.add_argument("--prefix-map", action="append", default=[], metavar="PREFIX=FOLDER",
                     help="map an image_url prefix (e.g. AmlDatastore://image_data/) to a local folder; repeatable")
    reg.set_defaults(func=cmd_register)

    lst = commands.add_parser("list", help="list registered dataset versions")
    lst.set_defaults(func=cmd_list)

    show = commands.add_parser("show", help="details and class counts of a dataset version")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--version", default=None, help="version number (default: the latest)")
    show.add_argument("--verify", action="store_true",
                      help="re-hash the images and fail if any changed since registration")
    show.set_defaults(func=cmd_show)
    return parser


def cmd_make_shapes(args) -> int:
    from jupyter_avml.data.shapes import make_shapes
    from jupyter_avml.data.summary import summarize
    from jupyter_avml.data.validate import read_dataset

    task = ImageTask.parse(args.task)
    path = make_shapes(args.out, task, n=args.n, size=args.size, seed=args.seed, classes=args.classes,
                       max_objects=args.max_objects, image_format=args.image_format)
    print(path)
    print(summarize(read_dataset(path, task, check_images=False).records, task))
    return 0


def cmd_register(args) -> int:
    from jupyter_avml.data.registry import register_dataset_ex

    version, created = register_dataset_ex(
        args.name, args.path, task=args.task, workspace=Workspace.resolve(args.workspace),
        description=args.description, prefix_map=_prefix_map(args.prefix_map))
    details = (f"sha256 {version.content_hash[:12]}, {version.rows} rows, {version.images} images, "
               f"{len(version.classes)} classes")
    if created:
        print(f"registered {version.name} version {version.version} ({details})")
    else:
        print(f"already registered: {version.name} version {version.version} has identical content ({details})")
    print(f"reference: {version.reference}")
    return 0


def cmd_list(args) -> int:
    from jupyter_avml.data.registry import list_datasets

    ws = Workspace.resolve(args.workspace)
    versions = list_datasets(ws)
    if not versions:
        print(f"no datasets registered in {ws.root}")
        return 0
    header = ("name", "version", "task", "rows", "images", "classes", "created")
    rows = [(v.name, str(v.version), v.task, str(v.rows), str(v.images), _classes_cell(v.classes), v.created)
            for v in versions]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    numeric = {1, 3, 4}
    for row in [header, *rows]:
        cells = [cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
    return 0


def cmd_show(args) -> int:
    from jupyter_avml.data.registry import get_dataset
    from jupyter_avml.data.summary import summarize

    version = get_dataset(args.name, args.version, workspace=Workspace.resolve(args.workspace),
                          verify=args.verify)
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
    return 0


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
