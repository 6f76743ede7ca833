"""notebooks/visual_qa.ipynb runs from top to bottom (nbclient, a real kernel): planted label errors found, fixed,
exported as a new version, trained again.

It trains two small models from scratch (a few epochs on 24 px images), hence ``slow``. The kernel inherits this
session's FiftyOne database folder (tests/qa/conftest.py) and serves the App on a free port.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.notebook.test_browser import free_port
from tests.notebook.test_notebooks import outputs_of, text_of

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "visual_qa.ipynb"


@pytest.mark.slow(seconds=65)
def test_visual_qa_notebook(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    shutil.copy(NOTEBOOK, folder / NOTEBOOK.name)
    monkeypatch.setenv("AVML_NB_EPOCHS", "5")
    monkeypatch.setenv("AVML_NB_IMAGES", "90")
    monkeypatch.setenv("AVML_NB_FIFTYONE_PORT", str(free_port()))
    monkeypatch.setenv("AVML_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.read(folder / NOTEBOOK.name, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, folder / NOTEBOOK.name)  # kept in the test's tmp folder for a look after a failure
        _delete_datasets(tmp_path / "workspace")

    check = text_of(outputs_of(nb, "%avml qa check"))
    assert "90 rows, 90 valid, 0 rejected" in check and "FiftyOne dataset avml-check-multiclass-" in check
    found = re.search(r"(\d+) of the (\d+) planted label errors are in the top (\d+)",
                      text_of(outputs_of(nb, "PLANTED]")))
    assert found, text_of(outputs_of(nb, "PLANTED]"))
    in_top, planted, top = (int(v) for v in found.groups())
    assert planted == 6 and top == 9 and in_top >= planted - 1, found.group(0)
    exported = text_of(outputs_of(nb, "%avml qa export"))
    relabeled = int(re.search(r"relabeled: (\d+) rows", exported).group(1))
    assert "registered shapes-qa version 2" in exported and relabeled >= in_top - 1, exported
    # The review's static picture replaced its "preparing" text once ready: it stays in the saved notebook.
    review = [o for o in outputs_of(nb, "%avml qa qa-baseline") if "image/png" in o.get("data", {})]
    assert review and 'class="avml-review-grid"' in review[-1]["data"]["text/html"]
    compared = text_of(outputs_of(nb, "fixed_data = to_fiftyone"))
    accuracies = re.search(r"baseline ([0-9.]+) -> fixed ([0-9.]+)", compared)
    assert accuracies and float(accuracies.group(2)) > float(accuracies.group(1)), compared
    side_by_side = dict(re.findall(r"'(baseline|fixed)': ([0-9.]+)", compared))
    assert set(side_by_side) == {"baseline", "fixed"}, compared


def _delete_datasets(workspace: Path) -> None:
    """The kernel's FiftyOne datasets (this session shares its database): those made from this workspace."""
    from jupyter_avml.qa._fo import fiftyone

    fo = fiftyone()
    for name in fo.list_datasets():
        info = (fo.load_dataset(name).info or {}).get("avml") or {}
        if info.get("workspace") == str(workspace):
            fo.delete_dataset(name)
