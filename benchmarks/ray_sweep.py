"""Benchmark of the Ray executor: the same sweep on a 2-node local Ray cluster and on the local executor.

    python benchmarks/ray_sweep.py                   # 8 children of 4 epochs, 2 slots each way
    python benchmarks/ray_sweep.py --children 12 --epochs 6 --repeat 2

Both sweeps have the same total slots: the local executor runs ``cpu_slots: 2`` worker processes (one torch
thread each); the Ray executor runs on a cluster of two nodes started here on 127.0.0.1 (``ray.cluster_utils``),
one CPU each, with ``cpus_per_child: 1``. Printed, side by side, from the runs' own events:

1. Throughput: children per minute, end to end (submit to the experiment's end: driver start, cluster join,
   first workers) and in steady state (first ``RunStarted`` to last ``RunFinished``); the ratio Ray / local,
   target >= 0.9 in steady state (Ray's overhead small).
2. Dispatch latency: on each slot (a node for Ray), from a child's ``RunFinished`` to the next child's
   ``RunStarted`` and to its first ``EpochStarted`` (median). Local workers are warm spares; a Ray node's
   worker process is reused between children of one driver (warm after its first child).

The machine running it also runs the cluster's own processes (GCS, raylets); on a machine shared with other
work the figures include that load (the script prints the load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

THROUGHPUT_TARGET = 0.9
SMALL = dict(task="image-classification", model_name="resnet18", pretrained=0, train_crop_size=32,
             valid_resize_size=32, valid_crop_size=32, training_batch_size=16, validation_batch_size=32,
             early_stopping=0, optimizer="sgd", log_every_n_batches=1)
NODE = dict(num_cpus=1, node_ip_address="127.0.0.1", object_store_memory=80 * 1024 * 1024, include_log_monitor=False)


def start_cluster(temp: str):
    """A head node and a worker node, one CPU each, on loopback; Ray writes under ``temp`` only."""
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_TMPDIR=temp)
    os.makedirs(os.path.join(temp, "ray"), exist_ok=True)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={**NODE, "include_dashboard": False, "temp_dir": os.path.join(temp, "ray")})
    cluster.add_node(**NODE)
    cluster.wait_for_nodes(timeout=120)
    return cluster


def run_sweep(workspace: Path, name: str, config: dict):
    from jupyter_avml.sweep import Experiment

    submitted = time.time()
    handle = Experiment(name, workspace).submit(config)
    state = handle.wait(timeout=3 * 3600)
    if state.status != "completed":
        raise SystemExit(f"sweep {name} ended {state.status}: {state.error or state.reason}")
    return handle, state, submitted


def measure(workspace: Path, handle, state, submitted: float, place_key: str) -> dict:
    """Throughput and dispatch latencies of a finished sweep; ``place_key`` groups children by slot or node."""
    from jupyter_avml.runs.events import EpochStarted, RunFinished, RunStarted, read_events

    by_place: dict[str, list] = {}
    for child in state.children:
        info = json.loads((handle.folder / "children" / f"{child.id}.json").read_text())
        events, _ = read_events(workspace / "runs" / child.run_id / "events.jsonl")
        by_place.setdefault(str(info[place_key]), []).append({
            "start": next(e.time for e in events if isinstance(e, RunStarted)),
            "epoch": next(e.time for e in events if isinstance(e, EpochStarted)),
            "finish": next(e.time for e in events if isinstance(e, RunFinished))})
    to_start, to_epoch = [], []
    for runs in by_place.values():
        runs.sort(key=lambda r: r["start"])
        for previous, following in zip(runs, runs[1:], strict=False):
            to_start.append(following["start"] - previous["finish"])
            to_epoch.append(following["epoch"] - previous["finish"])
    first = min(r["start"] for runs in by_place.values() for r in runs)
    last = max(r["finish"] for runs in by_place.values() for r in runs)
    children = len(state.children)
    return {"end_to_end": 60 * children / (state.ended - submitted), "steady": 60 * children / (last - first),
            "to_start": statistics.median(to_start) if to_start else float("nan"),
            "to_epoch": statistics.median(to_epoch) if to_epoch else float("nan"),
            "places": len(by_place), "startup": first - submitted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--children", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--images", type=int, default=80)
    parser.add_argument("--repeat", type=int, default=1, help="run both sweeps this many times (alternating)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    from jupyter_avml.data.shapes import make_shapes

    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    temp = tempfile.mkdtemp(prefix="avml-ray-", dir="/tmp")  # short: Ray's socket paths are limited
    cluster = start_cluster(temp)
    results: dict[str, list] = {"local": [], "ray": []}
    try:
        with tempfile.TemporaryDirectory(prefix="avml-bench-ray-") as tmp:
            workspace = Path(tmp) / "ws"
            data = make_shapes(Path(tmp) / "data", "image-classification", n=args.images, size=32, seed=0,
                               color_by_class=True)
            rates = ", ".join(str(round(0.01 + 0.004 * i, 4)) for i in range(args.children))
            base = {**SMALL, "training_data": str(data), "number_of_epochs": args.epochs, "sampling": "grid",
                    "iterations": args.children, "max_concurrent_iterations": 2,
                    "search_space": {"learning_rate": f"choice({rates})"}}
            for round_ in range(args.repeat):
                for label, extra, key in (
                        ("local", {"device": "cpu", "cpu_threads": 1, "cpu_slots": 2}, "slot"),
                        ("ray", {"executor": "ray", "ray_address": cluster.address, "cpus_per_child": 1}, "node_id")):
                    handle, state, submitted = run_sweep(workspace, f"bench-{label}-{round_}", {**base, **extra})
                    figures = measure(workspace, handle, state, submitted, key)
                    results[label].append(figures)
                    print(f"  {label:5} round {round_ + 1}: {figures['steady']:.2f} children/min steady, "
                          f"{figures['end_to_end']:.2f} end to end ({figures['startup']:.1f} s to the first run), "
                          f"dispatch: next run record {figures['to_start']:.2f} s, next first epoch "
                          f"{figures['to_epoch']:.2f} s after a child's end; {figures['places']} slots/nodes used")
    finally:
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)

    def mean(label: str, key: str) -> float:
        return statistics.mean(r[key] for r in results[label])

    steady = mean("ray", "steady") / mean("local", "steady")
    end_to_end = mean("ray", "end_to_end") / mean("local", "end_to_end")
    verdict = "PASS" if steady >= THROUGHPUT_TARGET else "FAIL"
    print(f"\n{args.children} children of {args.epochs} epochs, 2 slots each way ({args.repeat} round(s))")
    print(f"  throughput Ray / local: {steady:.2f} steady state (target >= {THROUGHPUT_TARGET}: {verdict}), "
          f"{end_to_end:.2f} end to end")
    for label in ("local", "ray"):
        print(f"  dispatch latency {label:5}: next run record {mean(label, 'to_start'):.2f} s, next first epoch "
              f"{mean(label, 'to_epoch'):.2f} s after a child's end (median)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0 if steady >= THROUGHPUT_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
