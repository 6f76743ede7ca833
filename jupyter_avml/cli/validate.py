"""``avml validate FILE --task TASK``: check a JSONL file and list every problem (exit 0 when valid, 2 if not)."""

from __future__ import annotations

import argparse

from jupyter_avml.errors import ConfigError
from jupyter_avml.tasks import ImageTask

MAX_PROBLEMS_SHOWN = 50


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "validate", help="check a JSONL file: label forms, coordinates, images",
        description="Check every row of a JSONL file for a task and list all problems as "
                    "FILE:LINE: field: message (value). Exit status 0 when the file is valid, 2 otherwise.")
    parser.add_argument("file", metavar="FILE", help="the JSONL file")
    parser.add_argument("--task", required=True, metavar="TASK",
                        help="one of: " + ", ".join(t.value for t in ImageTask))
    parser.add_argument("--no-image-check", dest="check_images", action="store_false",
                        help="do not decode the images (faster; missing or broken images go unnoticed)")
    parser.add_argument("--prefix-map", action="append", default=[], metavar="PREFIX=DIR",
                        help="read image URLs starting with PREFIX from the local folder DIR "
                             "(e.g. AmlDatastore://image_data/=./images); may be repeated")
    parser.add_argument("--known-classes-from", metavar="TRAIN.jsonl", default=None,
                        help="the training file: rows naming classes it does not have are problems")
    parser.set_defaults(func=run)
    return parser


def parse_prefix_map(items: list[str]) -> dict[str, str]:
    """``["PREFIX=DIR", ...]`` -> ``{PREFIX: DIR}`` (split at the first ``=``)."""
    out: dict[str, str] = {}
    for item in items:
        prefix, sep, folder = item.partition("=")
        if not sep or not prefix or not folder:
            raise ConfigError(f"--prefix-map: expected PREFIX=DIR (e.g. AmlDatastore://image_data/=./images), "
                              f"got {item!r}", field="--prefix-map", value=item)
        out[prefix] = folder
    return out


def run(args: argparse.Namespace) -> int:
    from jupyter_avml.data.validate import classes_of, validate_jsonl
    from jupyter_avml.workspace import Workspace

    task = ImageTask.parse(args.task)
    prefix_map = parse_prefix_map(getattr(args, "prefix_map", None) or [])
    known = None
    if getattr(args, "known_classes_from", None):
        known = classes_of(args.known_classes_from, task)
    cache_dir = Workspace.resolve(getattr(args, "workspace", None)).cache_dir
    report = validate_jsonl(args.file, task, check_images=getattr(args, "check_images", True),
                            prefix_map=prefix_map or None, cache_dir=cache_dir, known_classes=known)
    print(report.format(MAX_PROBLEMS_SHOWN))
    return 0 if report.ok else 2
