"""Hostile inputs to the weights, model and run paths: malicious pickles, damaged or foreign files, run ids that
escape the runs folder, a full disk, concurrent processes.

Every case must end in one clear ``AvmlError`` (never a traceback of another type, never advice to load a file
unsafely) and leave nothing behind that another command would trip over.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from jupyter_avml.errors import AvmlError, ModelFileError, UnsafeWeightsError
from jupyter_avml.models import get_model_spec


# -- malicious pickles: the payload writes a marker file; no entry point may run it -----------------------------
class _WritesMarker:
    """Unpickling this object calls ``exec`` with code that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def _malicious_files(folder: Path, marker: Path) -> dict[str, Path]:
    """The payload as a plain pickle, inside ``torch.save`` (zip format), and shaped like an ultralytics checkpoint
    and like one of our model files."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"pickle": folder / "plain.pt", "torch": folder / "torch.pt", "ultralytics": folder / "yolo.pt",
             "model_file": folder / "model.pt"}
    with open(files["pickle"], "wb") as handle:
        pickle.dump(_WritesMarker(marker), handle, protocol=2)
    torch.save({"state_dict": _WritesMarker(marker)}, files["torch"])
    torch.save({"model": _WritesMarker(marker), "ema": None, "train_args": {}}, files["ultralytics"])
    torch.save({"format": "jupyter_avml.model/1", "task": "image-classification", "model_name": "resnet18",
                "class_names": ["a", "b"], "config": {}, "state_dict": _WritesMarker(marker)}, files["model_file"])
    return files


@pytest.fixture
def malicious(tmp_path):
    marker = tmp_path / "marker.txt"
    files = _malicious_files(tmp_path / "files", marker)
    # The payload works when a file is unpickled without restrictions (so the tests below can fail):
    torch.load(files["torch"], weights_only=False)
    assert marker.exists()
    marker.unlink()
    return marker, files


def _assert_refused(error: BaseException, path: Path, marker: Path) -> None:
    message = str(error)
    assert isinstance(error, AvmlError)
    assert str(path) in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize("kind", ["pickle", "torch", "ultralytics"])
def test_timm_pretrained_weights_never_run_a_pickle(malicious, kind):
    from jupyter_avml.models.classification import build_classifier

    marker, files = malicious
    with pytest.raises(AvmlError) as error:
        build_classifier(get_model_spec("resnet18"), 2, pretrained_weights=files[kind])
    _assert_refused(error.value, files[kind], marker)
    assert isinstance(error.value, UnsafeWeightsError)
    assert "convert_trusted_checkpoint" in str(error.value) and "exec" in str(error.value)


@pytest.mark.parametrize("kind", ["pickle", "torch"])
def test_torchvision_pretrained_weights_never_run_a_pickle(malicious, kind):
    from jupyter_avml.models.detection import build_detector

    marker, files = malicious
    with pytest.raises(UnsafeWeightsError) as error:
        build_detector(get_model_spec("fasterrcnn_resnet18_fpn"), 2, pretrained_weights=files[kind])
    _assert_refused(error.value, files[kind], marker)


@pytest.mark.parametrize("kind", ["pickle", "torch", "ultralytics"])
def test_yolov5_pretrained_weights_never_run_a_pickle(malicious, kind, tmp_path):
    from jupyter_avml.models.yolo import build_yolo

    marker, files = malicious
    with pytest.raises(UnsafeWeightsError) as error:
        build_yolo(get_model_spec("yolov5"), 2, model_size="small", pretrained_weights=str(files[kind]),
                   workspace_dir=tmp_path / "ws")
    _assert_refused(error.value, files[kind], marker)
    assert "convert_trusted_checkpoint" in str(error.value)
    assert "No automatic unsafe pickle fallback" not in str(error.value)


def test_a_cached_yolov5_download_is_read_as_data_too(malicious, tmp_path, no_network):
    """A file in the workspace's weights cache (where pretrained downloads land) gets the same treatment."""
    from jupyter_avml.models.ultralytics_env import UltralyticsDirs
    from jupyter_avml.models.yolo import build_yolo

    marker, files = malicious
    weights = UltralyticsDirs.of(tmp_path / "ws").weights_dir
    weights.mkdir(parents=True)
    (weights / "yolov5su.pt").write_bytes(files["ultralytics"].read_bytes())
    with pytest.raises(UnsafeWeightsError):
        build_yolo(get_model_spec("yolov5"), 2, model_size="small", pretrained=True, workspace_dir=tmp_path / "ws")
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["pickle", "torch", "model_file"])
def test_load_model_never_runs_a_pickle(malicious, kind):
    from jupyter_avml.inference.predictor import load_model

    marker, files = malicious
    with pytest.raises(ModelFileError) as error:
        load_model(files[kind])
    _assert_refused(error.value, files[kind], marker)
    assert "outputs/model.pt" in str(error.value)


def test_a_registered_model_download_never_runs_a_pickle(malicious, workspace):
    """A registered model whose artifact was replaced by a malicious file: load_model("models:/...") refuses it."""
    import yaml

    from jupyter_avml.inference.predictor import load_model
    from jupyter_avml.tracking.registry import register_run_model
    from jupyter_avml.tracking.store import Tracker

    marker, files = malicious
    tracker = Tracker(workspace)
    run_id = tracker.start_run(tags={"task": "image-classification"})
    run_dir = workspace / "runs" / run_id
    (run_dir / "outputs").mkdir(parents=True)
    (run_dir / "outputs" / "model.pt").write_bytes(files["model_file"].read_bytes())
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"task": "image-classification",
                                                         "model_name": "resnet18"}))
    assert register_run_model(run_id, "evil", workspace=workspace) == 1
    with pytest.raises(ModelFileError):
        load_model("models:/evil/1", workspace=workspace)
    assert not marker.exists()


def test_a_trusted_legacy_checkpoint_converts_into_a_plain_state_dict(tmp_path):
    """The documented way out for a file one trusts: convert it knowingly, then use the plain state dict."""
    from jupyter_avml.models.classification import build_classifier
    from jupyter_avml.models.weights_files import convert_trusted_checkpoint

    torch.manual_seed(0)
    spec = get_model_spec("resnet18")
    model = build_classifier(spec, 2, pretrained=False)
    legacy = tmp_path / "legacy.pt"
    torch.save({"model": model, "epoch": 3}, legacy)  # a whole pickled module: refused as is
    with pytest.raises(UnsafeWeightsError, match="convert_trusted_checkpoint"):
        build_classifier(spec, 2, pretrained_weights=legacy)

    converted = convert_trusted_checkpoint(legacy, tmp_path / "plain.pt")
    rebuilt = build_classifier(spec, 2, pretrained_weights=converted)
    for name, tensor in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], tensor), name
