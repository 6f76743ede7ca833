"""The verb table: every verb in both doors (or a reason), the same words parsed the same way in both, one
``--set`` parser, and the help of both doors built from it."""

from __future__ import annotations

import argparse
import json

import pytest
from IPython.core.error import UsageError

from jupyter_avml.cli import sweep as sweep_verbs
from jupyter_avml.cli import train as train_verbs
from jupyter_avml.cli.main import shell_parsers
from jupyter_avml.cli.overrides import SET_ARG, apply_overrides, parse_override
from jupyter_avml.cli.table import BOTH, JSON_ARG, NOTEBOOK, SHELL, WORKSPACE_ARG, Arg, Verb
from jupyter_avml.cli.verbs import CELL_ARGS, GROUPS, VERBS, verbs_in
from jupyter_avml.errors import ConfigError
from tests.cli.doors import avml, cell, magics, one_line

BOOKKEEPING = {"func", "verb", "verb_name"}


def _notebook_parsers(shell):
    return magics(shell).parsers()


def sample_argv(verb: Verb, arguments: list[Arg], everything: bool) -> list[str]:
    """Words that give every argument a value (``everything``), or only the required ones."""
    argv: list[str] = []
    for item in arguments:
        options = item.options
        flag = item.flags[-1]
        if item.positional:
            if options.get("nargs") not in ("?", "*") or everything:
                argv.append(f"{item.dest}-value")
            continue
        if not everything and not options.get("required"):
            continue
        action = options.get("action")
        if action in ("store_true", "store_false"):
            argv.append(flag)
        elif action == "append":
            argv += [flag, "a=1", flag, "b.c=[2, 3]"]
        elif "choices" in options:
            argv += [flag, list(options["choices"])[-1]]
        elif options.get("type") is int:
            argv += [flag, "3"]
        elif options.get("type") is float:
            argv += [flag, "0.5"]
        else:
            argv += [flag, f"{item.dest}-value"]
    return argv


def _dests(namespace: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(namespace).items() if k not in BOOKKEEPING and not k.endswith("_command")}


# -- the table ---------------------------------------------------------------------------------------------------
def test_every_verb_is_in_both_doors_or_says_why():
    names = [verb.name for verb in VERBS]
    assert len(names) == len(set(names))
    for verb in VERBS:
        assert verb.doors <= BOTH and verb.doors, verb.name
        if verb.doors != BOTH:
            assert len(verb.only_because) > 20, f"{verb.name} exists in one door only and must say why"
        assert verb.summary and all(item.help for item in verb.args), verb.name
        assert verb.text is not None or verb.display is not None or verb.name == "demo", verb.name  # demo prints
        for item in verb.args:
            if item.doors != BOTH:
                assert item.doors, (verb.name, item.flags)
    # Every verb of the list is in the table, in both doors.
    for name in ("validate", "convert", "train", "runs list", "runs show", "sweep", "resume", "list", "status",
                 "stop", "best", "register", "help", "datasets make-shapes", "datasets list"):
        assert {SHELL, NOTEBOOK} <= set(next(v for v in VERBS if v.name == name).doors), name


def test_each_door_parses_exactly_the_verbs_of_the_table(shell):
    shell_verbs = set(shell_parsers()[1]) - set(GROUPS)
    notebook_verbs = set(_notebook_parsers(shell)[1]) - set(GROUPS)
    assert shell_verbs == {v.name for v in verbs_in(SHELL)}
    assert notebook_verbs == {v.name for v in verbs_in(NOTEBOOK)}
    assert "attach" in notebook_verbs and "attach" not in shell_verbs


@pytest.mark.parametrize("verb", [v for v in VERBS if v.doors == BOTH], ids=lambda v: v.name)
@pytest.mark.parametrize("everything", [True, False], ids=["every-argument", "required-only"])
def test_the_same_words_parse_to_the_same_arguments_in_both_doors(shell, verb, everything):
    common = [a for a in verb.args_for(SHELL) if a.doors == BOTH]
    argv = [*verb.words, *sample_argv(verb, common, everything)]
    in_shell = _dests(shell_parsers()[0].parse_args(argv))
    in_notebook = _dests(_notebook_parsers(shell)[0].parse_args(argv))
    shell_only = {a.dest for a in verb.args if a.doors == {SHELL}}
    notebook_only = {a.dest for a in verb.args if a.doors == {NOTEBOOK}}
    assert {k: v for k, v in in_shell.items() if k not in shell_only} == \
        {k: v for k, v in in_notebook.items() if k not in notebook_only}
    assert set(in_shell) - shell_only == {a.dest for a in common}
    if everything:
        assert in_shell["workspace"] == "workspace-value"


