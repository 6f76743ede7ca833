"""``runs list`` and ``runs show RUN_ID``: the training runs of the workspace, read from their folders.

A run whose ``run.json`` is damaged is listed as ``damaged`` (with what can still be done); ``runs show`` of
such a run is one line saying so (``cli/records.py``).
"""

from __future__ import annotations

import json
import time

from jupyter_avml.cli.records import open_run, resume_hint, run_records
from jupyter_avml.cli.table import SHELL, Verb, add_verbs, arg

GROUP_HELP = "list and inspect training runs"


def list_runs(args, door=None):
    return run_records(args.workspace, getattr(door, "command", "avml"))


def show_run_list(records, args, door) -> None:
    if not records:
        print("no runs yet (avml train CONFIG.yaml)")
        return
    print(f"{'run id':34} {'created':16} {'task':32} {'model':24} {'status':17} metric")
    for record in records:
        info = record.info
        value = info.get("primary_metric_value")
        metric = f"{info.get('primary_metric', '')}={value:.4f}" if isinstance(value, (int, float)) else ""
        created = info.get("created")
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if isinstance(created, (int, float)) \
            else "-"
        print(f"{record.run_id:34} {created:16} {str(info.get('task', '')):32} {str(info.get('model_name', '')):24} "
              f"{record.status:17} {metric}".rstrip())
        if record.problem:
            print(f"    {record.problem}")
        elif record.status == "interrupted":
            print(f"    {resume_hint(record.run_id, getattr(door, 'command', 'avml'))}")


def show_run_verb(args, door=None) -> dict:
    """The run's record, status, final metrics and per-epoch metrics."""
    record = open_run(args.workspace, args.run_id, getattr(door, "command", "avml"))
    info = record.to_dict()
    info["output_dir"] = str(record.folder / "outputs")
    metrics_file = record.folder / "outputs" / "metrics.json"
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.exists() else {}
    except ValueError:
        metrics = {}
        info["metrics_error"] = f"{metrics_file} is damaged (not valid JSON): the metrics are not shown"
    metrics = metrics if isinstance(metrics, dict) else {}
    info["metrics"] = metrics.get("final", {})
    info["per_epoch"] = metrics.get("per_epoch", [])
    return info


def show_run(info, args, door) -> None:
    for key in ("run_id", "task", "model_name", "status", "reason", "error", "primary_metric",
                "primary_metric_value", "best_epoch", "model_path", "output_dir", "metrics_error"):
        if info.get(key) is not None:
            print(f"{key:22} {info[key]}")
    if info["status"] == "interrupted":
        print(f"{'':22} {resume_hint(info['run_id'], getattr(door, 'command', 'avml'))}")
    if info["metrics"]:
        print("metrics:")
        for name, value in sorted(info["metrics"].items()):
            print(f"  {name:36} {value:.4f}" if isinstance(value, (int, float)) else f"  {name:36} {value}")


VERBS = (
    Verb("runs list", "one line per run, newest first", list_runs, text=show_run_list,
         json=lambda records, args: [record.to_dict() for record in records]),
    Verb("runs show", "status, metrics and files of one run", show_run_verb,
         args=(arg("run_id", metavar="RUN_ID", help="run id (or a unique prefix of 6+ characters)"),),
         text=show_run, json=lambda info, args: info),
)


def register(subparsers) -> None:
    """Add ``runs`` and its commands to an ``avml`` subparsers (as ``cli/main.py`` does)."""
    add_verbs(subparsers, VERBS, SHELL, {"runs": GROUP_HELP})
