"""The ultralytics names the adapter relies on still exist, with the signatures it expects, and nothing else in
jupyter_avml touches ultralytics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jupyter_avml.models.ultralytics_adapter.hooks import HOOKS, Hook, check_hook

PACKAGE = Path(__file__).resolve().parents[2] / "jupyter_avml"
ADAPTER = PACKAGE / "models" / "ultralytics_adapter"


@pytest.fixture(scope="module", autouse=True)
def _ultralytics_in_a_workspace(tmp_path_factory):
    from jupyter_avml.models.ultralytics_adapter import prepare_ultralytics

    prepare_ultralytics(tmp_path_factory.mktemp("hooks-ws"))


@pytest.mark.parametrize("hook", HOOKS, ids=lambda hook: hook.name)
def test_the_hook_exists_in_the_installed_ultralytics(hook):
    problem = check_hook(hook)
    assert problem is None, problem


@pytest.mark.parametrize("hook, expected", [
    (Hook("ultralytics.engine.trainer:BaseTrainer._no_such_hook", "call", ("self",), "test"), "not found"),
    (Hook("ultralytics.engine.trainer:BaseTrainer.build_optimizer", "call", ("self", "model", "lr"), "test"),
     "parameters are (self, model, name"),
    (Hook("ultralytics.utils.nms:non_max_suppression", "keywords", ("conf_thres", "agnostic_nms_v2"), "test"),
     "no parameter agnostic_nms_v2"),
    (Hook("ultralytics.engine.trainer:BaseTrainer", "assigned", ("never_assigned_attribute",), "test"),
     "never assign self.never_assigned_attribute"),
    (Hook("on_train_teleport", "callback", (), "test"), "no such callback event"),
])
def test_a_changed_hook_is_reported_by_name(hook, expected):
    problem = check_hook(hook)
    assert problem is not None and hook.name in problem and expected in problem


def test_only_the_adapter_imports_ultralytics():
    pattern = re.compile(r"^\s*(from ultralytics[\s.]|import ultralytics\b)", re.MULTILINE)
    outside = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
               if ADAPTER not in path.parents and pattern.search(path.read_text(encoding="utf-8"))]
    assert outside == []


def test_no_process_wide_swap_of_check_amp():
    """The trainer subclass overrides ``_setup_train`` instead of replacing ultralytics' module function."""
    sources = "\n".join(path.read_text(encoding="utf-8") for path in PACKAGE.rglob("*.py")
                        if path.name != "hooks.py")
    assert not re.search(r"\.check_amp\s*=", sources)
