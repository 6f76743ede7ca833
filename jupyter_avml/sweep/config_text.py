"""The experiment configuration as text: reading YAML with the line of every key, writing ``experiment.yaml``.

* ``load_yaml_nested``: a YAML mapping and the line of every key by dotted path (``limits.max_trials``,
  ``search_space[1].learning_rate``), so that every message names the file and the line;
* ``written_form``: the mapping as ``experiment.yaml`` keeps it: expressions as their text, policies as
  mappings, data paths made absolute (the file is read again by the driver, from another folder).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_avml.config.config import PATH_KEYS

__all__ = ["load_yaml_nested", "written_form", "yaml_scalar"]


def load_yaml_nested(text: str, source: str | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse a YAML mapping; lines of every key by dotted path (``limits.max_trials``, ``search_space[1].x``),
    with every guard of ``config.loader``."""
    from jupyter_avml.config.loader import load_config_text

    return load_config_text(text, source)


def yaml_scalar(text: str) -> Any:
    """``--name=value`` of ``arguments``: the value read as YAML (its text when it is not valid YAML)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _absolute(value: str, base_dir: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())


def written_form(data: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
    """``data`` as ``experiment.yaml`` keeps it: YAML-able (``plain``), data paths absolute from ``base_dir``
    (top-level keys and inside ``arguments``/``training_parameters``, both forms); ``dataset:`` references
    are kept as they are."""
    raw = plain(data)
    for key in PATH_KEYS:
        value = raw.get(key)
        if isinstance(value, str) and not value.startswith("dataset:"):
            raw[key] = _absolute(value, base_dir)
    for section in ("arguments", "training_parameters"):
        value = raw.get(section)
        if isinstance(value, dict):
            for key in PATH_KEYS:
                for name in (key, f"--{key}"):
                    if isinstance(value.get(name), str) and not value[name].startswith("dataset:"):
                        value[name] = _absolute(value[name], base_dir)
        elif isinstance(value, list):
            for index in range(len(value) - 1):
                if value[index] in {f"--{k}" for k in PATH_KEYS} and isinstance(value[index + 1], str) \
                        and not value[index + 1].startswith("dataset:"):
                    value[index + 1] = _absolute(value[index + 1], base_dir)
    return raw


def plain(value: Any) -> Any:
    """YAML-able copy: distributions as expression text, policies as mappings, tuples as lists."""
    from jupyter_avml.sweep.policies import EarlyTerminationPolicy
    from jupyter_avml.sweep.space import Distribution, SearchSpace

    if isinstance(value, Distribution):
        return str(value)
    if isinstance(value, EarlyTerminationPolicy):
        return value.to_dict()
    if isinstance(value, SearchSpace):
        return plain(value.to_config())
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return copy.deepcopy(value)
