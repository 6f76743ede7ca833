from __future__ import annotations

import pytest

from jupyter_avml.data.shapes import make_shapes


@pytest.fixture(scope="session")
def shapes_multiclass(tmp_path_factory):
    """A small learnable multi-class set (generated once per test session)."""
    return make_shapes(tmp_path_factory.mktemp("shapes-mc"), "image-classification", n=160, size=48, seed=1)


@pytest.fixture(scope="session")
def shapes_multilabel(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("shapes-ml"), "image-classification-multilabel", n=200, size=48,
                       seed=2)
