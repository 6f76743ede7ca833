"""``qa``: visual QA in FiftyOne from the shell and the notebook (``jupyter_avml.qa`` does the work).

    avml qa check FILE --task TASK            the data alone, avml validate's numbers, in FiftyOne
    avml qa import SOURCE [--task TASK]       a registered dataset (or a JSONL file) as a FiftyOne dataset
    avml qa predict DATASET MODEL             predictions of a run, an experiment's child or a registered model
    avml qa evaluate DATASET [--field F]      FiftyOne's evaluation beside ours, and the saved views of mistakes
    avml qa mistakes DATASET [--field F]      mistakenness, hardness, near-duplicates, 2-D map
    avml qa review TARGET [--child ID] [--view NAME]   all of it, then the App on 127.0.0.1
    avml qa export DATASET [--name NAME]      tags and label edits back as a new dataset version

``avml qa TARGET`` (no command) is ``avml qa review TARGET``, and ``%avml qa TARGET`` too: in a notebook the
App opens in the output cell while predictions are computed in the background (``--var`` keeps the ``Review``).
DATASET is a registered dataset, ``dataset:NAME:VERSION``, a JSONL file (with ``--task``) or the FiftyOne name
``avml-...`` that ``qa import`` prints.
"""

from __future__ import annotations

import sys

from jupyter_avml.cli.table import NOTEBOOK, SHELL, Verb, arg
from jupyter_avml.tasks import ImageTask

GROUP_HELP = "visual QA in FiftyOne: look at the data and the model's mistakes, fix, feed back"
DEFAULT_COMMAND = "review"  # `avml qa TARGET` means `avml qa review TARGET`
TASK_HELP = "the task of a JSONL file: " + ", ".join(t.value for t in ImageTask)

DATASET_ARG = arg("dataset", metavar="DATASET",
                  help="a registered dataset, dataset:NAME:VERSION, a JSONL file (with --task) or avml-... (FiftyOne)")
TASK_ARG = arg("--task", default=None, metavar="TASK", help=TASK_HELP)
FIELD_ARG = arg("--field", default=None, metavar="FIELD",
                help="the prediction field (default: the one added last)")
CHILD_ARG = arg("--child", type=int, default=None, metavar="ID",
                help="the experiment's child (default: its best child)")
SETTING_ARG = arg("--setting", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                  help="an inference setting of the model (load_model's, e.g. box_score_thresh=0.1); repeatable")


def _settings(args) -> dict:
    from jupyter_avml.cli.overrides import parse_override

    out = {}
    for item in args.settings:
        keys, value = parse_override(item)
        out[".".join(keys)] = value
    return out


def _dataset(args):
    from jupyter_avml.qa.importer import open_dataset

    return open_dataset(args.dataset, task=getattr(args, "task", None), workspace=args.workspace)


def _print(result, args, door) -> None:
    print(repr(result))


# -- the verbs ------------------------------------------------------------------------------------------------------
def check_verb(args, door=None):
    from jupyter_avml.qa.check import check_data

    return check_data(args.file, task=args.task, workspace=args.workspace, tiny_px=args.tiny_px)


def import_verb(args, door=None):
    from jupyter_avml.qa.importer import to_fiftyone

    return to_fiftyone(args.source, task=args.task, name=args.name, workspace=args.workspace,
                       split_ratio=args.split_ratio, seed=args.seed)


def dataset_text(dataset) -> str:
    info = dataset.info.get("avml") or {}
    tags = ", ".join(f"{tag} {count}" for tag, count in sorted(dataset.count_sample_tags().items()))
    origin = info.get("reference") or info.get("source")
    return (f"FiftyOne dataset {dataset.name}: {len(dataset)} samples ({tags}) of {origin}"
            f"\n  task: {info.get('task')}; classes: {', '.join(info.get('classes') or [])}")


def dataset_json(dataset) -> dict:
    info = dataset.info.get("avml") or {}
    return {"dataset": dataset.name, "samples": len(dataset), "tags": dataset.count_sample_tags(),
            "reference": info.get("reference"), "task": info.get("task"), "classes": info.get("classes")}


def predict_verb(args, door=None):
    from jupyter_avml.qa.predict import add_predictions

    dataset = _dataset(args)
    field = add_predictions(dataset, args.model, child=args.child, field=args.field, workspace=args.workspace,
                            overwrite=args.overwrite, **_settings(args))
    return dataset, field


def evaluate_verb(args, door=None):
    from jupyter_avml.qa.evaluation import evaluate

    return evaluate(_dataset(args), args.field, split=args.split, workspace=args.workspace)


def evaluation_json(result, args) -> dict:
    return {"eval_key": result.eval_key, "field": result.field, "task": result.task, "samples": result.samples,
            "fiftyone": result.metrics, "ours": result.ours, "map_difference": result.map_difference,
            "views": result.views, "note": result.note}


def mistakes_verb(args, door=None):
    from jupyter_avml.qa.brain import find_mistakes

    return find_mistakes(_dataset(args), args.field, workspace=args.workspace)


def review_verb(args, door=None):
    from jupyter_avml.qa.app import review

    notebook = door is not None and door.name == NOTEBOOK
    return review(args.target, child=args.child, view=args.view, task=args.task, workspace=args.workspace,
                  port=args.port, background=notebook, **_settings(args))


def review_text(result, args, door) -> int:
    """The shell serves the App until Ctrl-C."""
    print(result.text())
    print(f"FiftyOne App: {result.url}  (Ctrl-C to stop)", flush=True)
    try:
        result.session.wait(-1)
    except KeyboardInterrupt:
        print("stopped the App", file=sys.stderr)
    return 0


