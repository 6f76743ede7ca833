from __future__ import annotations

import pytest

from jupyter_avml.data.shapes import make_shapes


@pytest.fixture(scope="session")
def shapes_multiclass(tmp_path_factory):
    """A small learnable multi-class set (generated once per test session): 300 images, 36 px."""
    return make_shapes(tmp_path_factory.mktemp("shapes-mc"), "image-classification", n=300, size=36, seed=1,
                       color_by_class=True)


@pytest.fixture(scope="session")
def shapes_multilabel(tmp_path_factory):
    """500 images, 48 px: multi-label shapes are smaller, so random crops need a little more room."""
    return make_shapes(tmp_path_factory.mktemp("shapes-ml"), "image-classification-multilabel", n=500, size=48,
                       seed=2, color_by_class=True)


@pytest.fixture(scope="session")
def shapes_tiny(tmp_path_factory):
    """48 images of 32 px: for tests of the engine's mechanics, where learning is not the point."""
    return make_shapes(tmp_path_factory.mktemp("shapes-tiny"), "image-classification", n=48, size=32, seed=3,
                       color_by_class=True)
