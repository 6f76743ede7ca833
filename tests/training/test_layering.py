"""Layers point one way (issue 11): low to high, errors/fileio/tasks/workspace -> data, config, metrics -> models
-> runs (run folder + events) -> training, inference, tracking -> sweep -> dashboard/magics/cli.

Checked on the source (every import statement, at module level or inside functions), for the packages of this
area: none imports a package above it, and training, inference and tracking do not import each other (tracking
and inference take run ids and model files, not training or sweep objects).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "jupyter_avml"

# package -> packages it must never import
FORBIDDEN = {
    "metrics": {"models", "runs", "training", "inference", "tracking", "sweep", "dashboard", "magics", "cli"},
    "models": {"runs", "training", "inference", "tracking", "sweep", "dashboard", "magics", "cli"},
    "runs": {"models", "training", "inference", "tracking", "sweep", "dashboard", "magics", "cli"},
    "training": {"inference", "tracking.model_registry", "sweep", "dashboard", "magics", "cli"},
    "inference": {"training", "sweep", "dashboard", "magics", "cli"},
    "tracking": {"training", "inference", "sweep", "dashboard", "magics", "cli"},
}
SHIMS = {"training/events.py"}  # re-exports kept for callers outside the area


def _imports(path: Path) -> set[str]:
    """``jupyter_avml.X[.Y]`` names imported by ``path`` (without the ``jupyter_avml.`` prefix)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jupyter_avml."):
            found.add(node.module[len("jupyter_avml."):])
        elif isinstance(node, ast.Import):
            found.update(a.name[len("jupyter_avml."):] for a in node.names if a.name.startswith("jupyter_avml."))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_never_imports_a_layer_above_it(package):
    violations = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        relative = str(path.relative_to(PACKAGE))
        if relative in SHIMS:
            continue
        for name in _imports(path):
            if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN[package]):
                violations.append(f"{relative} imports jupyter_avml.{name}")
    assert violations == []


def test_the_family_record_is_the_one_switch_on_the_family_name():
    """Outside the zoo and the family record, no code compares ``family`` with a family's name."""
    import re

    pattern = re.compile(r"family\s*(==|!=|in)\s*[\(\[{]?\s*[\"'](timm|torchvision|yolov5)[\"']")
    switching = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                 if pattern.search(path.read_text(encoding="utf-8"))]
    assert switching == []
