"""Both doors in a test: ``avml`` in-process (``cli.main.main`` with capsys) and ``%avml`` in an IPython shell."""

from __future__ import annotations

import textwrap

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from jupyter_avml.cli.main import main


def avml(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``avml ARGV`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def notebook_shell() -> InteractiveShell:
    """The IPython shell of the tests, with the extension loaded."""
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jupyter_avml")
    return shell


def cell(shell: InteractiveShell, source: str):
    """Run one cell: (success, stdout, stderr, rich outputs)."""
    with capture_output() as captured:
        result = shell.run_cell(textwrap.dedent(source).strip("\n"), store_history=False)
    return result.success, captured.stdout, captured.stderr, captured.outputs


def magics(shell: InteractiveShell):
    """The ``AvmlMagics`` instance registered in ``shell``."""
    return shell.magics_manager.registry["AvmlMagics"]


def one_line(text: str) -> str:
    """The text, checked to be a single line without a traceback."""
    text = text.strip()
    assert "Traceback" not in text and 'File "' not in text, text
    assert len(text.splitlines()) == 1, text
    return text
