"""``%avml`` and ``%%avml``: experiments from a notebook.

``%%avml [NAME] [--var VAR] [--dry-run] [--foreground] [--set KEY=VALUE] [--workspace DIR]``: the cell body
is the experiment in YAML, with the keys of ``avml sweep CONFIG.yaml`` (``sweep.config``). The cell validates
it, starts the experiment in the background, shows its live dashboard and returns; the sweep goes on while
other cells run.

``%avml VERB ...``: ``list``, ``status``, ``attach``, ``stop``, ``best``, ``register``, ``validate``,
``convert``, ``help`` (``%avml help`` says more).

Errors the user can fix are shown as one short message (``UsageError``) naming the cell line and the key,
never as a traceback. IPython expands ``$var`` and ``{expr}`` in the magic's line only, never in the YAML
body, which is passed on exactly as written.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import sys
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser, argument, magic_arguments, parse_argstring

from jupyter_avml.errors import AvmlError
from jupyter_avml.magics._displays import DISPLAYS
from jupyter_avml.magics._errors import cell_error, line_error

#: Verbs whose arguments are exactly the ``avml`` command line's (same parser, same code).
CLI_VERBS = ("validate", "convert")

HELP = """\
%%avml [NAME] [--var VAR] [--dry-run] [--foreground] [--set KEY=VALUE ...] [--workspace DIR]
    The cell body is an experiment in YAML (the keys of `avml sweep CONFIG.yaml`): task, training_data,
    model_name or a search_space, hyperparameters, sampling, iterations, early_termination_policy,
    limits, arguments. Validates it, starts it in the background, shows its live dashboard and returns.
    A single model without a search space is a one-child experiment (a baseline).
      NAME          the experiment's name (default: experiment_name in the YAML, else sweep-DATE-TIME)
      --var VAR     put the experiment's handle in the variable VAR
      --dry-run     show the resolved configuration and the number of configurations; start nothing
      --foreground  wait until the experiment ends (interrupt the kernel to stop waiting)
      --set K=V     override a YAML key (dotted for sections: limits.max_trials=4); the line is
                    expanded by IPython, so --set number_of_epochs={epochs} passes a Python value
                    (the YAML body itself is never expanded)
      --workspace   the workspace folder (default: $AVML_WORKSPACE or ./avml-workspace)

%avml list                          the experiments of the workspace
%avml status [NAME]                 an experiment's leaderboard as text (default: the last one started here)
%avml attach NAME [--var VAR]       rebuild the dashboard of a running or finished experiment
                                    (after a kernel restart too: everything is read from the workspace)
%avml stop NAME [--child ID]        stop the experiment, or one child
%avml best NAME                     the best child: its metrics, confusion matrix, PR curves
%avml register NAME MODEL_NAME      register the best child's model under MODEL_NAME
%avml validate FILE --task TASK     check a JSONL file (the options of `avml validate`)
%avml convert FORMAT SRC -o OUT     convert a dataset to JSONL (the options of `avml convert`)
%avml help                          this text

