"""The one configuration loader (config.loader): lines of keys, guards, JSON, single values, echoed values."""

from __future__ import annotations

import pytest

from jupyter_avml.config.loader import (
    ECHO_MAX,
    MAX_DEPTH,
    echo_value,
    load_config_text,
    load_config_value,
    read_config_file,
)
from jupyter_avml.config.yaml_lines import load_yaml_with_lines
from jupyter_avml.errors import ConfigError


def test_lines_of_top_level_and_nested_keys():
    data, lines = load_config_text("task: x\nlimits:\n  max_trials: 4\nspace:\n  - lr: 1\n  - lr: 2\n")
    assert data == {"task": "x", "limits": {"max_trials": 4}, "space": [{"lr": 1}, {"lr": 2}]}
    assert lines == {"task": 1, "limits": 2, "limits.max_trials": 3, "space": 4, "space[0]": 5, "space[0].lr": 5,
                     "space[1]": 6, "space[1].lr": 6}
    assert load_yaml_with_lines("a: 1\nb: 2\n", "f.yaml") == ({"a": 1, "b": 2}, {"a": 1, "b": 2})


def test_merge_keys_may_be_overridden_and_small_aliases_are_fine():
    text = "base: &b {lr: 0.1, seed: 1}\nrun:\n  <<: *b\n  seed: 2\nagain: *b\n"
    data, lines = load_config_text(text)
    assert data["run"] == {"lr": 0.1, "seed": 2} and data["again"] == {"lr": 0.1, "seed": 1}
    assert lines["run.seed"] == 4


@pytest.mark.parametrize("text, message, line", [
    ("a: 1\nb:\n  c: 1\n  c: 2\n", "duplicate key 'c' (lines 3 and 4)", 4),
    ("{a: 1, b: 2, a: 3}", "duplicate key 'a' (lines 1 and 1)", 1),
    ("a: 1\n'a': 2\n", "duplicate key 'a' (lines 1 and 2)", 2),
    ("a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"nested more than {MAX_DEPTH} levels deep", 1),
    ("- 1\n- 2\n", "expected a mapping of settings (key: value), got a list", 1),
    ("a: [1\n", "YAML syntax error: expected ',' or ']', but got '<stream end>'", 2),
    ("a: !!python/name:os.system x\n", "YAML syntax error: could not determine a constructor", 1),
])
def test_refusals_name_the_line(text, message, line):
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "c.yaml")
    assert message in str(info.value) and info.value.line == line and info.value.source == "c.yaml"


def test_depth_limit_is_exact():
    load_config_text("a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))  # the mapping is level 1


def test_single_values_have_the_same_guards():
    assert load_config_value("[1, 2]") == [1, 2]
    assert load_config_value("") is None
    with pytest.raises(ConfigError, match="nested more than"):
        load_config_value("[" * 200 + "]" * 200, "--set x")


def test_empty_document():
    assert load_config_text("") == ({}, {})
    assert load_config_text("# only a comment\n") == ({}, {})


def test_json_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{\n\t"task": "image-classification",\n\t"space": [1,\t2]\n}\n')
    assert read_config_file(path) == ({"task": "image-classification", "space": [1, 2]},
                                      {"task": 2, "space": 3, "space[0]": 3, "space[1]": 3})


def test_missing_and_folder(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        read_config_file(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match=r"not a regular file \(a folder\)"):
        read_config_file(tmp_path)


def test_echo_value():
    assert echo_value("abc") == "'abc'"
    long = "x" * 10_000
    shown = echo_value(long)
    assert shown == repr(long)[:ECHO_MAX] + "... (10002 characters)"
    assert echo_value(list(range(1000)), 20).endswith("... (4890 characters)")
    assert echo_value(10 ** 5000) == "<int too large to show>"
