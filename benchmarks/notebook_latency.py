"""How quick the notebook side feels, measured through a real kernel (jupyter_client), as a front end sees it.

1. ``%load_ext jupyter_avml``: seconds in a fresh kernel, and whether it imported anything heavy.
2. A ``%%avml`` cell: seconds from sending it to the dashboard's display message, and to the cell's reply.
3. Update latency: for every epoch of every child, seconds from the run's ``EpochMetrics`` event (its time in
   ``events.jsonl``) to the first widget update message carrying that epoch (a ``comm_msg`` on iopub, which
   is what the browser receives). Target: under 2 s.

Usage::

    python benchmarks/notebook_latency.py [--children 2] [--epochs 3] [--images 48] [--json out.json]

Runs in a temporary folder (data, workspace) that it deletes at the end.
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROW = re.compile(r'data-child="(\d+)" data-status="(\w+)" data-epoch="(\d+)"')

LOAD_CODE = """
import sys, time
_before = set(sys.modules)
_t = time.perf_counter()
get_ipython().run_line_magic("load_ext", "jupyter_avml")
_took = time.perf_counter() - _t
_heavy = sorted({m.split(".")[0] for m in set(sys.modules) - _before} & {
    "torch", "torchvision", "timm", "mlflow", "pandas", "ipywidgets", "matplotlib", "optuna", "numpy"})
print(repr((_took, _heavy)))
"""


def cell_source(folder: Path, children: int, epochs: int) -> str:
    rates = ", ".join(str(round(0.01 * (k + 1), 3)) for k in range(children))
    return f"""%%avml latency --workspace {folder / 'workspace'}
task: image-classification
training_data: {folder / 'data' / 'multiclass.jsonl'}
model_name: resnet18
pretrained: 0
number_of_epochs: {epochs}
train_crop_size: 32
valid_resize_size: 32
valid_crop_size: 32
cpu_threads: 1
training_batch_size: 8
log_every_n_batches: 1
sampling: grid
search_space:
  learning_rate: choice({rates})
