"""The one loader of the configuration text a user gives: run YAML, sweep YAML, ``%%avml`` cell bodies, JSON.

Every door reads through ``load_config_text`` (``read_config_file`` for files), so each guard holds everywhere:

- a file must be a regular file (not ``/dev/zero``, a FIFO or a folder) of at most ``MAX_CONFIG_BYTES``;
- its bytes must be UTF-8 (a byte-order mark is allowed); the error names the file, line and byte;
- nesting is limited to ``MAX_DEPTH`` levels (the YAML composer recurses once per level);
- a key written twice in one mapping is refused, naming both lines (PyYAML would keep the last one silently);
- aliases (``*name``) may repeat anchored values (``&name``), but the document they expand to is limited to
  ``MAX_EXPANDED_VALUES`` values and ``MAX_DEPTH`` levels ("billion laughs"), and an alias inside its own
  anchor is refused;
- values echoed in any error are cut by ``echo_value``.

JSON files (``.json``) are read by the same YAML loader: a JSON document is a YAML flow mapping once its tabs,
which JSON allows only between tokens, are read as spaces. Every failure is a ``ConfigError`` naming the
source and, when known, the line.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from jupyter_avml.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20
"""Largest configuration file or cell read (1 MiB): real ones are a few KB."""

MAX_DEPTH = 50
"""Deepest nesting of mappings and lists (the deepest sweep search space is about 6 levels)."""

MAX_EXPANDED_VALUES = 100_000
"""Most values (scalars, lists, mappings) a document may hold once its aliases are expanded."""

ECHO_MAX = 200
"""Longest ``repr`` of a value echoed in an error message (``echo_value``)."""

_MERGE_TAG = "tag:yaml.org,2002:merge"


def echo_value(value: Any, limit: int = ECHO_MAX) -> str:
    """``repr(value)``, cut to ``limit`` characters followed by ``... (N characters)`` when longer.

    Error messages show the offending value; a value of many megabytes must not become a message of as many.
    """
    if isinstance(value, str) and len(value) > 4 * limit:
        head = repr(value[:limit])[:limit]  # not the whole repr of a long string, only what is shown
        return f"{head}... ({len(repr(value))} characters)"
    try:
        text = repr(value)
    except ValueError:  # e.g. an integer of more than 4300 digits (sys.set_int_max_str_digits)
        return f"<{type(value).__name__} too large to show>"
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def read_config_text(path: str | os.PathLike, *, what: str = "configuration file") -> str:
    """The text of a configuration file, after the file checks of the module docstring.

    Raises
    ------
    ConfigError
        naming the file: missing, not a regular file, too large, unreadable, or not UTF-8 (with the line).
    """
    source = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the {what}: {exc.strerror or exc}", source=source) from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"not a regular file ({describe_file_kind(info.st_mode)}); a {what} is a text file",
                          source=source)
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} too large: {info.st_size:,} bytes (at most {MAX_CONFIG_BYTES:,})",
                          source=source)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)  # the file may grow between stat and read
    except OSError as exc:
        raise ConfigError(f"cannot read the {what}: {exc.strerror or exc}", source=source) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} too large: more than {MAX_CONFIG_BYTES:,} bytes", source=source)
    return decode_utf8(data, source)


def decode_utf8(data: bytes, source: str | None) -> str:
    """``data`` as text (a UTF-8 byte-order mark dropped), or a ConfigError naming the line and byte."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"not UTF-8 text: {exc.reason} at byte {exc.start} ({data[exc.start:exc.start + 1]!r}); "
                          f"save the file as UTF-8", source=source, line=line) from None


def describe_file_kind(mode: int) -> str:
    """``"a folder"``, ``"a character device"``... for an ``st_mode`` that is not a regular file."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_config_file(path: str | os.PathLike, *, what: str = "configuration file"
                     ) -> tuple[dict[str, Any], dict[str, int]]:
    """``load_config_text`` of a file (``.json`` files too); see the module docstring for the checks."""
    text = read_config_text(path, what=what)
    if Path(path).suffix.lower() == ".json":
        text = text.replace("\t", " ")  # in JSON a tab can only be whitespace between tokens
    return load_config_text(text, source=str(path))


def load_config_text(text: str, source: str | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse a YAML (or JSON) mapping of settings with every guard of the module docstring.

    Returns
    -------
    data, lines
        The mapping, and the 1-based line of every key: top-level keys by name, nested ones by dotted path
        (``limits.max_trials``, ``search_space[1].learning_rate``). An empty document gives ``({}, {})``.

    Raises
    ------
    ConfigError
        naming ``source`` and the line: YAML syntax, nesting, duplicate keys, alias expansion, or a document
        that is not a mapping.
    """
    import yaml

    lines: dict[str, int] = {}
    node, data = _load(text, source, lines)
    if node is None:
        return {}, {}
    if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
        kind = "a list" if isinstance(node, yaml.SequenceNode) else f"the value {echo_value(data)}"
        raise ConfigError(f"expected a mapping of settings (key: value), got {kind}", source=source,
                          line=node.start_mark.line + 1)
    return data, lines