def test_an_argument_of_one_door_is_refused_by_the_other(shell, capsys):
    with pytest.raises(SystemExit):
        shell_parsers()[0].parse_args(["sweep", "x.yaml", "--var", "h"])
    assert "unrecognized arguments: --var h" in capsys.readouterr().err
    with pytest.raises(UsageError, match="unrecognized arguments: --detach"):
        _notebook_parsers(shell)[0].parse_args(["sweep", "x.yaml", "--detach"])
    _notebook_parsers(shell)[0].parse_args(["attach", "x"])  # a notebook-only verb
    with pytest.raises(SystemExit):
        shell_parsers()[0].parse_args(["attach", "x"])
    assert "invalid choice: 'attach'" in capsys.readouterr().err


def test_workspace_given_before_the_verb_is_kept_by_the_shell():
    args = shell_parsers()[0].parse_args(["--workspace", "/w", "status"])
    assert args.workspace == "/w"
    args = shell_parsers()[0].parse_args(["status", "--workspace", "/v"])
    assert args.workspace == "/v"


# -- help ------------------------------------------------------------------------------------------------------
def test_shell_help_lists_the_verbs_and_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        shell_parsers()[0].parse_args(["--help"])
    text = capsys.readouterr().out
    for verb in verbs_in(SHELL):
        assert f"    {verb.words[0]}" in text, verb.name
    for status in ("  0  ", "  1  ", "  2  ", "  130"):
        assert status in text
    assert "only in a notebook: attach, because" in text
    code, out, _ = avml(capsys, "help", "stop")
    assert code == 0 and "--reason TEXT" in out and "--child ID" in out
    code, out, _ = avml(capsys, "help", "attach")
    assert code == 0 and "only in a notebook (%avml attach)" in out
    out = shell_parsers()[1]["sweep"].format_help()
    assert "In a notebook (%avml sweep) also: --foreground" in out and "--set KEY=VALUE" in out


def test_notebook_help_lists_every_verb_with_its_arguments(shell):
    ok, out, err, _ = cell(shell, "%avml help")
    assert ok, err
    for verb in verbs_in(NOTEBOOK):
        assert f"%avml {verb.name}" in out, verb.name
    assert "%avml stop NAME [--child ID] [--reason TEXT]" in out
    assert "%avml register NAME MODEL_NAME" in out and "--detach" not in out
    ok, out, err, _ = cell(shell, "%avml stop --help")
    assert ok and "--reason TEXT" in out and "usage: %avml stop" in out
    ok, out, err, _ = cell(shell, "%avml help runs show")
    assert ok and "usage: %avml runs show" in out


# -- --set: one parser -------------------------------------------------------------------------------------------
def test_one_set_argument_for_train_sweep_and_the_cell():
    assert SET_ARG in train_verbs.VERBS[0].args and SET_ARG in sweep_verbs.VERBS[0].args and SET_ARG in CELL_ARGS


@pytest.mark.parametrize("item, parts, value", [
    ("number_of_epochs=3", ["number_of_epochs"], 3),
    ("learning_rate=1e-3", ["learning_rate"], 0.001),
    ("model_name=choice('a', 'b')", ["model_name"], "choice('a', 'b')"),
    ("limits.max_trials=4", ["limits", "max_trials"], 4),
    ("validation_data=", ["validation_data"], None),
    (" run_name = x=y", ["run_name"], "x=y"),
    ("learning_rate=-2E+2", ["learning_rate"], -200.0),
    ("run_name='1e-3'", ["run_name"], "1e-3"),
])
def test_parse_override(item, parts, value):
    assert parse_override(item) == (parts, value)


