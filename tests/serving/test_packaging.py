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
    """``{task (or "yolov5"): outputs folder}``: an untrained model per task and of each family, packaged."""
    made = {}
    for task in TASKS:
        made[task] = save_untrained(tmp_path_factory.mktemp(task), task)
        package_model(made[task])
    made["yolov5"] = save_untrained(tmp_path_factory.mktemp("yolov5"), "image-object-detection", "yolov5")
    package_model(made["yolov5"])
    return made


def test_a_yolov5_package_has_its_settings_and_requirements(packaged):
    mlmodel = yaml.safe_load((packaged["yolov5"] / "MLmodel").read_text())
    params = {p["name"]: (p["type"], p["default"]) for p in json.loads(mlmodel["signature"]["params"])}
    assert params == {"img_size": ("long", 64), "model_size": ("string", "small"),
                      "box_score_thresh": ("double", 0.0), "box_iou_thresh": ("double", 0.5)}
    requirements = (packaged["yolov5"] / "requirements.txt").read_text().split()
    assert f"ultralytics=={metadata.version('ultralytics')}" in requirements
    assert "'img_size': 64," in (packaged["yolov5"] / "scoring_file_v_1_0_0.py").read_text()


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


@pytest.fixture(scope="module")
def trained_run(module_tmp, empty_tracking_db):
    """A tiny classification run (1 epoch, 12 images of 32 px) in its own workspace: ``(workspace, summary)``."""
    import shutil

    from jupyter_avml.config import AutoMLImageConfig
    from jupyter_avml.data.shapes import make_shapes
    from jupyter_avml.training.run import train

    root = module_tmp
    workspace = root / "ws"
    workspace.mkdir()
    shutil.copyfile(empty_tracking_db, workspace / "mlflow.db")
    data = make_shapes(root / "data", "image-classification", n=12, size=32, seed=0, color_by_class=True)
    config = AutoMLImageConfig(task="image-classification", training_data=str(data), model_name="resnet18",
                               pretrained=0, number_of_epochs=1, train_crop_size=32, valid_resize_size=32,
                               valid_crop_size=32, training_batch_size=8, device="cpu", cpu_threads=1)
    return workspace, train(config, workspace=workspace)


def test_a_run_leaves_the_package_beside_its_model(trained_run):
    _, summary = trained_run
    outputs = Path(summary.output_dir)
    for name in ("model.pt", "scoring_file_v_1_0_0.py", "conda_env_v_1_0_0.yml", "MLmodel", "python_model.pkl",
                 "requirements.txt"):
        assert (outputs / name).is_file(), name
    assert "'valid_crop_size': 32," in (outputs / "scoring_file_v_1_0_0.py").read_text()


def test_a_run_id_or_its_prefix_names_the_model_to_serve(trained_run):
    from jupyter_avml.errors import NotFoundError
    from jupyter_avml.serving.model_source import resolve_model_reference

    workspace, summary = trained_run
    run_dir = Path(summary.output_dir).parent
    assert resolve_model_reference(summary.run_id, workspace) == str(run_dir)
    assert resolve_model_reference(summary.run_id[:8], workspace) == str(run_dir)
    assert resolve_model_reference(str(run_dir / "outputs"), workspace) == str(run_dir / "outputs")
    with pytest.raises(NotFoundError, match=r"'nothing-here' is not a file, a run of .* or a registered model"):
        resolve_model_reference("nothing-here", workspace)


@pytest.mark.slow
def test_pyfunc_round_trip_per_task_and_from_the_registry_in_a_fresh_process(packaged, trained_run, tmp_path,
                                                                              monkeypatch):
    """Each task's (and yolov5's) MLflow model loads with mlflow.pyfunc in a new interpreter and predicts what
    load_model does (params included); a registered version loads by ``models:/NAME/VERSION`` there too, with both
    loaders."""
    from jupyter_avml.serving.model_source import ServedModel
    from jupyter_avml.tracking.model_registry import register_run_model

    workspace, summary = trained_run
    monkeypatch.setenv("AVML_WORKSPACE", str(workspace))
    run_outputs = Path(summary.output_dir)
    (run_outputs / "MLmodel").unlink()  # a run packaged before (or whose packaging failed): registering packages it
    assert register_run_model(summary.run_id, "shapes", workspace=workspace) == 1
    assert (run_outputs / "MLmodel").is_file()

    data = image_bytes(seed=3)
    script = textwrap.dedent("""
        import base64, json, sys
        import mlflow.pyfunc, pandas as pd
        import jupyter_avml
        out = {}
        table = pd.DataFrame({"image": [sys.argv[2], sys.argv[2]]})
        for name, uri in json.loads(sys.argv[1]).items():
            model = mlflow.pyfunc.load_model(uri)
            params = {"image-object-detection": {"box_detections_per_img": 1},
                      "yolov5": {"box_score_thresh": 0.99}}.get(name)
            out[name] = {"default": model.predict(table).to_dict(orient="records"),
                         "params": model.predict(table, params=params).to_dict(orient="records") if params else None}
        registered = jupyter_avml.load_model("models:/shapes/latest", device="cpu")
        out["avml"] = registered.predict(base64.b64decode(sys.argv[2]))
        print(json.dumps(out))
    """)
    uris = {**{name: str(outputs) for name, outputs in packaged.items()}, "registered": "models:/shapes/1"}
    env = {**os.environ, "PYTHONPATH": str(REPO), "AVML_DEVICE": "cpu", "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_TRACKING_URI": f"sqlite:///{workspace / 'mlflow.db'}"}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(uris), base64.b64encode(data).decode()],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    for name, outputs in {**packaged, "registered": run_outputs}.items():
        expected = load_model(outputs, device="cpu").predict(data)
        rows = answers[name]["default"]
        assert len(rows) == 2 and rows[0] == rows[1]
        if "probs" in expected:
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
            assert len(expected["boxes"]) > 1
            assert len(answers[name]["params"][0]["boxes"]) == (1 if name == "image-object-detection" else 0)
    expected = load_model(run_outputs, device="cpu").predict(data)
    assert answers["avml"]["probs"] == pytest.approx(expected["probs"], abs=1e-5)
    served = ServedModel("shapes", workspace=workspace, device="cpu")  # a registered name is its latest version
    assert served.source == "models:/shapes/latest" and served.metadata()["version"]["model"] == "shapes/latest"
