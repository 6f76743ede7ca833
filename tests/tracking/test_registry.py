"""The MLflow Model Registry: register a run's model, resolve models:/NAME/VERSION, download when not local."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_avml.errors import ConfigError, NotFoundError


@pytest.fixture(scope="module")
def trained(module_tmp):
    """One tiny trained run (1 epoch, 48 images at 32 px) in its own workspace."""
    import os

    from jupyter_avml.config import AutoMLImageConfig
    from jupyter_avml.data.shapes import make_shapes
    from jupyter_avml.training.run import train

    root = module_tmp
    data = make_shapes(root / "data", "image-classification", n=48, size=32, seed=2, color_by_class=True)
    config = AutoMLImageConfig(task="image-classification", training_data=str(data), model_name="resnet18",
                               pretrained=0, train_crop_size=32, valid_resize_size=32, valid_crop_size=32,
                               training_batch_size=16, validation_batch_size=32, cpu_threads=1, device="cpu",
                               number_of_epochs=1, learning_rate=0.05)
    previous = os.environ.pop("AVML_WORKSPACE", None)
    try:
        summary = train(config, workspace=root / "ws")
    finally:
        if previous is not None:
            os.environ["AVML_WORKSPACE"] = previous
    return root / "ws", data, summary


@pytest.fixture
def ws(trained, monkeypatch):
    workspace, _, _ = trained
    monkeypatch.setenv("AVML_WORKSPACE", str(workspace))
    return workspace


def test_register_download_and_load(trained, ws):
    from mlflow import MlflowClient

    import jupyter_avml
    from jupyter_avml.tracking.model_registry import (
        download_registered_model,
        list_registered_models,
        register_run_model,
    )

    _, data, summary = trained
    assert register_run_model(summary.run_id, "shapes") == 1
    assert register_run_model(summary.run_id, "shapes", workspace=ws, tags={"avml.experiment": "sweep-1"}) == 2
    assert register_run_model(summary.run_id[:8], "other") == 1  # a unique run id prefix is enough

    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
    version = client.get_model_version("shapes", "1")
    assert version.run_id == summary.run_id
    tags = version.tags
    assert (tags["task"], tags["model_name"], tags["primary_metric"]) == \
        ("image-classification", "resnet18", "accuracy")
    assert "avml.experiment" not in tags and client.get_model_version("shapes", "2").tags["avml.experiment"] == \
        "sweep-1"  # the caller's tags (a sweep names its experiment)
    assert float(tags["primary_metric_value"]) == pytest.approx(summary.primary_metric_value)
    assert json.loads(tags["labels"]) == ["circle", "square", "triangle"]
    assert json.loads(tags["config"])["learning_rate"] == 0.05

    path = download_registered_model("models:/shapes/1")
    assert path.is_file() and path.name == "model.pt"
    assert path.read_bytes() == Path(summary.model_path).read_bytes()
    assert ws / "mlartifacts" in path.parents  # the logged artifact itself, no copy
    assert download_registered_model("models:/shapes/latest") == path  # both versions are the same artifact

    image = sorted((Path(data).parent / "images").iterdir())[0]
    prediction = jupyter_avml.load_model("models:/shapes/latest").predict(str(image))
    assert prediction["labels"] == ["circle", "square", "triangle"] and len(prediction["probs"]) == 3

    listed = {m["name"]: m for m in list_registered_models(ws)}
    assert listed["shapes"]["versions"] == [1, 2] and listed["shapes"]["latest_version"] == 2
    assert listed["other"]["versions"] == [1] and listed["shapes"]["tags"]["task"] == "image-classification"


def test_a_version_that_is_not_local_is_downloaded_into_the_cache(trained, ws):
    from mlflow import MlflowClient

    from jupyter_avml.tracking.model_registry import download_registered_model

    _, _, summary = trained
    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}", registry_uri=f"sqlite:///{ws / 'mlflow.db'}")
    client.create_registered_model("remote")
    client.create_model_version("remote", f"runs:/{summary.run_id}/outputs/model.pt", run_id=summary.run_id)
    path = download_registered_model("models:/remote/1", workspace=ws)
    assert path == ws / "cache" / "models" / "remote" / "1" / "model.pt"
    assert path.read_bytes() == Path(summary.model_path).read_bytes()


def test_registry_errors_name_what_exists(trained, ws):
    from jupyter_avml.tracking.model_registry import download_registered_model, register_run_model

    register_run_model(trained[2].run_id, "known")
    with pytest.raises(NotFoundError, match=r"no registered model 'nope' \(registered models: .*known"):
        download_registered_model("models:/nope/1")
    with pytest.raises(NotFoundError, match=r"registered model 'known' has no version 9 \(versions: 1\)"):
        download_registered_model("models:/known/9")
    with pytest.raises(ConfigError, match="models:/NAME/VERSION or models:/NAME/latest"):
        download_registered_model("models:/known")
    with pytest.raises(ConfigError, match="a number or 'latest'"):
        download_registered_model("models:/known/one")
    with pytest.raises(NotFoundError, match="'no-such-run' is not a run id"):
        register_run_model("no-such-run", "known")
    with pytest.raises(NotFoundError, match="no run 'abcdef12'"):
        register_run_model("abcdef12", "known")


def test_tracking_knows_runs_not_sweeps():
    """The tracking layer takes run ids: it imports nothing of the sweep package (layering, issue 11)."""
    import jupyter_avml.tracking.model_registry as registry

    assert not hasattr(registry, "register_model")
    source = Path(registry.__file__).read_text() + Path(registry.__file__).with_name("store.py").read_text()
    assert "jupyter_avml.sweep" not in source and "jupyter_avml.training" not in source