@pytest.mark.parametrize("item, words", [
    ("number_of_epochs", "--set expects KEY=VALUE"), ("=3", "--set expects KEY=VALUE"),
    ("limits..max=1", "--set expects KEY=VALUE"), ("x=[1, 2", "--set x: the value '[1, 2' is not valid YAML"),
])
def test_parse_override_refuses(item, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[")):
        parse_override(item)


def test_apply_overrides_reaches_into_sections_and_forgets_their_lines():
    data = {"limits": {"max_trials": 50}, "number_of_epochs": 100}
    lines = {"limits": 3, "limits.max_trials": 4, "number_of_epochs": 5}
    apply_overrides(data, ["limits.max_trials=2", "number_of_epochs=7", "search_space.lr=uniform(0, 1)"], lines)
    assert data == {"limits": {"max_trials": 2}, "number_of_epochs": 7, "search_space": {"lr": "uniform(0, 1)"}}
    assert lines == {"limits": 3}
    with pytest.raises(ConfigError, match="number_of_epochs is not a section"):
        apply_overrides(data, ["number_of_epochs.x=1"])


SWEEP_YAML = """\
task: image-classification
training_data: {data}
model_name: resnet18
number_of_epochs: 100
search_space:
  learning_rate: uniform(0.001, 0.1)
limits:
  max_trials: 50
"""


def test_set_gives_the_same_dry_run_in_the_shell_and_in_a_cell(shell, tiny_shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AVML_WORKSPACE", str(tmp_path / "ws"))
    body = SWEEP_YAML.format(data=tiny_shapes)
    (tmp_path / "exp.yaml").write_text(body)
    sets = ["--set", "number_of_epochs=7", "--set", "limits.max_trials=3", "--set", "sampling=random"]
    code, out, err = avml(capsys, "sweep", "exp.yaml", "--name", "same", "--dry-run", *sets)
    assert code == 0, err
    ok, cell_out, err, outputs = cell(shell, f"%%avml same --dry-run {' '.join(sets)}\n{body}")
    assert ok, err
    assert outputs[0].data["text/plain"] == out.rstrip("\n")
    assert "3 configurations, nothing started" in out and "number_of_epochs: 7\n" in out
    code, out, err = avml(capsys, "sweep", "exp.yaml", "--dry-run", "--json", *sets)
    shown = json.loads(out)
    assert code == 0 and shown["configurations"] == 3 and shown["resolved"]["number_of_epochs"] == 7
    assert shown["data_ok"] is True and shown["data"][0]["rows"] == 16
    assert not (tmp_path / "ws").exists()  # nothing started


def test_set_errors_read_the_same_in_every_door(shell, tiny_shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    body = SWEEP_YAML.format(data=tiny_shapes)
    (tmp_path / "exp.yaml").write_text(body)
    (tmp_path / "run.yaml").write_text(body.split("search_space")[0])
    expected = "--set expects KEY=VALUE (e.g. --set number_of_epochs=2), got 'number_of_epochs'"
    for argv in (["sweep", "exp.yaml", "--dry-run"], ["train", "run.yaml"]):
        code, out, err = avml(capsys, *argv, "--set", "number_of_epochs")
        assert code == 2 and one_line(err) == f"avml {argv[0]}: error: {expected}"
    ok, _, err, _ = cell(shell, f"%%avml x --dry-run --set number_of_epochs\n{body}")
    assert not ok and one_line(err).endswith(f"avml: {expected}")
    # A value out of range names the key, in the shell as in the cell.
    code, _, err = avml(capsys, "train", "run.yaml", "--set", "number_of_epochs=-2")
    assert code == 2 and "number_of_epochs" in one_line(err) and "run.yaml with --set" in err
    ok, _, err, _ = cell(shell, f"%%avml x --dry-run --set number_of_epochs=-2\n{body}")
    assert not ok and "key 'number_of_epochs'" in one_line(err)


def test_json_and_workspace_are_declared_once():
    for verb in VERBS:
        args = verb.args_for(SHELL) + verb.args_for(NOTEBOOK)
        assert args.count(WORKSPACE_ARG) == 2
        assert args.count(JSON_ARG) == (2 if verb.json is not None else 0)
