"""Every sampler passes the contract of ``sampler_contract.py`` on the spaces it takes."""

from __future__ import annotations

import pytest

from jupyter_avml.sweep.sampling import BayesianSampler, GridSampler, RandomSampler
from jupyter_avml.sweep.space import (
    choice,
    lognormal,
    loguniform,
    normal,
    qlognormal,
    qloguniform,
    qnormal,
    quniform,
    randint,
    uniform,
)
from tests.sweep.sampler_contract import SamplerContract

YOLO = {"model_name": "yolov5", "learning_rate": uniform(0.0001, 0.01), "model_size": choice("small", "medium")}
FRCNN = {"model_name": choice("fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn"),
         "learning_rate": uniform(0.0001, 0.001), "optimizer": choice("sgd", "adam", "adamw")}


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna = pytest.importorskip("optuna")
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)


class TestRandomSampler(SamplerContract):
    make = staticmethod(lambda space, seed: RandomSampler(space, seed=seed))
    spaces = [
        {"c": choice("sgd", "adam", [3, 2]), "r": randint(5), "u": uniform(0.001, 0.01),
         "qu": quniform(0.05, 0.95, 0.1), "lu": loguniform(-9.21, -2.3), "qlu": qloguniform(2, 6, 4),
         "n": normal(0.5, 0.1), "qn": qnormal(10, 3, 2), "ln": lognormal(-3, 0.5), "qln": qlognormal(3, 0.5, 0.5),
         "fixed": 7},
        [YOLO, FRCNN],
    ]


class TestGridSampler(SamplerContract):
    make = staticmethod(lambda space, seed: GridSampler(space, seed=seed))
    spaces = [
        {"optimizer": choice("sgd", "adam", "adamw"), "training_batch_size": choice(8, 16), "flag": choice(True, 1)},
        [{"model_name": "yolov5", "model_size": choice("small", "medium")},
         {"model_name": choice("fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn"),
          "optimizer": choice("sgd", "adam")}],
    ]


class TestBayesianSampler(SamplerContract):
    make = staticmethod(lambda space, seed: BayesianSampler(space, seed=seed, n_startup_trials=4))
    spaces = [
        {"x": uniform(0, 1), "q": quniform(0.05, 0.97, 0.1), "batch": quniform(10, 70, 16),
         "grid": choice([3, 2], [5, 3]), "flag": choice(True, 1, "1"), "fixed": "sgd"},
        [YOLO, FRCNN],
    ]
