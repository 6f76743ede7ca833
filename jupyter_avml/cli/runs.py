"""``avml runs list`` and ``avml runs show RUN_ID [--json]``: runs of the workspace, from their folders."""

from __future__ import annotations

import json
import time

from jupyter_avml.workspace import Workspace


def register(subparsers) -> None:
    parser = subparsers.add_parser("runs", help="list and inspect training runs")
    verbs = parser.add_subparsers(dest="runs_verb", metavar="ACTION", required=True)
    listing = verbs.add_parser("list", help="one line per run, newest first")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=run_list)
    show = verbs.add_parser("show", help="status, metrics and files of one run")
    show.add_argument("run_id", help="run id (or a unique prefix of 6+ characters)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=run_show)


def run_infos(workspace: Workspace) -> list[dict]:
    from jupyter_avml.training.run import read_run_json, run_status

    infos = []
    if workspace.runs_dir.is_dir():
        for run_dir in workspace.runs_dir.iterdir():
            info = read_run_json(run_dir)
            if info:
                info["status"] = run_status(info)
                infos.append(info)
    return sorted(infos, key=lambda i: i.get("created", 0), reverse=True)


def run_list(args) -> int:
    infos = run_infos(Workspace.resolve(args.workspace))
    if args.json:
        print(json.dumps(infos))
        return 0
    if not infos:
        print("no runs yet (avml train CONFIG.yaml)")
        return 0
    print(f"{'run id':34} {'created':16} {'task':32} {'model':24} {'status':17} metric")
    for info in infos:
        value = info.get("primary_metric_value")
        metric = f"{info.get('primary_metric', '')}={value:.4f}" if isinstance(value, (int, float)) else ""
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.get("created", 0)))
        print(f"{info['run_id']:34} {created:16} {info.get('task', ''):32} {info.get('model_name', ''):24} "
              f"{info['status']:17} {metric}")
    return 0


def run_show(args) -> int:
    from jupyter_avml.training.run import find_run_dir, read_run_json, run_status

    workspace = Workspace.resolve(args.workspace)
    run_dir = find_run_dir(workspace, args.run_id)
    info = read_run_json(run_dir)
    info["status"] = run_status(info)
    info["output_dir"] = str(run_dir / "outputs")
    metrics_file = run_dir / "outputs" / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    info["metrics"] = metrics.get("final", {})
    info["per_epoch"] = metrics.get("per_epoch", [])
    if args.json:
        print(json.dumps(info))
        return 0
    for key in ("run_id", "task", "model_name", "status", "reason", "error", "primary_metric",
                "primary_metric_value", "best_epoch", "model_path", "output_dir"):
        if info.get(key) is not None:
            print(f"{key:22} {info[key]}")
    if info["metrics"]:
        print("metrics:")
        for name, value in sorted(info["metrics"].items()):
            print(f"  {name:36} {value:.4f}" if isinstance(value, (int, float)) else f"  {name:36} {value}")
    return 0
