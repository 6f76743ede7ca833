"""``convert FORMAT SRC -o OUT``: COCO, Pascal VOC, YOLO, image folders and multi-label CSV to JSONL;
``avml convert jsonl SRC.jsonl -o OUT.json --task TASK`` (or any FORMAT with ``--to-coco``) writes COCO json.

Exit status 0 when something was written (dropped items are listed, they do not fail the command), 2 when
nothing could be converted or the input is unusable.
"""

from __future__ import annotations

import argparse
import sys

from jupyter_avml.cli.table import SHELL, Verb, add_verbs, arg
from jupyter_avml.errors import DataError
from jupyter_avml.tasks import ImageTask

FORMAT_NAMES = ("coco", "voc", "yolo", "folder", "csv", "jsonl")
MAX_DROPPED_SHOWN = 50

# CLI flag -> keyword option of ``jupyter_avml.data.convert.convert``
_OPTIONS = {"images": "images_dir", "annotations": "annotations_dir", "masks": "masks_dir", "label": "label",
            "split": "split"}


ARGS = (
    arg("format", metavar="FORMAT", help="one of: " + ", ".join(FORMAT_NAMES)),
    arg("src", metavar="SRC", help="the source file or folder"),
    arg("-o", "--output", required=True, metavar="OUT",
        help="the file to write (OUT.jsonl; OUT.json with --to-coco or FORMAT jsonl)"),
    arg("--task", default=None, metavar="TASK",
        help="one of: " + ", ".join(t.value for t in ImageTask) + " (default: what the format gives; "
             "required for FORMAT jsonl)"),
    arg("--images", default=None, metavar="DIR", help="coco, voc, csv: the images folder"),
    arg("--annotations", default=None, metavar="DIR", help="voc: the folder of .xml files"),
    arg("--masks", default=None, metavar="DIR",
        help="voc: per-instance mask PNGs (pixel value k = the k-th object) for instance segmentation"),
    arg("--label", default=None, metavar="NAME", help="voc with --masks: the class of mask instances that have no xml"),
    arg("--split", default=None, choices=("train", "val", "test"), help="yolo: the split (train)"),
    arg("--to-coco", action="store_true", help="write COCO json instead of JSONL"),
)


def run_convert(args: argparse.Namespace, door=None):
    """Convert ``args.src``; returns the ``ConversionReport``. Nothing written: the dropped items are printed
    to stderr and the ``DataError`` is raised (exit status 2)."""
    from jupyter_avml.data.convert import convert

    options = {key: getattr(args, flag) for flag, key in _OPTIONS.items() if getattr(args, flag, None) is not None}
    output_format = "coco" if getattr(args, "to_coco", False) else "jsonl"
    try:
        return convert(args.format, args.src, args.output, task=args.task, output_format=output_format, **options)
    except DataError as exc:
        for line in _limited(exc.problems):
            print(f"  {line}", file=sys.stderr)
        raise


def show_report(report, args, door) -> None:
    print(report.summary())
    for line in report.dropped_lines(MAX_DROPPED_SHOWN):
        print(f"  {line}")


def report_json(report, args) -> dict:
    return {"output": str(report.output), "task": report.task.value, "written": report.written,
            "objects": report.objects, "classes": report.classes, "dropped": report.dropped, "notes": report.notes}


VERBS = (
    Verb("convert", "convert COCO, Pascal VOC, YOLO, image folders or a multi-label CSV to JSONL (or to COCO)",
         run_convert, args=ARGS, text=show_report, json=report_json,
         description="Convert a dataset into the JSONL the trainer reads (image_url relative to the output file). "
                     "FORMAT: coco (SRC = the annotation json), voc (SRC = the dataset folder with Annotations/ "
                     "and JPEGImages/), yolo (SRC = data.yaml or the dataset folder), folder (SRC = one sub-folder "
                     "per class), csv (SRC = 'path,label1 label2' rows: multi-label), jsonl (SRC = a JSONL file: "
                     "written as COCO json, needs --task). Items that cannot be converted are listed and left out."),
)


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``convert`` to an ``avml`` subparsers (as ``cli/main.py`` does)."""
    return add_verbs(subparsers, VERBS, SHELL, {})["convert"]


def _limited(items: list) -> list[str]:
    lines = [str(item) for item in items[:MAX_DROPPED_SHOWN]]
    if len(items) > MAX_DROPPED_SHOWN:
        lines.append(f"... and {len(items) - MAX_DROPPED_SHOWN} more")
    return lines