iterations: {children}
max_concurrent_iterations: {children}
"""


def execute(client, code: str, timeout: float = 120) -> tuple[str, list[dict]]:
    """Run ``code``; returns (status, iopub messages of that request)."""
    msg_id = client.execute(code)
    messages = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = client.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") == msg_id:
            messages.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
    reply = client.get_shell_msg(timeout=timeout)
    return reply["content"]["status"], messages


def record(out: Path, recorded: list[dict], final: dict, workspace: Path) -> None:
    """Write the recording: times relative to the first state, run ids kept, paths of this machine dropped."""

    if not recorded or recorded[-1]["state"] != final:
        recorded.append({"t": time.time(), "state": final})
    start = recorded[0]["t"]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "states.jsonl", "w", encoding="utf-8") as handle:
        for item in recorded:
            state = dict(item["state"])
            state["children"] = [{**c, "model_path": None} for c in state["children"]]
            handle.write(json.dumps({"t": round(item["t"] - start, 3), "state": state}) + "\n")
    for child in final["children"]:
        if child.get("run_id"):
            target = out / "runs" / child["run_id"] / "events.jsonl"
            target.parent.mkdir(parents=True, exist_ok=True)
            lines = []
            for line in (workspace / "runs" / child["run_id"] / "events.jsonl").read_text().splitlines():
                event = json.loads(line)
                event["time"] = round(event["time"] - start, 3)
                for key in ("output_dir", "path", "model_path"):
                    if event.get(key):
                        event[key] = Path(event[key]).name
                event.pop("config", None)
                lines.append(json.dumps(event))
            target.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the sweep")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--record", default=None, metavar="DIR",
                        help="also record the sweep for replay tests: every distinct state.json as it was seen "
                             "(DIR/states.jsonl) and each child's events (DIR/runs/<run_id>/events.jsonl)")
    args = parser.parse_args(argv)

    from jupyter_client.manager import start_new_kernel

    from jupyter_avml.data.shapes import make_shapes
    from jupyter_avml.training.events import EpochMetrics, read_events

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="avml-latency-") as tmp:
        folder = Path(tmp)
        make_shapes(folder / "data", "image-classification", n=args.images, size=32, seed=0, color_by_class=True)
        manager, client = start_new_kernel(kernel_name="python3", cwd=str(folder))
        try:
            # 1. %load_ext
            status, messages = execute(client, LOAD_CODE)
            printed = "".join(m["content"].get("text", "") for m in messages if m["msg_type"] == "stream")
            took, heavy = eval(printed.strip().splitlines()[-1])  # noqa: S307 - our own repr
            results["load_ext_seconds"] = round(took, 4)
            results["load_ext_heavy_imports"] = heavy

            # 2. the cell: to the dashboard's display, to the reply
            sent = time.time()
            msg_id = client.execute(cell_source(folder, args.children, args.epochs))
            shown = replied = None
            updates: dict[tuple[int, int], float] = {}
            deadline = time.monotonic() + args.timeout
            final = False
            recorded: list[dict] = []
            state_file = folder / "workspace" / "experiments" / "latency" / "state.json"
            next_look = 0.0
            while time.monotonic() < deadline and not (final and replied):
                if args.record and time.monotonic() >= next_look:
                    next_look = time.monotonic() + 0.1
                    try:
                        seen = json.loads(state_file.read_text())
                    except (OSError, ValueError):
                        seen = None
                    if seen is not None and (not recorded or recorded[-1]["state"] != seen):
                        recorded.append({"t": time.time(), "state": seen})
                try:
                    msg = client.get_iopub_msg(timeout=0.05)
                except queue.Empty:
                    msg = None
                now = time.time()
                if msg is not None:
                    kind, content = msg["msg_type"], msg["content"]
                    if kind == "display_data" and msg["parent_header"].get("msg_id") == msg_id and \
                            "application/vnd.jupyter.widget-view+json" in content.get("data", {}):
                        shown = shown or now
                    elif kind == "error":
                        raise RuntimeError("the cell failed: " + content.get("evalue", ""))
                    elif kind == "comm_msg":
                        value = content.get("data", {}).get("state", {}).get("value", "")
                        if isinstance(value, str) and 'class="avml-leaderboard"' in value:
                            for child, _, epoch in ROW.findall(value):
                                for e in range(1, int(epoch) + 1):
                                    updates.setdefault((int(child), e), now)
                        if isinstance(value, str) and 'class="avml-header"' in value and \
                                re.search(r'data-status="(completed|stopped|timed_out|failed)"', value):
                            final = True
                if replied is None:
                    try:
                        reply = client.get_shell_msg(timeout=0)
                        if reply["parent_header"].get("msg_id") == msg_id:
                            replied = now
                            if reply["content"]["status"] != "ok":
                                raise RuntimeError(f"the cell failed: {reply['content']}")
                    except queue.Empty:
                        pass
            if not final:
                raise TimeoutError(f"the sweep did not finish within {args.timeout} s")
            results["cell_to_dashboard_seconds"] = round(shown - sent, 3) if shown else None
            results["cell_to_reply_seconds"] = round(replied - sent, 3) if replied else None

            # 3. epoch end -> widget update on the wire
            state = json.loads((folder / "workspace" / "experiments" / "latency" / "state.json").read_text())
            latencies = []
            for child in state["children"]:
                events, _ = read_events(folder / "workspace" / "runs" / child["run_id"] / "events.jsonl")
                for event in events:
                    if isinstance(event, EpochMetrics) and (child["id"], event.epoch) in updates:
                        latencies.append(updates[(child["id"], event.epoch)] - event.time)
            results["epoch_updates"] = len(latencies)
            if args.record:
                record(Path(args.record), recorded, json.loads(state_file.read_text()), folder / "workspace")
            if latencies:
                results["update_latency_seconds"] = {
                    "min": round(min(latencies), 3), "median": round(statistics.median(latencies), 3),
                    "max": round(max(latencies), 3)}
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
            from jupyter_avml.sweep.experiment import attach

            try:
                attach("latency", folder / "workspace").stop()
            except Exception:  # noqa: BLE001 - nothing to stop
                pass
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    lat = results.get("update_latency_seconds")
    if lat and lat["max"] >= 2.0:
        print(f"update latency above the 2 s target: {lat}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
