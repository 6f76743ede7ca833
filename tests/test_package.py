"""Package-level contracts: cheap import, one CLI with every verb, a workspace that writes nowhere else."""

from __future__ import annotations

import subprocess
import sys

from jupyter_avml.workspace import Workspace

HEAVY = ("torch", "torchvision", "timm", "ultralytics", "mlflow", "fiftyone", "optuna", "pandas", "matplotlib")


def test_import_does_not_load_heavy_libraries():
    code = ("import sys, jupyter_avml; jupyter_avml.ImageTask; jupyter_avml.AutoMLImageConfig;"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_lists_the_verbs():
    out = subprocess.run([sys.executable, "-m", "jupyter_avml", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for verb in ("demo", "validate", "convert", "datasets", "train", "runs", "sweep", "resume", "list", "status",
                 "stop", "best", "register", "help"):
        assert f"    {verb}" in out, verb
    assert "exit status:" in out and "only in a notebook: attach" in out


def test_workspace_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("AVML_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Workspace.resolve().root == tmp_path / "avml-workspace"
    monkeypatch.setenv("AVML_WORKSPACE", str(tmp_path / "env"))
    assert Workspace.resolve().root == tmp_path / "env"
    assert Workspace.resolve(tmp_path / "arg").root == tmp_path / "arg"
    assert not (tmp_path / "avml-workspace").exists() and not (tmp_path / "env").exists()
