"""``%avml`` and ``%%avml``: the verbs of the ``avml`` command line in a notebook, and experiments in cells.

``%avml VERB ...`` parses its line with a parser built from the verb table (``cli/verbs.py``) that builds
``avml`` too: the same verbs, arguments, help and code. What differs is the door (``NotebookDoor``): results
are displayed richly (tables, dashboards), handles can be bound to variables (``--var``), and ``status``
without NAME means the experiment last started or attached here. ``%avml help`` lists everything.

``%%avml [NAME] [--var VAR] [--dry-run] [--foreground] [--set KEY=VALUE] [--workspace DIR]``: the cell body
is the experiment in YAML, with the keys of ``avml sweep CONFIG.yaml``; it is the notebook's form of
``sweep`` (same ``--set`` parser, same dry run, same dashboard as ``%avml sweep CONFIG.yaml``). The cell
validates it, starts the experiment in the background, shows its live dashboard and returns.

Errors the user can fix are shown as one short message (``UsageError``) naming the cell line and the key,
never as a traceback. IPython expands ``$var`` and ``{expr}`` in the magic's line only, never in the YAML
body, which is passed on exactly as written.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from jupyter_avml.cli.table import NOTEBOOK, Door
from jupyter_avml.errors import AvmlError
from jupyter_avml.magics._displays import DISPLAYS
from jupyter_avml.magics._errors import cell_error, line_error


class _HelpShown(Exception):
    """``--help`` printed a parser's help: nothing else to do."""


