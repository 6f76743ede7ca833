"""``--set KEY=VALUE``: the one parser of setting overrides, for ``avml train``, ``avml sweep`` and ``%%avml``.

VALUE is read as YAML (``--set number_of_epochs=3`` gives an int, ``--set model_name="choice('a', 'b')"`` a
string); an empty VALUE is ``null``. Dotted keys reach into sections (``--set limits.max_trials=4``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from typing import Any

from jupyter_avml.cli.table import arg
from jupyter_avml.errors import ConfigError

_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

SET_ARG = arg("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
              help="override a setting of the YAML (VALUE is YAML; dotted keys reach into sections, "
                   "e.g. limits.max_trials=4; relative paths are taken from the current folder); repeatable")


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"limits.max_trials=4"`` -> ``(["limits", "max_trials"], 4)``.

    Raises
    ------
    ConfigError
        When ``item`` is not ``KEY=VALUE`` or VALUE is not YAML (the message names the item).
    """
    from jupyter_avml.config.loader import echo_value, load_config_value

    key, sep, text = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or any(not part for part in parts):
        raise ConfigError(f"--set expects KEY=VALUE (e.g. --set number_of_epochs=2), got {echo_value(item)}")
    try:
        # The guards of every configuration file (size, depth, aliases, duplicate keys) apply here too.
        value = load_config_value(text, source=f"--set {key}") if text.strip() else None
    except ConfigError as exc:
        raise ConfigError(f"--set {key}: the value {echo_value(text)} is not valid YAML ({exc.message})",
                          field=key, value=text) from None
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(text.strip()):
        # YAML 1.1 (PyYAML) reads 1e-3 as a string (it wants 1.0e-3); on a command line it means a number.
        value = float(value)
    return parts, value


def apply_overrides(data: MutableMapping[str, Any], items: Iterable[str],
                    lines: MutableMapping[str, int] | None = None) -> MutableMapping[str, Any]:
    """Set each ``KEY=VALUE`` of ``items`` in ``data`` (in place; returns ``data``).

    ``lines`` (key path -> line of the YAML it came from) forgets the overridden keys, so a message about
    one of them does not point at the line it replaced.
    """
    for item in items:
        parts, value = parse_override(item)
        key = ".".join(parts)
        target = data
        for depth, part in enumerate(parts[:-1]):
            child = target.setdefault(part, {})
            if not isinstance(child, MutableMapping):
                raise ConfigError(f"--set {key}: {'.'.join(parts[:depth + 1])} is not a section (a mapping)",
                                  field=key, value=value)
            target = child
        target[parts[-1]] = value
        if lines is not None:
            for known in [k for k in lines if k == key or k.startswith(key + ".") or k.startswith(key + "[")]:
                del lines[known]
    return data
