from __future__ import annotations

import pytest
import torch

from tests.serving.models import save_untrained


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory):
    """``saved_models(task)``: the outputs folder of an untrained tiny model of ``task`` (made once per session)."""
    made = {}

    def get(task: str):
        if task not in made:
            made[task] = save_untrained(tmp_path_factory.mktemp(task), task)
        return made[task]

    return get


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: tests share 2 cores, and a service's predictions must not depend on the count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
