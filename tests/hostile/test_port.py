"""Hostile inputs to the cloud API (``jupyter_avml.automl``): names, paths, compute targets, MLTable files.

Each case: a clear ``AvmlError`` whose message names the value (cut when huge), nothing written outside where
it belongs, within seconds. No training: a finished experiment is written by hand.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jupyter_avml.automl import (
    AutoMLImageConfig,
    AutoMLRun,
    Experiment,
    GridParameterSampling,
    RandomParameterSampling,
    Run,
    image_classification,
)
from jupyter_avml.errors import AvmlError, ConfigError, NotFoundError
from jupyter_avml.sweep.experiment import ExperimentHandle
from jupyter_avml.sweep.folder import ExperimentFolder
from jupyter_avml.sweep.state import ChildState, ExperimentState
from jupyter_avml.workspace import Workspace

pytestmark = pytest.mark.timeout(60)
RUN_ID = "a" * 32
HUGE = "x" * 1_000_000


@pytest.fixture
def finished(tmp_path, monkeypatch) -> AutoMLRun:
    """A completed experiment with one child that has a run folder, and one that never started."""
    ws = Workspace.resolve(tmp_path / "ws")
    outputs = ws.runs_dir / RUN_ID / "outputs"
    outputs.mkdir(parents=True)
    (outputs / "model.pt").write_bytes(b"not a model")
    (outputs / "labels.json").write_text('["a", "b"]')
    (ws.root / "secret.txt").write_text("outside the run folder")
    ExperimentFolder.of(ws.root, "exp").write_state(ExperimentState(
        name="exp", task="image-classification", primary_metric="accuracy", status="completed", children=[
            ChildState(id=0, params={"model_name": "resnet18"}, model_name="resnet18", status="completed",
                       run_id=RUN_ID, best_value=0.5, best_epoch=1),
            ChildState(id=1, params={"model_name": "resnet18"}, status="invalid", error="refused")]))
    monkeypatch.chdir(tmp_path)
    return AutoMLRun(ExperimentHandle("exp", ws))


@pytest.mark.parametrize("name", ["../../secret.txt", "/etc/passwd", "outputs/../../../secret.txt", "outputs",
                                  "", "outputs/../../secret.txt", "..\\..\\secret.txt", HUGE])
def test_download_file_stays_inside_the_run_folder(finished, tmp_path, name):
    before = set(os.listdir(tmp_path))
    with pytest.raises(NotFoundError) as caught:
        finished.get_best_child().download_file(name, output_file_path="copy.txt")
    assert f"run {RUN_ID} has no file" in str(caught.value) and "outputs/model.pt" in str(caught.value)
    assert len(str(caught.value)) < 2000
    assert set(os.listdir(tmp_path)) == before  # nothing written


def test_a_link_out_of_the_run_folder_is_not_a_run_file(finished, tmp_path):
    link = finished.workspace.runs_dir / RUN_ID / "outputs" / "notes.txt"
    link.symlink_to(finished.workspace.root / "secret.txt")
    best = finished.get_best_child()
    assert "outputs/notes.txt" not in best.get_file_names()
    with pytest.raises(NotFoundError):
        best.download_file("outputs/notes.txt", output_file_path="copy.txt")
    assert not (tmp_path / "copy.txt").exists()


@pytest.mark.parametrize("model_path", ["../../secret.txt", "outputs/labels.json", "/etc/passwd", HUGE])
def test_register_model_takes_the_run_model_only(finished, model_path):
    with pytest.raises(AvmlError) as caught:
        finished.get_best_child().register_model(model_name="m", model_path=model_path)
    assert len(str(caught.value)) < 2000
    assert not (finished.workspace.root / "mlflow.db").exists()  # nothing was registered


def test_a_child_that_never_started_has_no_files(finished):
    child = Run(finished, 1)
    with pytest.raises(NotFoundError, match="child 1 of experiment 'exp' has not started yet"):
        child.download_file("outputs/model.pt")
    assert child.get_metrics() == {} and child.properties["status"] == "invalid"


def test_best_child_by_another_metric_is_refused(finished):
    with pytest.raises(ConfigError, match="chosen by the primary metric accuracy"):
        finished.get_best_child(metric="precision_score_macro")


@pytest.mark.parametrize("name", ["../etc", "a/b", "", "x" * 200, "é", None, 3, "-leading-dash", HUGE])
def test_experiment_names(tmp_path, name):
    with pytest.raises(ConfigError) as caught:
        Experiment(tmp_path / "ws", name)
    assert caught.value.field == "name" and len(str(caught.value)) < 500
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize("field, value", [("compute_target", HUGE), ("compute_target", ["gpu"]),
                                          ("primary_metric", HUGE), ("primary_metric", ["accuracy"]),
                                          ("primary_metric", 3)])
def test_huge_or_odd_values_give_bounded_messages(tmp_path, field, value):
    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    with pytest.raises(ConfigError) as caught:
        AutoMLImageConfig(task="image-classification", training_data=str(data), **{field: value})
    assert caught.value.field == field and len(str(caught.value)) < 600


@pytest.mark.parametrize("space", [None, "model_name", 3, {"": "choice(1)"}, {"seed": "choice(1,"},
                                   {"seed": "__import__('os').system('true')"}])
def test_parameter_spaces_that_are_not_spaces(space):
    with pytest.raises(ConfigError):
        RandomParameterSampling(space)
    with pytest.raises(ConfigError):
        GridParameterSampling(space)


@pytest.mark.parametrize("text, expected", [
    ("paths: []\n", "expected one 'paths: - file: DATA.jsonl' entry"),
    ("paths:\n  - file: a.jsonl\n  - file: b.jsonl\n", "expected one 'paths: - file: DATA.jsonl' entry"),
    ("- just a list\n", "expected a mapping of settings"),
    ("paths: [\n", "YAML syntax error"),
])
def test_mltable_files_that_do_not_name_one_jsonl(tmp_path, text, expected):
    folder = tmp_path / "mltable"
    folder.mkdir()
    (folder / "MLTable").write_text(text)
    with pytest.raises(ConfigError) as caught:
        image_classification(training_data=str(folder))
    assert expected in str(caught.value) and str(folder / "MLTable") in str(caught.value)


def test_an_mltable_file_that_is_a_device(tmp_path, char_device):
    folder = tmp_path / "mltable"
    folder.mkdir()
    (folder / "MLTable").symlink_to(char_device)
    with pytest.raises(ConfigError, match="not a regular file"):
        image_classification(training_data=str(folder))


@pytest.mark.parametrize("data", [3, object(), b"train.jsonl"])
def test_job_data_that_is_not_a_path(data):
    with pytest.raises(ConfigError, match="data must be a JSONL path"):
        image_classification(training_data=data)


def test_search_space_items_that_are_not_sub_spaces(tmp_path):
    job = image_classification(training_data=str(Path(tmp_path / "t.jsonl")))
    with pytest.raises(ConfigError, match="extend_search_space takes SearchSpace"):
        job.extend_search_space(["model_name"])


@pytest.mark.parametrize("run_id", ["../..", "../../ws", "/etc", "aaaa", "A" * 32, HUGE, "abcdef/../.."])
def test_checkpoint_run_ids_are_run_ids_not_paths(tmp_path, run_id):
    from jupyter_avml.config import AutoMLImageConfig as RunConfig
    from jupyter_avml.training.incremental import check_start_model

    ws = Workspace.resolve(tmp_path / "ws")
    (ws.runs_dir / "outputs").mkdir(parents=True)
    config = RunConfig(task="image-classification", training_data="t.jsonl", checkpoint_run_id=run_id)
    with pytest.raises(ConfigError, match="checkpoint_run_id must be a run id") as caught:
        check_start_model(config, ws, ["a", "b"])
    assert len(str(caught.value)) < 600
