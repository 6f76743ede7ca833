"""FiftyOne for the QA tests: a database folder and name of their own, unique dataset names, everything deleted after.

``FIFTYONE_DATABASE_DIR`` and ``FIFTYONE_DATABASE_NAME`` are set when this file is imported, before anything imports
fiftyone: a tmp folder removed at exit, and a name of this session's (dropped at exit); FiftyOne starts one mongod for
the session there (the first test to need it pays ~5 s), or attaches to one already running. Every
test's workspace is its own folder, and FiftyOne dataset names carry a hash of the snapshot's path
(``qa.importer.dataset_name``), so names never collide; ``fo_datasets`` deletes what a test made.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

os.environ["FIFTYONE_DATABASE_DIR"] = _DB = tempfile.mkdtemp(prefix="avml-fiftyone-db-")
# FiftyOne attaches to a database service already running on the machine, whatever its folder (another test
# session's, the user's): a database name of this session's own keeps its datasets apart even then.
os.environ["FIFTYONE_DATABASE_NAME"] = _NAME = f"avml-tests-{uuid.uuid4().hex[:12]}"


def _remove_database() -> None:
    import sys

    from jupyter_avml.qa._fo import stop_database

    if "fiftyone" in sys.modules:
        import fiftyone.core.odm.database as database

        try:
            database.get_db_conn().client.drop_database(_NAME)
        except Exception:  # the database is gone already: nothing to drop
            pass
    stop_database()  # MongoDB must not be running on the files removed next
    shutil.rmtree(_DB, ignore_errors=True)


atexit.register(_remove_database)
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture
def qa_workspace(tmp_path, monkeypatch) -> Path:
    """A fresh workspace folder, exported as $AVML_WORKSPACE (no MLflow store: QA reads runs, it does not track)."""
    root = tmp_path / "ws"
    root.mkdir()
    monkeypatch.setenv("AVML_WORKSPACE", str(root))
    return root


@pytest.fixture
def fo_datasets():
    """``fiftyone``; the datasets a test creates are deleted after it."""
    from jupyter_avml.qa._fo import fiftyone

    fo = fiftyone()
    before = set(fo.list_datasets())
    yield fo
    for name in set(fo.list_datasets()) - before:
        fo.delete_dataset(name)


def save_model(folder: Path, task: str, model_name: str, class_names=CLASSES, *, seed: int = 0, **settings) -> Path:
    """An untrained model file of ``model_name`` as training writes it (``outputs/model.pt``): predictions of a
    real network through ``load_model``, without training."""
    import torch

    from jupyter_avml.config import AutoMLImageConfig

    config = AutoMLImageConfig(task=task, training_data=str(folder / "train.jsonl"), model_name=model_name,
                               pretrained=0, device="cpu", **settings)
    torch.manual_seed(seed)
    if config.model_spec.family == "timm":
        from jupyter_avml.models.classification import build_classifier

        model = build_classifier(config.model_spec, len(class_names), pretrained=False,
                                 img_size=config.train_crop_size)
    else:
        from jupyter_avml.models.detection import build_detector

        model = build_detector(config.model_spec, len(class_names), pretrained=False, min_size=config.min_size,
                               max_size=config.max_size)
    payload = {"format": "jupyter_avml.model/1", "task": task, "model_name": model_name,
               "class_names": list(class_names), "config": config.to_dict(),
               "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}, "metrics": {},
               "epoch": 1}
    path = folder / "outputs" / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def plant_label_errors(path: Path, rows: list[int]) -> list[int]:
    """Give rows (0-based) of a multi-class JSONL the next class; returns their line numbers (1-based)."""
    lines = path.read_text().splitlines()
    for row in rows:
        record = json.loads(lines[row])
        record["label"] = CLASSES[(CLASSES.index(record["label"]) + 1) % len(CLASSES)]
        lines[row] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    return [row + 1 for row in rows]


def colour_rule_predictions(fo, dataset, field: str = "colour_rule") -> str:
    """Predictions of a stand-in model that knows the classes: the colour of the shape (``make_shapes(...,
    color_by_class=True)`` paints each class its own colour on grey), as logits (minus the distance to each class
    colour), written as ``add_predictions`` writes a classifier's (``labels.prediction_to_label``)."""
    import numpy as np
    from PIL import Image

    from jupyter_avml.data.shapes import CLASS_COLORS
    from jupyter_avml.qa.labels import prediction_to_label
    from jupyter_avml.tasks import ImageTask

    colours = np.array([CLASS_COLORS[name] for name in CLASSES], dtype=np.float64)
    values = {}
    for sample_id, path, width, height in zip(dataset.values("id"), dataset.values("filepath"),
                                              dataset.values("metadata.width"), dataset.values("metadata.height"),
                                              strict=True):
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64).reshape(-1, 3)
        painted = pixels[pixels.max(axis=1) - pixels.min(axis=1) > 60]  # the background is grey
        mean = painted.mean(axis=0) if len(painted) else pixels.mean(axis=0)
        logits = -np.linalg.norm(colours - mean, axis=1) / 25.0
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        values[sample_id] = prediction_to_label(fo, {"probs": probs.tolist(), "labels": CLASSES},
                                                ImageTask.IMAGE_CLASSIFICATION, CLASSES, width, height, logits=logits)
    dataset.set_values(field, values, key_field="id")
    info = dict(dataset.info["avml"])
    info["predictions"] = {**info.get("predictions", {}), field: {"classes": CLASSES, "complete": True, "time": 1.0}}
    dataset.info = {**dataset.info, "avml": info}
    dataset.save()
    return field


def make_run(workspace: Path, jsonl: Path, task: str, model_name: str, **settings) -> str:
    """A finished run folder in ``workspace`` as training leaves it (``run.json``, ``config.yaml``,
    ``outputs/model.pt``; the model untrained), trained on ``jsonl``; returns its run id."""
    import uuid

    from jupyter_avml.config import AutoMLImageConfig

    run_id = uuid.uuid4().hex
    run_dir = workspace / "runs" / run_id
    save_model(run_dir, task, model_name, **settings)
    config = AutoMLImageConfig(task=task, training_data=str(jsonl), model_name=model_name, pretrained=0,
                               device="cpu", **settings)
    (run_dir / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    (run_dir / "run.json").write_text(json.dumps({"run_id": run_id, "task": task, "model_name": model_name,
                                                  "status": "completed"}), encoding="utf-8")
    return run_id
