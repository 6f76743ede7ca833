"""The README's quick start runs as written, cell by cell, in an IPython shell."""

from __future__ import annotations

import re

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from tests.conftest import REPO


def quick_start_cells() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Quick start"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.slow(seconds=40)
def test_the_quick_start_trains_a_sweep_and_predicts(tmp_path, monkeypatch, workspace):
    cells = quick_start_cells()
    assert len(cells) == 3 and cells[1].startswith("%%avml")
    monkeypatch.chdir(tmp_path)
    shell = InteractiveShell.instance()
    try:
        results = []
        for cell in cells:
            with capture_output() as captured:
                result = shell.run_cell(cell, store_history=False)
            assert result.success, f"{cell}\n{captured.stdout}\n{captured.stderr}\n{result.error_in_exec}"
            results.append(result.result)

        sweep = shell.user_ns["sweep"]
        assert sweep.state.status == "completed"
        children = sweep.state.children
        assert len(children) == 4 and {c.status for c in children} <= {"completed", "early_terminated"}
        prediction = results[-1]
        assert prediction["labels"] == ["circle", "square", "triangle"]
        assert sum(prediction["probs"]) == pytest.approx(1.0, abs=1e-5)
    finally:
        shell.run_line_magic("unload_ext", "jupyter_avml")  # through IPython, so that the next load_ext loads
