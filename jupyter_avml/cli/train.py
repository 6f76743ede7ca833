"""``avml train CONFIG.yaml``, ``avml train --resume RUN_ID``."""

from __future__ import annotations

import json
import sys

from jupyter_avml.errors import ConfigError


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train one model from a YAML configuration",
                                   description="Train one model. The YAML holds the spec's settings "
                                               "(task, training_data, model_name, hyperparameters...).")
    parser.add_argument("config", nargs="?", help="YAML configuration file")
    parser.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run from its last checkpoint")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of the YAML (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary instead of progress")
    parser.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict[str, object]:
    import yaml

    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}", field="--set", value=item)
        values[key.strip()] = yaml.safe_load(text) if text.strip() else None
    return values


def run(args) -> int:
    from jupyter_avml.config import AutoMLImageConfig
    from jupyter_avml.training.progress import ProgressBar
    from jupyter_avml.training.run import resume, train

    callbacks = [] if args.json else [ProgressBar()]
    if args.resume:
        if args.config:
            raise ConfigError("give either CONFIG or --resume RUN_ID, not both", field="--resume", value=args.resume)
        summary = resume(args.resume, workspace=args.workspace, callbacks=callbacks)
    else:
        if not args.config:
            raise ConfigError("a configuration file is required: avml train CONFIG.yaml", field="config")
        config = AutoMLImageConfig.from_yaml(args.config)
        if args.overrides:
            config = config.replace(**parse_overrides(args.overrides))
        summary = train(config, workspace=args.workspace, callbacks=callbacks)
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        print_summary(summary)
    return 0 if summary.status != "failed" else 1


def print_summary(summary, stream=None) -> None:
    stream = stream or sys.stdout
    value = summary.primary_metric_value
    shown = f"{value:.4f}" if value is not None else "n/a"
    print(f"run {summary.run_id}: {summary.status}" + (f" ({summary.reason})" if summary.reason else ""), file=stream)
    print(f"  {summary.primary_metric} = {shown}" +
          (f" (best epoch {summary.best_epoch})" if summary.best_epoch else ""), file=stream)
    print(f"  model: {summary.model_path}", file=stream)