def review_display(result, args, door) -> None:
    """The notebook shows the App (FiftyOne displays it) and the review, whose picture fills in once ready."""
    from jupyter_avml.qa.app import DISPLAYS

    if args.var:
        door.bind(args.var, result)
    DISPLAYS.show(result, getattr(getattr(door, "magics", None), "shell", None))


def export_verb(args, door=None):
    from jupyter_avml.qa.feedback import EXCLUDE_TAG, export

    return export(_dataset(args), name=args.name, drop_tags=tuple(args.drop_tags or (EXCLUDE_TAG,)),
                  description=args.description, workspace=args.workspace)


VERBS = (
    Verb("qa check", "the data alone in FiftyOne: avml validate's numbers, duplicates, tiny boxes, unreadable images",
         check_verb,
         description="Validate FILE as `avml validate` does (same report, same numbers) and build a FiftyOne dataset "
                     "of it: exact duplicate images, tiny and degenerate objects and unreadable images are tagged.",
         args=(arg("file", metavar="FILE", help="the JSONL file"), arg("--task", required=True, help=TASK_HELP),
               arg("--tiny-px", type=float, default=4.0, metavar="PX",
                   help="objects with a side under PX pixels are tagged tiny (default 4)")),
         text=_print, json=lambda result, args: result.counts()),
    Verb("qa import", "a registered dataset (or a JSONL file, registered on the way) as a FiftyOne dataset",
         import_verb,
         description="Build (or reuse) the persistent FiftyOne dataset of a dataset version: ground truth, split "
                     "tags, the row of each sample, exact duplicates.",
         args=(arg("source", metavar="SOURCE", help="a registered dataset, dataset:NAME:VERSION or a JSONL file"),
               TASK_ARG, arg("--name", default=None, help="the registry name of a JSONL file (default: its stem)"),
               arg("--split-ratio", type=float, default=0.2, help="the validation share the tags show (0.2)"),
               arg("--seed", type=int, default=0, help="the split's seed (0)")),
         text=lambda result, args, door: print(dataset_text(result)), json=lambda result, args: dataset_json(result)),
    Verb("qa predict", "add a model's predictions (logits, embeddings) to a FiftyOne dataset", predict_verb,
         description="Predict every image of DATASET with MODEL through load_model (the run's inference settings), "
                     "into a field named after the run; an interrupted run resumes.",
         args=(DATASET_ARG, arg("model", metavar="MODEL",
                                help="a run id, an experiment (its best child), models:/NAME/VERSION or a model file"),
               CHILD_ARG, TASK_ARG, arg("--field", default=None, help="the field (default: named after the run)"),
               arg("--overwrite", action="store_true", help="predict every sample again"), SETTING_ARG),
         text=lambda result, args, door: print(f"{result[0].name}: predictions in {result[1]}"),
         json=lambda result, args: {"dataset": result[0].name, "field": result[1]}),
    Verb("qa evaluate", "FiftyOne's evaluation of a prediction field beside ours; saved views of mistakes",
         evaluate_verb,
         args=(DATASET_ARG, FIELD_ARG, TASK_ARG,
               arg("--split", default=None, choices=("train", "validation"), help="only the samples of this split")),
         text=_print, json=evaluation_json),
    Verb("qa mistakes", "likely label errors and hard samples (fiftyone.brain), near-duplicates, a 2-D map",
         mistakes_verb, args=(DATASET_ARG, FIELD_ARG, TASK_ARG), text=_print,
         json=lambda result, args: {"field": result.field, "views": result.views, "ranked": result.ranked,
                                    "near_duplicates": result.near_duplicates, "map": result.map_key}),
    Verb("qa review", "open a dataset, an experiment or a run in the FiftyOne App (127.0.0.1) on a view of mistakes",
         review_verb,
         description="Import, predict, evaluate and find mistakes as needed, then serve the App on 127.0.0.1 on VIEW "
                     "(default: mistakenness). `qa TARGET` is short for `qa review TARGET`.",
         args=(arg("target", metavar="TARGET", help="a dataset, an experiment (its best child) or a run"),
               CHILD_ARG, arg("--view", default=None, metavar="NAME",
                              help="a saved view: errors, false-positives, false-negatives, low-confidence, "
                                   "mistakenness, class-NAME... (default: mistakenness)"),
               TASK_ARG, arg("--port", type=int, default=None, help="the App's port (default: FiftyOne's, 5151)"),
               SETTING_ARG,
               arg("--var", default=None, metavar="VAR", doors={NOTEBOOK},
                   help="put the Review (dataset, session, evaluation) in the Python variable VAR")),
         text=review_text, display=review_display),
    Verb("qa export", "tags (exclude, mislabeled) and label edits back as a new dataset version", export_verb,
         description="Register what the FiftyOne dataset holds now as the next version of its dataset (the original "
                     "is never changed): rows tagged exclude are left out, edited labels are kept.",
         args=(DATASET_ARG, TASK_ARG, arg("--name", default=None, help="register under this name (default: the same)"),
               arg("--drop-tag", dest="drop_tags", action="append", default=[], metavar="TAG",
                   help="leave out samples and objects with this tag (default: exclude); repeatable"),
               arg("--description", default="", help="stored with the new version")),
         text=_print, json=lambda result, args: result.to_json()),
)


def register(subparsers):
    """Add ``qa`` and its commands to an ``avml`` subparsers."""
    from jupyter_avml.cli.table import add_verbs

    return add_verbs(subparsers, VERBS, SHELL, {"qa": GROUP_HELP})["qa"]
