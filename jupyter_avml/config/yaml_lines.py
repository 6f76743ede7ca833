"""YAML loading that remembers the line of every key, so errors can point at it (see ``config.loader``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_avml.config.loader import load_config_text, read_config_file


def load_yaml_with_lines(text: str, source: str | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse a YAML mapping; return ``(data, {key: line})`` with 1-based line numbers.

    Top-level keys are listed by name, nested ones by dotted path. Every guard of ``config.loader`` applies
    (nesting, duplicate keys, alias expansion, size).
    """
    return load_config_text(text, source)


def read_yaml_file(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """``load_yaml_with_lines`` of a file, after the file checks of ``config.loader.read_config_text``."""
    return read_config_file(path)
