"""``validate FILE --task TASK``: check a JSONL file and list every problem (exit 0 when valid, 2 if not)."""

from __future__ import annotations

import argparse

from jupyter_avml.cli.table import SHELL, Verb, add_verbs, arg
from jupyter_avml.errors import ConfigError
from jupyter_avml.tasks import ImageTask

MAX_PROBLEMS_SHOWN = 50
TASK_HELP = "one of: " + ", ".join(t.value for t in ImageTask)


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


PREFIX_MAP_ARG = arg("--prefix-map", action="append", default=[], metavar="PREFIX=DIR",
                     help="read image URLs starting with PREFIX from the local folder DIR "
                          "(e.g. AmlDatastore://image_data/=./images); may be repeated")


def validate(args: argparse.Namespace, door=None):
    """The ``ValidationReport`` of ``args.file`` (the same checks training runs before it starts)."""
    from jupyter_avml.data.validate import classes_of, validate_jsonl
    from jupyter_avml.workspace import Workspace

    task = ImageTask.parse(args.task)
    prefix_map = parse_prefix_map(getattr(args, "prefix_map", None) or [])
    known = None
    if getattr(args, "known_classes_from", None):
        known = classes_of(args.known_classes_from, task)
    cache_dir = Workspace.resolve(getattr(args, "workspace", None)).cache_dir
    return validate_jsonl(args.file, task, check_images=getattr(args, "check_images", True),
                          prefix_map=prefix_map or None, cache_dir=cache_dir, known_classes=known)


def show_report(report, args, door) -> None:
    print(report.format(MAX_PROBLEMS_SHOWN))


def report_json(report, args) -> dict:
    return {"file": str(report.source), "task": report.task.value, "ok": report.ok, "rows": report.rows,
            "valid": len(report.records), "classes": report.classes,
            "problems": [str(p) for p in report.problems]}


VERBS = (
    Verb("validate", "check a JSONL file: label forms, coordinates, images", validate,
         description="Check every row of a JSONL file for a task and list all problems as "
                     "FILE:LINE: field: message (value). Exit status 0 when the file is valid, 2 otherwise.",
         args=(arg("file", metavar="FILE", help="the JSONL file"),
               arg("--task", required=True, metavar="TASK", help=TASK_HELP),
               arg("--no-image-check", dest="check_images", action="store_false",
                   help="do not decode the images (faster; missing or broken images go unnoticed)"),
               PREFIX_MAP_ARG,
               arg("--known-classes-from", metavar="TRAIN.jsonl", default=None,
                   help="the training file: rows naming classes it does not have are problems")),
         text=show_report, json=report_json, exit_status=lambda report, args: 0 if report.ok else 2),
)


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``validate`` to an ``avml`` subparsers (as ``cli/main.py`` does)."""
    return add_verbs(subparsers, VERBS, SHELL, {})["validate"]
