"""Shared set-up of the AutoMode tests: generated data, and weights availability under the test's control."""

from __future__ import annotations

import pytest

from jupyter_avml.data.shapes import make_shapes
from jupyter_avml.models.weights_origin import WeightsOrigin
from jupyter_avml.sweep.automode import Hardware

CPU = Hardware("cpu", 0, 2)
GPU = Hardware("gpu", 1, 16)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """40 generated 32 px images of 3 classes (colour by class: learnable in an epoch or two)."""
    return make_shapes(tmp_path_factory.mktemp("automode-data"), "image-classification", n=40, size=32, seed=0,
                       color_by_class=True)


@pytest.fixture
def weights_at_hand(monkeypatch):
    """Make the named models' weights local (the others need a download); returns the setter."""

    def set_local(*names: str) -> None:
        def origin(spec, **kwargs):
            if spec.name in names:
                return WeightsOrigin("local", f"test package of {spec.name}")
            return WeightsOrigin("download", f"https://example.invalid/{spec.name}")

        monkeypatch.setattr("jupyter_avml.models.weights_origin.weights_origin", origin)

    return set_local