list, status, attach, stop, best and register take --workspace DIR.
"""


def _verb_parser() -> MagicArgumentParser:
    parser = MagicArgumentParser(prog="%avml", add_help=False)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=MagicArgumentParser)

    def verb(name: str, **kwargs) -> MagicArgumentParser:
        sub = verbs.add_parser(name, prog=f"%avml {name}", add_help=False, **kwargs)
        sub.add_argument("--workspace", default=None, metavar="DIR")
        return sub

    verb("list")
    verb("status").add_argument("name", nargs="?", metavar="NAME")
    attach = verb("attach")
    attach.add_argument("name", metavar="NAME")
    attach.add_argument("--var", default=None, metavar="VAR")
    stop = verb("stop")
    stop.add_argument("name", metavar="NAME")
    stop.add_argument("--child", type=int, default=None, metavar="ID")
    verb("best").add_argument("name", metavar="NAME")
    register = verb("register")
    register.add_argument("name", metavar="NAME")
    register.add_argument("model_name", metavar="MODEL_NAME")
    verb("help")
    return parser


@magics_class
class AvmlMagics(Magics):
    """The ``%avml`` / ``%%avml`` magics (``%avml help``)."""

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell, **kwargs)
        self.last_experiment: tuple[str, Path] | None = None  # (name, workspace root) last started/attached
        self._verbs = _verb_parser()

    @magic_arguments()
    @argument("name", nargs="?", default=None, help="the experiment's name")
    @argument("--var", default=None, help="the variable that receives the experiment's handle")
    @argument("--dry-run", action="store_true", help="resolve and count the configurations; start nothing")
    @argument("--foreground", action="store_true", help="wait until the experiment ends")
    @argument("--workspace", default=None, help="the workspace folder")
    @argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
              help="override a key of the YAML (a YAML value; dotted keys reach into sections, "
                   "e.g. limits.max_trials=4); repeatable. The line is expanded by IPython, so "
                   "--set number_of_epochs={epochs} passes a Python value")
    @line_cell_magic
    def avml(self, line: str, cell: str | None = None):
        """Run experiments from the notebook: ``%%avml`` starts one (YAML body), ``%avml help`` lists verbs."""
        if cell is None:
            return self._line(line)
        args = parse_argstring(self.avml, line)
        return self._cell(args, line, cell)

    # -- %%avml ------------------------------------------------------------------------------------------
    def _cell(self, args, line: str, cell: str):
        from jupyter_avml.sweep.experiment import Experiment, default_experiment_name
        from jupyter_avml.workspace import Workspace

        if args.var is not None and not args.var.isidentifier():
            raise UsageError(f"avml: --var {args.var!r} is not a Python variable name")

        cell_lines = [f"%%avml {line}".rstrip()] + cell.splitlines()
        workspace = Workspace.resolve(args.workspace)
        try:
            if args.name is not None:
                Experiment(args.name, workspace)  # a bad name fails before the YAML is read
            config = self._parse_cell(cell, cell_lines, args.overrides)
            name = args.name or config.experiment_name or default_experiment_name(None, workspace)
            experiment = Experiment(name, workspace)
            if args.dry_run:
                from jupyter_avml.magics._dry_run import DryRun

                self._display(DryRun(name, config))
                return None
            handle = experiment.submit(config)
        except AvmlError as exc:
            raise cell_error(exc, cell_lines) from None
        self.last_experiment = (name, workspace.root)
        if args.var:
            self.shell.user_ns[args.var] = handle
        widget = self._show_dashboard(name, workspace.root, handle)
        if args.foreground:
            try:
                self._wait(handle, widget)
            except AvmlError as exc:  # the driver died: the message says how to resume
                raise UsageError(f"avml: {exc}") from None
        return None

    @staticmethod
    def _parse_cell(cell: str, cell_lines: list[str], overrides: list[str] = ()):
        """The validated ``ExperimentConfig`` of the cell's YAML (relative paths from the kernel's folder)."""
        from jupyter_avml.sweep.config import load_yaml_nested, parse_experiment

        # One blank line in front: YAML line numbers are then the cell's own line numbers.
        data, lines = load_yaml_nested("\n" + cell)
        if not data and not overrides:
            raise UsageError("avml: the cell holds no settings: write the experiment in YAML below %%avml "
                             "(task, training_data, model_name or search_space...; see %avml help)")
        for item in overrides:
            apply_override(data, lines, item)
        return parse_experiment(data, lines=lines, base_dir=Path.cwd())

    def _show_dashboard(self, name: str, workspace: Path, handle: Any):
        from jupyter_avml.dashboard import open_dashboard

        widget = open_dashboard(name, workspace, controller=handle)
        DISPLAYS.show(widget)
        return widget

    def _wait(self, handle: Any, widget) -> None:
        try:
            handle.wait()
        except KeyboardInterrupt:
            print(f"stopped waiting; the experiment goes on in the background (%avml stop {handle.name} stops it)",
                  file=sys.stderr)
            return
        if widget.updater is not None:
            widget.updater.join(10)
        DISPLAYS.refresh()  # the final picture, from this (the main) thread

    # -- %avml VERB ----------------------------------------------------------------------------------------
    def _line(self, line: str):
        from jupyter_avml.workspace import Workspace

        try:
            words = shlex.split(line)
        except ValueError as exc:  # an unclosed quote
            raise UsageError(f"%avml: {exc}: {line}") from None
        if not words or words[0] in ("help", "-h", "--help"):
            print(HELP)
            return None
        verb = words[0]
        if verb in CLI_VERBS:
            return self._cli(verb, words[1:])
        args = self._verbs.parse_args(words)
        workspace = Workspace.resolve(args.workspace).root
        try:
            return getattr(self, f"_verb_{verb}")(args, workspace)
        except AvmlError as exc:
            raise line_error(verb, exc) from None

    def _verb_list(self, args, workspace: Path):
        from jupyter_avml.magics._listing import ExperimentList

        self._display(ExperimentList.scan(workspace))

    def _verb_status(self, args, workspace: Path):
        from jupyter_avml.dashboard import DashboardSource, ExperimentFiles, text_summary
        from jupyter_avml.errors import NotFoundError

        name = args.name
        if name is None:
            name, workspace = self._default_experiment(workspace, explicit=args.workspace is not None)
        snap = DashboardSource(ExperimentFiles(name, workspace)).poll()
        if snap is None:
            raise NotFoundError(f"no experiment {name!r} in {workspace} (see %avml list)")
        print(text_summary(snap))

    def _verb_attach(self, args, workspace: Path):
        from jupyter_avml.sweep.experiment import attach

        if args.var is not None and not args.var.isidentifier():
            raise UsageError(f"%avml attach: --var {args.var!r} is not a Python variable name")
        handle = attach(args.name, workspace=workspace)
        self.last_experiment = (args.name, workspace)
        if args.var:
            self.shell.user_ns[args.var] = handle
        self._show_dashboard(args.name, workspace, handle)

    def _verb_stop(self, args, workspace: Path):
        from jupyter_avml.sweep.experiment import attach

        handle = attach(args.name, workspace=workspace)
        state = handle.state
        if args.child is None:
            if state.finished:
                print(f"{args.name} has already ended ({state.status}): nothing to stop")
                return
            handle.stop()
            print(f"{args.name}: stop requested; every child ends after its current batch")
            return
        handle.stop_child(args.child)  # an unknown child raises NotFoundError, listing the children
        child = state.child(args.child)
        if child.finished:
            print(f"{args.name}: child {args.child} has already ended ({child.status}): nothing to stop")
        else:
            print(f"{args.name}: child {args.child}: stop requested; it ends after its current batch")

    def _verb_best(self, args, workspace: Path):
        from jupyter_avml.dashboard import static_summary
        from jupyter_avml.sweep.experiment import attach

        best = attach(args.name, workspace=workspace).get_best_child()
        print(f"{args.name}: best child {best.child_id} ({best.model_name}, {best.status}): "
              f"{best.primary_metric} {best.primary_metric_value:.4f}; model {best.model_path}")
        self._display(static_summary(args.name, workspace, child=best.child_id))

    def _verb_register(self, args, workspace: Path):
        from jupyter_avml.sweep.experiment import attach

        handle = attach(args.name, workspace=workspace)
        best = handle.get_best_child()
        version = handle.register_model(args.model_name)
        print(f"{args.name}: registered the model of child {best.child_id} ({best.model_name}, "
              f"{best.primary_metric} {best.primary_metric_value:.4f}) as {args.model_name} version {version}")

    def _verb_help(self, args, workspace: Path):
        print(HELP)

    def _cli(self, verb: str, words: list[str]):
        """``%avml validate|convert ...``: the ``avml`` command line's parser and ``run(args)``."""
        from jupyter_avml.cli.main import build_parser

        parser = build_parser()
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                args = parser.parse_args([verb, *words])
        except SystemExit as exc:
            if exc.code in (0, None):  # --help: argparse printed it
                return None
            raise UsageError(stderr.getvalue().strip().splitlines()[-1]) from None
        try:
            status = args.func(args)
        except AvmlError as exc:
            raise line_error(verb, exc) from None
        if status:
            # The report above says what is wrong; the status makes Run All stop here, as the CLI would.
            raise UsageError(f"%avml {verb}: found problems (exit status {status})")
        return None

    def _default_experiment(self, workspace: Path, explicit: bool = False) -> tuple[str, Path]:
        """The experiment last started or attached here; else (or in another workspace) the newest one."""
        from jupyter_avml.errors import NotFoundError
        from jupyter_avml.sweep.experiment import list_experiments

        if self.last_experiment is not None and (not explicit or self.last_experiment[1] == workspace):
            return self.last_experiment
        states = list_experiments(workspace)
        if not states:
            raise NotFoundError(f"no experiment in {workspace} yet (start one with %%avml)")
        return states[-1].name, workspace

    def _display(self, obj: Any) -> None:
        from IPython.display import display

        display(obj)


def apply_override(data: dict[str, Any], lines: dict[str, int], item: str) -> None:
    """``--set KEY=VALUE``: set ``data[KEY]`` (dotted keys reach into mappings) to the YAML value VALUE.

    The key's line is forgotten, so a message about it does not point at the body line it replaced.
    """
    import yaml

    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise UsageError(f"avml: --set expects KEY=VALUE (e.g. --set number_of_epochs=2), got {item!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise UsageError(f"avml: --set {key}: the value {text!r} is not valid YAML ({exc})") from None
    *parents, last = key.split(".")
    target = data
    for depth, part in enumerate(parents):
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise UsageError(f"avml: --set {key}: {'.'.join(parents[:depth + 1])} is not a mapping in the cell")
        target = child
    target[last] = value
    for known in [k for k in lines if k == key or k.startswith(key + ".") or k.startswith(key + "[")]:
        del lines[known]

