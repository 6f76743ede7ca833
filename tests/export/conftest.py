from __future__ import annotations

from tests.serving.conftest import _one_thread, saved_models  # noqa: F401 - the same fixtures as tests/serving
