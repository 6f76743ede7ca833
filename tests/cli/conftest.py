"""Fixtures of the verb-table tests: the notebook shell, tiny shapes data."""

from __future__ import annotations

import pytest

from jupyter_avml.data.shapes import make_shapes
from tests.cli.doors import notebook_shell


@pytest.fixture(scope="module")
def shell():
    ip = notebook_shell()
    yield ip
    ip.run_line_magic("unload_ext", "jupyter_avml")  # through IPython, so that the next load_ext loads


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """16 classification images of 32 px (valid data for dry runs and one tiny training run)."""
    return make_shapes(tmp_path_factory.mktemp("cli-shapes"), "image-classification", n=16, size=32, seed=3,
                       color_by_class=True)
