"""What every run leaves for deployment: the MLflow model (pyfunc), the scoring file, the environment file."""

from __future__ import annotations

import base64
import json
import os
import runpy
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from jupyter_avml.inference.predictor import load_model
from jupyter_avml.serving.packaging import package_model
from tests.serving.models import CLASSES, image_bytes, save_untrained

REPO = Path(__file__).resolve().parents[2]
TASKS = ["image-classification", "image-classification-multilabel", "image-object-detection",
         "image-instance-segmentation"]


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """``{task: outputs folder}``: an untrained model per task, packaged."""
    made = {}
    for task in TASKS:
        made[task] = save_untrained(tmp_path_factory.mktemp(task), task)
        package_model(made[task])
    return made


def test_the_package_describes_the_model_and_pins_its_environment(packaged):
    outputs = packaged["image-object-detection"]
    model_dir = outputs  # the run's outputs folder is the MLflow model
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    assert mlmodel["metadata"]["task"] == "image-object-detection" and mlmodel["metadata"]["labels"] == CLASSES
    assert json.loads(mlmodel["signature"]["inputs"]) == [{"type": "string", "name": "image", "required": True}]
    assert json.loads(mlmodel["signature"]["outputs"])[0]["name"] == "boxes"
    params = {p["name"]: (p["type"], p["default"]) for p in json.loads(mlmodel["signature"]["params"])}
    assert params["box_score_thresh"] == ("double", 0.0) and params["box_detections_per_img"] == ("long", 10)
    assert params["min_size"] == ("long", 64) and params["tile_grid_size"] == ("string", "")
    example = json.loads((model_dir / "input_example.json").read_text())
    assert example["columns"] == ["image"] and base64.b64decode(example["data"][0][0])[:4] == b"\x89PNG"
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert f"torch=={metadata.version('torch')}" in requirements
    assert f"jupyter_avml=={metadata.version('jupyter_avml')}" in requirements
    environment = yaml.safe_load((outputs / "conda_env_v_1_0_0.yml").read_text())
    assert f"torchvision=={metadata.version('torchvision')}" in environment["dependencies"][-1]["pip"]
    # the weights are the run's file, not a second copy
    assert mlmodel["flavors"]["python_function"]["artifacts"]["model"]["path"] == "model.pt"
    assert not (model_dir / "artifacts").exists()


def test_packaging_again_replaces_the_package(packaged):
    outputs = packaged["image-classification"]
    (outputs / "MLmodel").write_text("damaged")
    package_model(outputs)
    assert yaml.safe_load((outputs / "MLmodel").read_text())["metadata"]["task"] == "image-classification"
    assert not [p for p in outputs.iterdir() if p.name.startswith(".")], "no staging folder left behind"


def test_pyfunc_round_trip_for_each_task_in_a_fresh_process(packaged, tmp_path):
    data = image_bytes(seed=3)
    encoded = base64.b64encode(data).decode()
    script = textwrap.dedent("""
        import json, sys
        import mlflow.pyfunc, pandas as pd
        out = {}
        for name, folder in json.loads(sys.argv[1]).items():
            model = mlflow.pyfunc.load_model(folder)
            table = pd.DataFrame({"image": [sys.argv[2], sys.argv[2]]})
            params = {"box_detections_per_img": 1} if name == "image-object-detection" else None
            out[name] = {"default": model.predict(table).to_dict(orient="records"),
                         "params": model.predict(table, params=params).to_dict(orient="records") if params else None}
        print(json.dumps(out))
    """)
    folders = json.dumps({name: str(outputs) for name, outputs in packaged.items()})
    env = {**os.environ, "PYTHONPATH": str(REPO), "AVML_DEVICE": "cpu", "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, "-c", script, folders, encoded], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    for name, outputs in packaged.items():
        expected = load_model(outputs, device="cpu").predict(data)
        rows = answers[name]["default"]
        assert len(rows) == 2 and rows[0] == rows[1]
        if name.startswith("image-classification"):
            assert set(rows[0]) == {"probs", "labels"} and rows[0]["labels"] == CLASSES
            assert rows[0]["probs"] == pytest.approx(expected["probs"], abs=1e-5)
        else:
            assert set(rows[0]) == {"boxes"}
            assert [b["label"] for b in rows[0]["boxes"]] == [b["label"] for b in expected["boxes"]]
            assert [b["score"] for b in rows[0]["boxes"]] == pytest.approx([b["score"] for b in expected["boxes"]],
                                                                          abs=1e-4)
            if name == "image-instance-segmentation":
                assert all("polygon" in b for b in rows[0]["boxes"])
        if answers[name]["params"]:
            assert len(expected["boxes"]) > 1 and len(answers[name]["params"][0]["boxes"]) == 1


def test_the_scoring_file_answers_requests_and_its_model_settings_change_inference(packaged, tmp_path):
    outputs = packaged["image-object-detection"]
    scoring = outputs / "scoring_file_v_1_0_0.py"
    text = scoring.read_text()
    assert "load_model(TASK_TYPE, model_path, **model_settings)" in text
    assert "    'box_detections_per_img': 10,\n" in text
    data = image_bytes(seed=4)
    expected = load_model(outputs, device="cpu").predict(data)

    def run(path: Path, raw):
        module = runpy.run_path(str(path))
        module["init"]()
        return json.loads(module["run"](raw))

    answer = run(scoring, data)
    assert len(answer["boxes"]) == len(expected["boxes"]) > 1
    assert [b["score"] for b in answer["boxes"]] == pytest.approx([b["score"] for b in expected["boxes"]], abs=1e-5)
    batch = run(scoring, json.dumps({"image": [base64.b64encode(data).decode()] * 2}))
    assert len(batch) == 2 and [b["label"] for b in batch[1]["boxes"]] == [b["label"] for b in answer["boxes"]]
    assert [b["score"] for b in batch[1]["boxes"]] == pytest.approx([b["score"] for b in answer["boxes"]], abs=1e-5)
    # A deployment edits the settings in its copy of the file: inference follows.
    edited = tmp_path / scoring.name
    edited.write_text(text.replace("'box_detections_per_img': 10,", "'box_detections_per_img': 1,"))
    os.environ["AVML_MODEL_DIR"] = str(outputs)
    try:
        answer = run(edited, data)
    finally:
        del os.environ["AVML_MODEL_DIR"]
    assert len(answer["boxes"]) == 1 and answer["boxes"][0]["score"] == pytest.approx(expected["boxes"][0]["score"])


def test_a_run_leaves_the_package_beside_its_model(tmp_path, workspace):
    from jupyter_avml.config import AutoMLImageConfig
    from jupyter_avml.data.shapes import make_shapes
    from jupyter_avml.training.run import train

    data = make_shapes(tmp_path / "data", "image-classification", n=12, size=32, seed=0, color_by_class=True)
    config = AutoMLImageConfig(task="image-classification", training_data=str(data), model_name="resnet18",
                               pretrained=0, number_of_epochs=1, train_crop_size=32, valid_resize_size=32,
                               valid_crop_size=32, training_batch_size=8, device="cpu", cpu_threads=1)
    outputs = Path(train(config).output_dir)
    for name in ("model.pt", "scoring_file_v_1_0_0.py", "conda_env_v_1_0_0.yml", "MLmodel", "python_model.pkl",
                 "requirements.txt"):
        assert (outputs / name).is_file(), name
    assert "'valid_crop_size': 32," in (outputs / "scoring_file_v_1_0_0.py").read_text()