class NotebookParser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` (one red line in the notebook) instead of exiting the kernel."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None):
        if status:
            raise UsageError(f"{self.prog}: {(message or '').strip() or f'exit status {status}'}")
        if message:
            print(message, file=sys.stderr)
        raise _HelpShown()


class NotebookDoor(Door):
    """The notebook's door: IPython displays, variables of the user's namespace, the dashboard."""

    name = NOTEBOOK
    command = "%avml"

    def __init__(self, magics: AvmlMagics):
        self.magics = magics

    def display(self, obj: Any) -> None:
        from IPython.display import display

        display(obj)

    def bind(self, variable: str, value: Any) -> None:
        self.magics.shell.user_ns[variable] = value

    def remember(self, name: str, workspace) -> None:
        self.magics.last_experiment = (name, Path(workspace))

    def current_experiment(self, workspace, explicit: bool):
        """The experiment last started or attached here (in the workspace the user named, if any)."""
        last = self.magics.last_experiment
        if last is not None and (not explicit or last[1] == Path(workspace.root)):
            return last
        return None

    def help_text(self, topic: list[str]) -> str:
        from jupyter_avml.cli.verbs import notebook_overview, other_door_only

        if not topic:
            return notebook_overview()
        name = " ".join(topic)
        parsers = self.magics.parsers()[1]
        if name in parsers:
            return parsers[name].format_help().rstrip()
        elsewhere = {verb.name: verb for verb in other_door_only(NOTEBOOK)}
        if name in elsewhere:
            return f"{name}: only in a shell (avml {name}), because {elsewhere[name].only_because}"
        raise UsageError(f"%avml help: no verb {name!r} (see %avml help)")

    def show_dashboard(self, handle):
        """Display the experiment's live dashboard (its Stop buttons drive ``handle``); returns the widget."""
        from jupyter_avml.dashboard import open_dashboard

        widget = open_dashboard(handle.name, handle.workspace.root, controller=handle)
        DISPLAYS.show(widget)
        return widget

    def wait(self, handle, widget) -> None:
        """Block until the experiment ends (an interrupted kernel stops waiting, not the experiment)."""
        try:
            handle.wait()
        except KeyboardInterrupt:
            print(f"stopped waiting; the experiment goes on in the background (%avml stop {handle.name} stops it)",
                  file=sys.stderr)
            return
        if widget.updater is not None:
            widget.updater.join(10)
        DISPLAYS.refresh()  # the final picture, from this (the main) thread


@magics_class
class AvmlMagics(Magics):
    """The ``%avml`` / ``%%avml`` magics (``%avml help``)."""

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell, **kwargs)
        self.last_experiment: tuple[str, Path] | None = None  # (name, workspace root) last started/attached
        self._parsers: tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]] | None = None

    @line_cell_magic
    def avml(self, line: str, cell: str | None = None):
        """Run experiments from the notebook: ``%%avml`` starts one (YAML body), ``%avml help`` lists verbs."""
        if cell is None:
            return self._line(line)
        return self._cell(line, cell)

    def parsers(self) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
        """``(the %avml parser, {verb name: its parser})``, built from the verb table on first use (loading
        the extension stays cheap)."""
        if self._parsers is None:
            from jupyter_avml.cli.table import add_verbs
            from jupyter_avml.cli.verbs import GROUPS, VERBS

            parser = NotebookParser(prog="%avml", add_help=False)
            verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=NotebookParser)
            verbs.required = True
            self._parsers = parser, add_verbs(verbs, VERBS, NOTEBOOK, GROUPS, workspace_default=None)
        return self._parsers

    # -- %avml VERB --------------------------------------------------------------------------------------------
    def _line(self, line: str):
        from jupyter_avml.cli.table import run_verb
        from jupyter_avml.cli.verbs import expand_group_default, notebook_overview, verb_named

        words = expand_group_default(_split(line, "%avml"))
        if not words or words in (["-h"], ["--help"]):
            print(notebook_overview())
            return None
        try:
            args = self.parsers()[0].parse_args(words)
        except _HelpShown:
            return None
        verb = verb_named(args.verb_name)
        _check_variable(args, f"%avml {verb.name}")
        try:
            outcome = run_verb(verb, args, NotebookDoor(self))
        except AvmlError as exc:
            raise line_error(verb.name, exc) from None
        if outcome.status:
            # The output above says what is wrong; the error makes Run All stop here, as the shell's status would.
            why = outcome.failure or f"found problems (exit status {outcome.status})"
            raise UsageError(f"%avml {verb.name}: {why}")
        return None

    # -- %%avml ------------------------------------------------------------------------------------------------
    def _cell(self, line: str, cell: str):
        from jupyter_avml.cli.dry_run import DryRun
        from jupyter_avml.cli.sweep import SweepStarted, experiment_name
        from jupyter_avml.cli.verbs import verb_named
        from jupyter_avml.sweep import Experiment
        from jupyter_avml.workspace import Workspace

        try:
            args = _cell_parser().parse_args(_split(line, "%%avml"))
        except _HelpShown:
            return None
        _check_variable(args, "avml")
        cell_lines = [f"%%avml {line}".rstrip()] + cell.splitlines()
        workspace = Workspace.resolve(args.workspace)
        try:
            if args.name is not None:
                Experiment(args.name, workspace)  # a bad name fails before the YAML is read
            config = self._parse_cell(cell, args.overrides)
            name = args.name or experiment_name(config, None, workspace)
            if args.dry_run:
                result = DryRun(name, config, workspace)
            else:
                result = SweepStarted(Experiment(name, workspace).submit(config), "submitted", config)
        except AvmlError as exc:
            raise cell_error(exc, cell_lines) from None
        sweep = verb_named("sweep")  # shown exactly as `%avml sweep CONFIG.yaml` shows it
        try:
            sweep.display(result, args, NotebookDoor(self))
            status = sweep.exit_status(result, args)
        except AvmlError as exc:  # e.g. the driver died while --foreground waited: the message says how to resume
            raise UsageError(f"avml: {exc}") from None
        if status:
            raise UsageError(f"avml: {sweep.failure(result, args)}")
        return None

    @staticmethod
    def _parse_cell(cell: str, overrides: list[str] = ()):
        """The validated ``ExperimentConfig`` of the cell's YAML (relative paths from the kernel's folder)."""
        from jupyter_avml.cli.overrides import apply_overrides
        from jupyter_avml.sweep import parse_experiment
        from jupyter_avml.sweep.config import load_yaml_nested  # the YAML loader that keeps nested keys' lines

        # One blank line in front: YAML line numbers are then the cell's own line numbers.
        data, lines = load_yaml_nested("\n" + cell)
        if not data and not overrides:
            raise UsageError("avml: the cell holds no settings: write the experiment in YAML below %%avml "
                             "(task, training_data, model_name or search_space...; see %avml help)")
        apply_overrides(data, overrides, lines)
        return parse_experiment(data, lines=lines, base_dir=Path.cwd())


def _cell_parser() -> NotebookParser:
    """``%%avml``'s parser: the arguments of ``sweep`` that make sense when the cell is the YAML."""
    from jupyter_avml.cli.table import WORKSPACE_ARG
    from jupyter_avml.cli.verbs import CELL_ARGS

    parser = NotebookParser(prog="%%avml")
    for item in (*CELL_ARGS, WORKSPACE_ARG):
        parser.add_argument(*item.flags, help=item.help, **item.options)
    return parser


def _split(line: str, prog: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"{prog}: {exc}: {line}") from None


def _check_variable(args, prog: str) -> None:
    variable = getattr(args, "var", None)
    if variable is not None and not variable.isidentifier():
        raise UsageError(f"{prog}: --var {variable!r} is not a Python variable name")
