"""YAML loading that remembers the line of every top-level key, so errors can point at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_avml.errors import ConfigError


def load_yaml_with_lines(text: str, source: str | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse a YAML mapping; return ``(data, {key: line})`` with 1-based line numbers of top-level keys."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"YAML syntax error: {problem}", source=source, line=line) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"expected a mapping of settings (key: value), got {type(data).__name__}",
                          source=source, line=1)
    lines = {}
    for key_node, _ in node.value:
        lines[str(key_node.value)] = key_node.start_mark.line + 1
    return data, lines


def read_yaml_file(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file: {exc.strerror}", source=str(path)) from None
    return load_yaml_with_lines(text, source=str(path))
