"""``train CONFIG.yaml [--set KEY=VALUE ...]``, ``train --resume RUN_ID``: one model, in the foreground."""

from __future__ import annotations

import sys

from jupyter_avml.cli.overrides import SET_ARG
from jupyter_avml.cli.table import SHELL, Verb, add_verbs, arg
from jupyter_avml.errors import ConfigError


def load_run_config(path: str, overrides: list[str]):
    """The ``AutoMLImageConfig`` of a YAML file, with ``--set`` overrides on top (validated twice: the file
    with its line numbers, then the overridden settings)."""
    from jupyter_avml.cli.overrides import apply_overrides
    from jupyter_avml.config import AutoMLImageConfig

    config = AutoMLImageConfig.from_yaml(path)
    if not overrides:
        return config
    # The user's values (data paths already absolute): --set values' relative paths are from the current folder.
    return AutoMLImageConfig.from_dict(apply_overrides(config.user_values(), overrides), source=f"{path} with --set")


def resume_run(run_id: str, workspace, *, quiet: bool, command: str = "avml"):
    """Continue an interrupted run; its ``run.json`` is checked first (a damaged one is one clear error)."""
    from jupyter_avml.cli.records import open_run
    from jupyter_avml.training.run import resume

    record = open_run(workspace, run_id, command)
    return resume(record.run_id, workspace=workspace, callbacks=_callbacks(quiet))


def run_train(args, door=None):
    """Train (or resume) as asked; returns the ``RunSummary`` (a failure during training is recorded and
    raised by the trainer)."""
    from jupyter_avml.training.run import train

    quiet = bool(getattr(args, "json", False))
    if args.resume:
        if args.config:
            raise ConfigError("give either CONFIG or --resume RUN_ID, not both", field="--resume", value=args.resume)
        return resume_run(args.resume, args.workspace, quiet=quiet, command=getattr(door, "command", "avml"))
    if not args.config:
        raise ConfigError("a configuration file is required: avml train CONFIG.yaml", field="config")
    config = load_run_config(args.config, args.overrides)
    return train(config, workspace=args.workspace, callbacks=_callbacks(quiet))


def _callbacks(quiet: bool) -> list:
    from jupyter_avml.training.progress import ProgressBar

    return [] if quiet else [ProgressBar()]


def print_summary(summary, args=None, door=None, stream=None) -> None:
    """The end of a run, in three lines."""
    stream = stream or sys.stdout
    value = summary.primary_metric_value
    shown = f"{value:.4f}" if value is not None else "n/a"
    print(f"run {summary.run_id}: {summary.status}" + (f" ({summary.reason})" if summary.reason else ""), file=stream)
    print(f"  {summary.primary_metric} = {shown}" +
          (f" (best epoch {summary.best_epoch})" if summary.best_epoch else ""), file=stream)
    print(f"  model: {summary.model_path}", file=stream)


def run_exit_status(summary, args=None) -> int:
    """1 when the run failed, else 0."""
    return 1 if summary.status == "failed" else 0


VERBS = (
    Verb("train", "train one model from a YAML configuration", run_train,
         description="Train one model in the foreground (a progress bar per epoch). The YAML holds the spec's "
                     "settings (task, training_data, model_name, hyperparameters...). Exit status 1 when the "
                     "run failed.",
         args=(arg("config", nargs="?", metavar="CONFIG", help="YAML configuration file"),
               arg("--resume", metavar="RUN_ID", help="continue an interrupted run from its last checkpoint"),
               SET_ARG),
         text=print_summary, json=lambda summary, args: summary.to_dict(), exit_status=run_exit_status,
         failure=lambda summary, args: f"run {summary.run_id} failed" + (f": {summary.error}" if summary.error
                                                                          else "")),
)


def register(subparsers) -> None:
    """Add ``train`` to an ``avml`` subparsers (as ``cli/main.py`` does)."""
    add_verbs(subparsers, VERBS, SHELL, {})
