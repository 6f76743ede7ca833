"""The main job of the README (``avml demo``): the whole product on generated data, on a CPU, in minutes.

1. make the "shapes" data for classification and detection, validate it and convert it (JSONL -> COCO ->
   JSONL, as a user bringing COCO data would);
2. register both datasets in the workspace's dataset registry and print their summaries;
3. sweep two classification models (4 children, 2 at a time, bandit early termination), print the
   leaderboard, register the best model and predict with it from the registry;
4. train a small object detector and print its mAP.

Everything lands in the workspace (``./avml-workspace`` by default): datasets, runs (MLflow store
``mlflow.db``), the experiment and the registered model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from jupyter_avml.workspace import Workspace

CLASSES_NOTE = "circle / square / triangle, one colour per class (learnable from scratch in a few epochs)"


def run_demo(workspace: str | Path | Workspace | None = None, *, detection: bool = True,
             echo: Callable[[str], None] = print) -> dict:
    """Run the demo; returns what it produced (paths, versions, the best child, the detector's summary)."""
    ws = Workspace.resolve(workspace)
    root = ws.ensure("demo")
    started = time.perf_counter()
    result: dict = {"workspace": str(ws.root)}

    echo(f"== 1. data  (workspace: {ws.root})")
    data = make_demo_data(root, echo)
    result.update(data)

    echo("\n== 2. dataset registry")
    from jupyter_avml.data.dataset_registry import register_dataset
    from jupyter_avml.data.summary import summarize
    from jupyter_avml.data.validate import read_dataset

    for name, path, task in (("shapes-classification", data["classification"], "image-classification"),
                             ("shapes-detection", data["detection_roundtrip"], "image-object-detection")):
        version = register_dataset(name, path, task=task, workspace=ws, description=CLASSES_NOTE)
        echo(f"registered {version.name} v{version.version}: {version.rows} rows, "
             f"hash {version.content_hash[:12]}")
        echo(_indent(summarize(read_dataset(version.path, task, check_images=False).records, task)))
        result[f"{name}_version"] = version.version

    echo("\n== 3. sweep: two classification models, 4 children, 2 at a time, bandit policy")
    result["sweep"] = run_demo_sweep(ws, echo)

    if detection:
        echo("\n== 4. object detection: fasterrcnn_resnet18_fpn from scratch")
        result["detection"] = run_demo_detection(ws, data["detection_roundtrip"], echo)

    echo(f"\ndone in {time.perf_counter() - started:.0f} s. Next: open notebooks/quickstart.ipynb, "
         f"or `avml runs list`, `avml status`, `avml datasets list`.")
    return result


def make_demo_data(root: Path, echo: Callable[[str], None]) -> dict:
    from jupyter_avml.data.convert import convert, write_coco
    from jupyter_avml.data.shapes import make_shapes
    from jupyter_avml.data.validate import read_dataset, validate_jsonl

    classification = make_shapes(root / "shapes-classification", "image-classification", n=300, size=36, seed=0,
                                 color_by_class=True)
    detection = make_shapes(root / "shapes-detection", "image-object-detection", n=120, size=96, seed=0,
                            color_by_class=True)
    for path, task in ((classification, "image-classification"), (detection, "image-object-detection")):
        report = validate_jsonl(path, task)
        echo(f"{path}: {report.rows} rows, {len(report.problems)} problems, classes {report.classes}")
    coco_path = write_coco(read_dataset(detection, "image-object-detection", check_images=False),
                           root / "shapes-detection" / "coco.json", "image-object-detection")
    roundtrip = root / "shapes-detection" / "from_coco.jsonl"
    report = convert("coco", coco_path, roundtrip, task="image-object-detection")
    echo(f"converted JSONL -> COCO ({coco_path.name}) -> JSONL ({roundtrip.name}): {report.written} rows, "
         f"{report.objects} boxes, {len(report.dropped)} dropped")
    return {"classification": str(classification), "detection": str(detection), "coco": str(coco_path),
            "detection_roundtrip": str(roundtrip)}


DEMO_SWEEP = {
    "task": "image-classification",
    "training_data": "dataset:shapes-classification",
    "pretrained": 0,
    "number_of_epochs": 4,
    "train_crop_size": 32,
    "valid_resize_size": 36,
    "valid_crop_size": 32,
    "training_batch_size": 32,
    "validation_batch_size": 100,
    "optimizer": "adam",
    "warmup_cosine_lr_warmup_epochs": 1,
    "early_stopping": 0,
    "sampling": "grid",
    "iterations": 4,
    "max_concurrent_iterations": 2,
    "cpu_slots": 2,
    "early_termination_policy": {"type": "bandit", "slack_factor": 0.2, "evaluation_interval": 1,
                                 "delay_evaluation": 2},
    "search_space": {"model_name": "choice('resnet18', 'mobilenetv2')",
                     "learning_rate": "choice(0.001, 0.003)"},
}


def run_demo_sweep(ws: Workspace, echo: Callable[[str], None]) -> dict:
    from jupyter_avml import load_model  # the package's one name for it (``jupyter_avml.__init__``)
    from jupyter_avml.sweep import Experiment

    name = time.strftime("demo-sweep-%Y%m%d-%H%M%S")
    handle = Experiment(name, workspace=ws).submit(DEMO_SWEEP)
    echo(f"experiment {name} started in the background (follow it with `avml status {name}`)")
    state = handle.wait()
    frame = handle.children
    columns = [c for c in ("id", "model_name", "learning_rate", "status", "best_value", "best_epoch", "reason")
               if c in frame.columns]
    table = frame[columns].sort_values("best_value", ascending=False, na_position="last").fillna("")
    echo(table.to_string(index=False))
    best = handle.get_best_child()
    echo(f"best child: {best.child_id} {best.model_name} {best.primary_metric}={best.primary_metric_value:.4f}")
    version = handle.register_model("shapes-classifier")
    predictor = load_model(f"models:/shapes-classifier/{version}", workspace=ws)
    sample = sorted((Path(ws.root) / "demo" / "shapes-classification" / "images").glob("*.png"))[0]
    prediction = predictor.predict(str(sample))
    top = max(range(len(prediction["labels"])), key=prediction["probs"].__getitem__)
    echo(f"registered models:/shapes-classifier/{version}; it predicts {sample.name} -> "
         f"{prediction['labels'][top]} ({prediction['probs'][top]:.2f})")
    return {"name": name, "status": state.status, "best_run_id": best.run_id,
            "best_value": best.primary_metric_value, "registered_version": version}


def run_demo_detection(ws: Workspace, data: str, echo: Callable[[str], None]) -> dict:
    from jupyter_avml.config import AutoMLImageConfig
    from jupyter_avml.training.progress import ProgressBar
    from jupyter_avml.training.run import train

    config = AutoMLImageConfig(task="image-object-detection", training_data=data,
                               model_name="fasterrcnn_resnet18_fpn", pretrained=0, **DEMO_DETECTION)
    summary = train(config, workspace=ws, callbacks=[ProgressBar()])
    echo(f"run {summary.run_id}: {summary.status}, mean_average_precision (voc, IoU 0.5) = "
         f"{summary.primary_metric_value:.3f}; model {summary.model_path}")
    return summary.to_dict()


# From scratch on the colour-coded shapes, small batches learn fastest (mAP@0.5 ~0.9 by epoch 3-4 here).
DEMO_DETECTION = dict(number_of_epochs=4, min_size=96, max_size=96, training_batch_size=4, validation_batch_size=8,
                      optimizer="adamw", learning_rate=0.001, warmup_cosine_lr_warmup_epochs=1, early_stopping=0)


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())
