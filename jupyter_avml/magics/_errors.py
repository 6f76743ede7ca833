"""User errors as short messages: no traceback, the cell line and the key that caused them.

A ``%%avml`` cell's YAML is parsed with one blank line in front, so YAML line numbers are cell line numbers
(line 1 is the ``%%avml`` line itself) everywhere, including in the extra lines of a message that lists
several problems.
"""

from __future__ import annotations

from IPython.core.error import UsageError

from jupyter_avml.errors import AvmlError, ConfigError


def cell_error(exc: AvmlError, cell_lines: list[str] | None = None) -> UsageError:
    """A ``UsageError`` (IPython shows its message alone, in red) for an error in a ``%%avml`` cell.

    ``cell_lines`` are the cell's lines, the ``%%avml`` line first; the offending line is quoted.
    """
    if not isinstance(exc, ConfigError):
        return UsageError(f"avml: {exc}")
    where = []
    if exc.line is not None:
        where.append(f"cell line {exc.line}")
    if exc.field:
        where.append(f"key {exc.field!r}")
    text = "avml: " + (", ".join(where) + ": " if where else "") + exc.message
    if exc.value is not None and repr(exc.value) not in exc.message and str(exc.value) not in exc.message:
        text += f" (value: {exc.value!r})"
    if cell_lines and exc.line is not None and 1 <= exc.line <= len(cell_lines):
        text += f"\n  {exc.line:>3} | {cell_lines[exc.line - 1]}"
    return UsageError(text)


def line_error(verb: str, exc: AvmlError) -> UsageError:
    return UsageError(f"%avml {verb}: {exc}")
