"""Every notebook of notebooks/ runs from top to bottom (nbclient, a real kernel) with CI-sized settings.

The notebooks read their sizes from ``AVML_NB_EPOCHS`` / ``AVML_NB_IMAGES``; here they train one epoch on a
few dozen images. All of them share one workspace (one MLflow store to create instead of five). The
quickstart runs here only when Chromium is missing: otherwise ``test_browser.py`` runs it, cell by cell, in
JupyterLab.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.notebook.test_browser import CHROMIUM

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
FINAL = ("completed", "early_terminated", "stopped", "failed", "invalid")


@pytest.fixture(scope="module")
def shared_workspace(module_tmp):
    return module_tmp


def execute(name: str, tmp_path: Path, workspace: Path, monkeypatch, images: int) -> nbformat.NotebookNode:
    """Run notebooks/<name> in a copy under ``tmp_path``; returns the executed notebook."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    shutil.copy(NOTEBOOKS / name, folder / name)
    monkeypatch.setenv("AVML_NB_EPOCHS", "1")
    monkeypatch.setenv("AVML_NB_IMAGES", str(images))
    monkeypatch.setenv("AVML_WORKSPACE", str(workspace))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.read(folder / name, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, folder / name)  # kept in the test's tmp folder for a look after a failure
    return nb


def outputs_of(nb, marker: str) -> list:
    """The outputs of the code cell whose source contains ``marker``."""
    cells = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    assert len(cells) == 1, marker
    return cells[0].outputs


def html_of(outputs) -> str:
    return "".join(o.data.get("text/html", "") for o in outputs if o.output_type in ("display_data",
                                                                                      "execute_result"))


def text_of(outputs) -> str:
    return "".join(o.text for o in outputs if o.output_type == "stream")


def dashboard_statuses(html: str) -> list[str]:
    return re.findall(r'class="avml-row[^"]*" data-child="\d+" data-status="(\w+)"', html)


def assert_final_dashboard(outputs, children: int, *, confusion_matrix: bool) -> str:
    """The dashboard's display: a live widget plus the static fallback, refreshed to the final picture."""
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1
    html = html_of(views)
    statuses = dashboard_statuses(html)
    assert len(statuses) == children and all(s in FINAL for s in statuses), statuses
    assert 'class="avml-header"' in html and "data:image/png;base64," in html
    assert ('class="avml-confusion-matrix"' in html) == confusion_matrix
    assert 'class="avml-pr-curves"' in html and 'class="avml-per-class"' in html
    return html


def test_notebooks_are_saved_without_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells
                   if c.cell_type == "code"), path.name
        assert "AVML_NB_EPOCHS" in nb.cells[1].source and "AVML_WORKSPACE" in nb.cells[1].source, path.name
        assert "../shared" not in path.read_text(), path.name
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == {
        "quickstart.ipynb", "multilabel.ipynb", "object_detection.ipynb", "instance_segmentation.ipynb",
        "bring_your_own_data.ipynb", "visual_qa.ipynb"}  # visual_qa runs in tests/qa/test_notebook.py


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM.exists(), reason="quickstart.ipynb runs in JupyterLab in test_browser.py")
def test_quickstart(tmp_path, shared_workspace, monkeypatch):
    nb = execute("quickstart.ipynb", tmp_path, shared_workspace, monkeypatch, images=48)
    assert_final_dashboard(outputs_of(nb, "%%avml baseline"), 1, confusion_matrix=True)
    assert_final_dashboard(outputs_of(nb, "%%avml sweep"), 4, confusion_matrix=True)
    assert "as shapes-classifier version" in text_of(outputs_of(nb, "%avml register"))


@pytest.mark.slow(seconds=20)
def test_multilabel(tmp_path, shared_workspace, monkeypatch):
    nb = execute("multilabel.ipynb", tmp_path, shared_workspace, monkeypatch, images=48)
    assert_final_dashboard(outputs_of(nb, "%%avml multilabel-{RUN}"), 2, confusion_matrix=False)
    assert "OK: no problems found" in text_of(outputs_of(nb, "%avml validate"))
    assert 'class="avml-details"' in html_of(outputs_of(nb, "%avml best"))


@pytest.mark.slow(seconds=25)
@pytest.mark.parametrize("name, marker", [("object_detection.ipynb", "%%avml object-detection-{RUN}"),
                                          ("instance_segmentation.ipynb", "%%avml instance-segmentation-{RUN}")])
def test_detection_and_segmentation(tmp_path, shared_workspace, monkeypatch, name, marker):
    nb = execute(name, tmp_path, shared_workspace, monkeypatch, images=12)
    assert_final_dashboard(outputs_of(nb, marker), 1, confusion_matrix=False)
    assert "boxes" in text_of(outputs_of(nb, "load_model"))


@pytest.mark.slow(seconds=15)
def test_bring_your_own_data(tmp_path, shared_workspace, monkeypatch):
    nb = execute("bring_your_own_data.ipynb", tmp_path, shared_workspace, monkeypatch, images=36)
    folder = tmp_path / "notebooks"
    for converted in ("folders", "coco", "voc"):
        assert (folder / "converted" / f"{converted}.jsonl").stat().st_size > 0
    for marker in ("converted/folders.jsonl --task", "converted/coco.jsonl\n", "converted/voc.jsonl\n"):
        assert "OK: no problems found" in text_of(outputs_of(nb, marker)), marker
    assert_final_dashboard(outputs_of(nb, "%%avml byod-{RUN}"), 1, confusion_matrix=True)
    assert "as my-shapes version" in text_of(outputs_of(nb, "%avml register"))
