"""YOLOv5 through ultralytics: build, loss, predictions, freezing, weights, and a hermetic ultralytics.

The model is YOLOv5u small with 2 classes, on 64 px images. ultralytics is confined to a temporary workspace
by ``prepare_ultralytics`` (``build_yolo`` calls it); the last test checks in a fresh interpreter that it keeps
HOME clean and never touches the network.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from jupyter_avml.errors import ConfigError, WeightsUnavailableError
from jupyter_avml.models import get_model_spec
from jupyter_avml.models.freeze import freeze_layer_groups
from jupyter_avml.models.ultralytics_adapter.environment import UltralyticsDirs, prepare_ultralytics
from jupyter_avml.models.yolo import YOLO_SCALES, build_yolo, yolo_loss, yolo_model_file, yolo_weights_file
from tests.conftest import BLOCK_NETWORK_SCRIPT

REPO = Path(__file__).resolve().parents[2]
NUM_CLASSES = 2
IMG = 64
SPEC = get_model_spec("yolov5")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: tiny inputs gain nothing from more, and extra threads oversubscribe shared cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def workspace_dir(module_tmp) -> Path:
    return module_tmp


@pytest.fixture(scope="module")
def small(workspace_dir):
    torch.manual_seed(0)
    return build_yolo(SPEC, NUM_CLASSES, model_size="small", pretrained=False, workspace_dir=workspace_dir)


def _batch():
    """2 images of 64 px; 3 boxes (class index 0..1, normalised centre x, centre y, width, height)."""
    generator = torch.Generator().manual_seed(0)
    return {"img": torch.rand(2, 3, IMG, IMG, generator=generator),
            "batch_idx": torch.tensor([0.0, 1.0, 1.0]),
            "cls": torch.tensor([[0.0], [1.0], [0.0]]),
            "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.3, 0.3, 0.2, 0.3], [0.7, 0.6, 0.3, 0.3]])}


def test_model_size_maps_to_the_yolov5u_scales():
    assert {size: yolo_model_file(size) for size in YOLO_SCALES} == {
        "small": "yolov5su.yaml", "medium": "yolov5mu.yaml", "large": "yolov5lu.yaml", "xlarge": "yolov5xu.yaml"}
    assert yolo_weights_file("xlarge") == "yolov5xu.pt"
    assert yolo_model_file(" Medium ") == "yolov5mu.yaml"
    with pytest.raises(ConfigError, match="model_size"):
        yolo_model_file("huge")


def test_build_gives_a_yolo_with_the_class_count_and_scale(small, workspace_dir):
    from ultralytics import YOLO
    from ultralytics.nn.modules import Detect
    from ultralytics.nn.tasks import DetectionModel

    assert isinstance(small, YOLO) and isinstance(small.model, DetectionModel)
    head = small.model.model[-1]
    assert isinstance(head, Detect) and head.nc == NUM_CLASSES
    assert small.model.yaml["nc"] == NUM_CLASSES and small.model.yaml["scale"] == "s"
    assert small.model.names == {0: "0", 1: "1"}  # placeholders until the trainer names the classes
    # The model YAML lives in the workspace, like everything ultralytics writes.
    assert Path(small.model.yaml["yaml_file"]).parent == UltralyticsDirs.of(workspace_dir).models_dir


@pytest.mark.slow
def test_a_larger_model_size_builds_a_wider_network(small, workspace_dir):
    medium = build_yolo(SPEC, NUM_CLASSES, model_size="medium", pretrained=False, workspace_dir=workspace_dir)
    assert medium.model.yaml["scale"] == "m"
    assert _parameter_count(medium) > 2 * _parameter_count(small)


def _parameter_count(yolo) -> int:
    return sum(p.numel() for p in yolo.model.parameters())


def test_training_loss_through_the_models_own_criterion(small):
    model = copy.deepcopy(small.model).train()
    batch = _batch()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    stem_before = model.model[0].conv.weight.detach().clone()

    started = time.perf_counter()
    loss, items = yolo_loss(model, batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    assert set(items) == {"box_loss", "cls_loss", "dfl_loss"}
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"yolov5 small: training step in {time.perf_counter() - started:.2f} s, loss {loss.item():.3f}")
    assert not torch.equal(model.model[0].conv.weight, stem_before)

    # DetectionModel.forward(dict) is the same loss: ultralytics' trainer calls it that way.
    with torch.no_grad():
        again, _ = model(batch)
        expected, _ = yolo_loss(model, batch)
    assert torch.allclose(again.sum(), expected)


def test_eval_forward_gives_boxes_and_class_scores_for_nms(small):
    from ultralytics.utils.nms import non_max_suppression

    model = copy.deepcopy(small.model).eval()
    with torch.no_grad():
        output = model(_batch()["img"])
    predictions = output[0] if isinstance(output, (tuple, list)) else output
    anchors = sum((IMG // stride) ** 2 for stride in (8, 16, 32))
    assert predictions.shape == (2, 4 + NUM_CLASSES, anchors)
    scores = predictions[:, 4:]
    assert scores.min() >= 0 and scores.max() <= 1  # probabilities (sigmoid)
    detections = non_max_suppression(predictions, conf_thres=0.0, iou_thres=0.5, max_det=10)
    assert len(detections) == 2
    for per_image in detections:
        assert per_image.shape[1] == 6 and 0 < len(per_image) <= 10  # x1 y1 x2 y2 score class
        assert set(per_image[:, 5].long().tolist()) <= set(range(NUM_CLASSES))


def test_freezing_three_groups_freezes_model_0_to_2(small):
    model = copy.deepcopy(small.model)
    # ultralytics keeps the DFL projection fixed (requires_grad False): everything else starts trainable.
    trainable_before = {name: param.requires_grad for name, param in model.named_parameters()}
    frozen = freeze_layer_groups(model, SPEC, 3)
    expected = {name for name, _ in model.named_parameters() if name.startswith(("model.0.", "model.1.", "model.2."))}
    assert set(frozen) == expected and "model.2.cv1.conv.weight" in expected
    assert all(trainable_before[name] for name in expected)
    for name, param in model.named_parameters():
        assert param.requires_grad == (trainable_before[name] and name not in expected), name
    # All ten backbone groups match parameters (model.1. must not catch model.10.-model.19.).
    model = copy.deepcopy(small.model)
    frozen = freeze_layer_groups(model, SPEC, len(SPEC.layer_groups))
    assert not any(name.startswith(tuple(f"model.{i}." for i in range(10, 30))) for name in frozen)
    assert {name.split(".")[1] for name in frozen} == {str(i) for i in range(10)}


# -- weights -------------------------------------------------------------------------------------------------

def test_offline_pretrained_fails_fast_with_guidance(no_network, tmp_path):
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as error:
        build_yolo(SPEC, NUM_CLASSES, model_size="small", pretrained=True, workspace_dir=tmp_path / "ws")
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert "https://github.com/ultralytics/assets/releases/download/" in message and "yolov5su.pt" in message
    assert "pretrained: false" in message and "pretrained_weights: PATH" in message
    assert no_network == [("getaddrinfo", "github.com")]
    assert not UltralyticsDirs.of(tmp_path / "ws").weights_dir.exists()


def test_cached_ultralytics_weights_transfer_onto_the_new_head(no_network, tmp_path):
    """An ultralytics checkpoint in the workspace's weights folder is used without network, COCO-style:
    80 classes transferred onto a 2-class model, all but the class outputs."""
    prepare_ultralytics(tmp_path / "ws")  # before this test's first ultralytics import, should it run alone
    from ultralytics.nn.tasks import DetectionModel

    dirs = UltralyticsDirs.of(tmp_path / "ws")
    dirs.weights_dir.mkdir(parents=True)
    torch.manual_seed(5)
    coco = DetectionModel("yolov5su.yaml", nc=80, verbose=False)
    torch.save({"model": coco, "train_args": {}}, dirs.weights_dir / "yolov5su.pt")

    yolo = build_yolo(SPEC, NUM_CLASSES, model_size="small", pretrained=True, workspace_dir=tmp_path / "ws")
    assert no_network == []
    loaded, source = yolo.model.state_dict(), coco.state_dict()
    backbone = [k for k in source if k.startswith(tuple(f"model.{i}." for i in range(10)))]
    assert backbone and all(torch.equal(loaded[k], source[k]) for k in backbone)
    head = f"model.{len(coco.model) - 1}"
    assert torch.equal(loaded[f"{head}.cv2.0.0.conv.weight"], source[f"{head}.cv2.0.0.conv.weight"])
    assert yolo.model.model[-1].nc == NUM_CLASSES
    assert loaded[f"{head}.cv3.0.2.weight"].shape[0] == NUM_CLASSES


def test_pretrained_weights_state_dict_of_another_class_count(small, tmp_path):
    torch.manual_seed(6)
    five = build_yolo(SPEC, 5, model_size="small", pretrained=False, workspace_dir=tmp_path / "ws")
    path = tmp_path / "model.pt"
    torch.save({"state_dict": five.model.state_dict(), "class_names": list("abcde")}, path)

    yolo = build_yolo(SPEC, NUM_CLASSES, model_size="small", pretrained_weights=str(path),
                      workspace_dir=tmp_path / "ws")
    loaded, source = yolo.model.state_dict(), five.model.state_dict()
    head = f"model.{len(yolo.model.model) - 1}."
    kept = [k for k in source if not k.startswith(head + "cv3.")]
    assert all(torch.equal(loaded[k], source[k]) for k in kept)
    assert loaded[head + "cv3.0.2.weight"].shape[0] == NUM_CLASSES


def test_weights_of_another_model_size_are_refused(small, tmp_path):
    path = tmp_path / "small.pt"
    torch.save(small.model.state_dict(), path)
    with pytest.raises(WeightsUnavailableError, match="another shape"):
        build_yolo(SPEC, NUM_CLASSES, model_size="medium", pretrained_weights=str(path),
                   workspace_dir=tmp_path / "ws")


def test_a_missing_weights_file_is_named(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="nowhere.pt"):
        build_yolo(SPEC, NUM_CLASSES, model_size="small", pretrained_weights=str(tmp_path / "nowhere.pt"),
                   workspace_dir=tmp_path / "ws")


# -- a hermetic ultralytics ----------------------------------------------------------------------------------

HERMETIC_SCRIPT = BLOCK_NETWORK_SCRIPT + textwrap.dedent("""

    import torch
    from jupyter_avml.models import get_model_spec
    from jupyter_avml.models.ultralytics_adapter.environment import prepare_ultralytics
    from jupyter_avml.models.yolo import build_yolo, yolo_loss

    workspace = sys.argv[1]
    prepare_ultralytics(workspace)
    import ultralytics
    from ultralytics.utils import SETTINGS, ONLINE, WEIGHTS_DIR, RUNS_DIR, DATASETS_DIR

    yolo = build_yolo(get_model_spec("yolov5"), 2, model_size="small", pretrained=False, workspace_dir=workspace)
    batch = {"img": torch.rand(1, 3, 64, 64), "batch_idx": torch.zeros(1), "cls": torch.zeros(1, 1),
             "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.3]])}
    yolo.model.train()
    loss, _ = yolo_loss(yolo, batch)
    loss.backward()
    yolo.model.eval()
    with torch.no_grad():
        yolo.model(batch["img"])
    print(json.dumps({"attempts": attempts, "settings": dict(SETTINGS), "settings_file": str(SETTINGS.file_path),
                      "online": ONLINE, "folders": [str(WEIGHTS_DIR), str(RUNS_DIR), str(DATASETS_DIR)]}))
""")


def test_prepare_ultralytics_keeps_home_clean_and_stays_off_the_network(tmp_path):
    home, cwd, workspace = tmp_path / "home", tmp_path / "cwd", tmp_path / "ws"
    home.mkdir()
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("YOLO_", "XDG_", "ULTRALYTICS_", "AVML_", "PYTEST_"))}
    env.update(HOME=str(home), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", HERMETIC_SCRIPT, str(workspace)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert report["attempts"] == []
    assert report["online"] is False
    assert sorted(home.rglob("*")) == []  # nothing under HOME (no ~/.config/Ultralytics)
    assert sorted(cwd.rglob("*")) == []  # nor in the working directory
    root = UltralyticsDirs.of(workspace).root
    assert Path(report["settings_file"]) == root / "Ultralytics" / "settings.json"
    assert all(Path(folder).is_relative_to(root) for folder in report["folders"])
    settings = report["settings"]
    flags = {k: v for k, v in settings.items() if isinstance(v, bool)}
    assert flags and not any(flags.values()), flags  # sync and every integration off
    assert {"sync", "mlflow", "wandb", "comet", "clearml", "tensorboard"} <= set(flags)
    assert settings["api_key"] == ""
    on_disk = json.loads((root / "Ultralytics" / "settings.json").read_text())
    assert on_disk["sync"] is False and on_disk["weights_dir"] == str(root / "weights")
    written = {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {"ws"}