def load_config_value(text: str, source: str | None = None) -> Any:
    """One YAML value (a ``--set key=VALUE`` or a search-space expression), with the same guards."""
    return _load(text, source, None)[1]


# --------------------------------------------------------------------------------------------------------
def _load(text: str, source: str | None, lines: dict[str, int] | None):
    """``(node, data)`` of one YAML document (``(None, None)`` when empty), every guard applied.

    ``lines``, when given, receives the line of every key (read before construction, which rewrites the
    mappings that merge ``<<: *anchor`` keys).
    """
    import yaml

    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"configuration too large: {len(text):,} characters (at most {MAX_CONFIG_BYTES:,})",
                          source=source)
    loader = _guarded_loader_class()(text, source)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_expansion(node, source)
        if lines is not None:
            _key_lines(node, "", lines)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"YAML syntax error: {problem}", source=source, line=line) from None
    except RecursionError:  # the guards above should make this unreachable; never a traceback regardless
        raise ConfigError(f"nested too deeply (at most {MAX_DEPTH} levels)", source=source) from None
    finally:
        loader.dispose()
    return node, data


_LOADER_CLASS = None


def _guarded_loader_class():
    """A ``yaml.SafeLoader`` that limits nesting and refuses duplicate keys while composing (built once)."""
    global _LOADER_CLASS
    if _LOADER_CLASS is not None:
        return _LOADER_CLASS
    import yaml

    class GuardedLoader(yaml.SafeLoader):
        def __init__(self, text: str, source: str | None):
            super().__init__(text)
            self.source = source
            self.depth = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                return super().compose_node(parent, index)  # expansion is measured once composed
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    line = self.peek_event().start_mark.line + 1
                    raise ConfigError(f"nested more than {MAX_DEPTH} levels deep", source=self.source, line=line)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def compose_mapping_node(self, anchor):
            node = super().compose_mapping_node(anchor)
            _check_duplicate_keys(node, self.source)
            return node

    _LOADER_CLASS = GuardedLoader
    return GuardedLoader


def _check_duplicate_keys(node, source: str | None) -> None:
    import yaml

    seen: dict[tuple[str, str], int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
            continue  # merged keys (<<: *base) may be overridden by the mapping's own keys
        line = key_node.start_mark.line + 1
        first = seen.get((key_node.tag, key_node.value))
        if first is None:
            seen[(key_node.tag, key_node.value)] = line
        else:
            raise ConfigError(f"duplicate key {echo_value(key_node.value)} (lines {first} and {line}); "
                              f"write each key once", source=source, line=line)


def _children(node) -> list:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root, source: str | None) -> None:
    """Refuse a node graph whose aliases expand past the limits, or loop (iterative: no recursion)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            on_path.discard(key)
            if size[key] > MAX_EXPANDED_VALUES:
                raise ConfigError(f"aliases expand the document to more than {MAX_EXPANDED_VALUES:,} values; "
                                  f"write the values out instead of repeating anchors",
                                  source=source, line=node.start_mark.line + 1)
            if depth[key] > MAX_DEPTH:
                raise ConfigError(f"aliases nest the document more than {MAX_DEPTH} levels deep",
                                  source=source, line=node.start_mark.line + 1)
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise ConfigError("an alias refers to the value that contains it (a recursive structure)",
                                  source=source, line=child.start_mark.line + 1)
            if id(child) not in size:
                stack.append((child, False))


def _key_lines(node, prefix: str, out: dict[str, int]) -> None:
    """Lines of keys by dotted path; depth and size are bounded by ``_check_expansion`` already."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            path = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            out.setdefault(path, key_node.start_mark.line + 1)
            _key_lines(value_node, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            path = f"{prefix}[{index}]"
            out.setdefault(path, item.start_mark.line + 1)
            _key_lines(item, path, out)
