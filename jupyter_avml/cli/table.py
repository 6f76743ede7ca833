"""The machinery of the verb table: a verb is declared once and served by both doors.

A ``Verb`` names what the user types (``status``, ``runs list``), its arguments (``Arg``, with their help),
the function that does it (``run(args, door)`` returns a result) and how that result is shown: as text in a
shell, as JSON (``--json``, added to every verb that has a JSON form) and as a notebook display. The shell
door (``cli/main.py``, ``avml VERB ...``) and the notebook door (``magics/_magic.py``, ``%avml VERB ...``) both
build their argument parser with ``add_verbs`` from the same table (``cli/verbs.py``) and both call
``run_verb``: the same words parse to the same namespace and call the same code.

A verb or an argument that makes sense in one door only says so (``doors``) and why (``only_because``);
the help of both doors prints that reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SHELL = "shell"
NOTEBOOK = "notebook"
BOTH = frozenset({SHELL, NOTEBOOK})

#: ``Show(result, args, door) -> exit status or None``: prints or displays a result; ``None`` leaves the
#: exit status to the verb's ``exit_status``.
Show = Callable[[Any, argparse.Namespace, "Door"], "int | None"]


@dataclass(frozen=True)
class Arg:
    """One argument of a verb: the flags and keyword arguments of ``ArgumentParser.add_argument``."""

    flags: tuple[str, ...]
    help: str
    options: Mapping[str, Any] = field(default_factory=dict)
    doors: frozenset[str] = BOTH

    @property
    def dest(self) -> str:
        if "dest" in self.options:
            return self.options["dest"]
        long = next((f for f in self.flags if f.startswith("--")), self.flags[0])
        return long.lstrip("-").replace("-", "_")

    @property
    def positional(self) -> bool:
        return not self.flags[0].startswith("-")


def arg(*flags: str, help: str, doors: Iterable[str] = BOTH, **options: Any) -> Arg:
    """``Arg`` with ``add_argument``'s spelling: ``arg("--child", type=int, metavar="ID", help=...)``."""
    return Arg(tuple(flags), help, dict(options), frozenset(doors))


@dataclass(frozen=True)
class Verb:
    """A verb of ``avml`` and ``%avml``.

    Parameters
    ----------
    name:
        What the user types: one word, or a group and a word (``"runs list"``).
    summary:
        One line for the verb lists (``avml --help``, ``%avml help``).
    run:
        ``run(args, door) -> result``: does the work; raises ``AvmlError`` for what the user can fix.
    args:
        The arguments, in order. ``--workspace`` is added to every verb; ``--json`` to verbs with ``json``.
    text:
        Shows the result in a shell (the default, and the notebook's when there is no ``display``).
    json:
        ``json(result, args) -> object`` printed by ``--json``.
    display:
        Shows the result in a notebook (rich displays, dashboards, variables).
    exit_status:
        ``exit_status(result, args) -> int`` once the result is shown (default 0).
    failure:
        ``failure(result, args) -> str``: one line saying why the exit status is not 0 (the shell prints it
        on stderr, the notebook raises it as its error); without it the shown result says it.
    doors, only_because:
        Where the verb exists, and why not in the other door.
    """

    name: str
    summary: str
    run: Callable[[argparse.Namespace, Door], Any]
    args: tuple[Arg, ...] = ()
    description: str = ""
    text: Show | None = None
    json: Callable[[Any, argparse.Namespace], Any] | None = None
    display: Show | None = None
    exit_status: Callable[[Any, argparse.Namespace], int] | None = None
    failure: Callable[[Any, argparse.Namespace], str] | None = None
    doors: frozenset[str] = BOTH
    only_because: str = ""

    @property
    def words(self) -> list[str]:
        return self.name.split()

    def args_for(self, door: str) -> list[Arg]:
        """The verb's arguments in ``door``, with the ones every verb has."""
        out = [a for a in self.args if door in a.doors]
        if self.json is not None:
            out.append(JSON_ARG)
        out.append(WORKSPACE_ARG)
        return out


WORKSPACE_ARG = arg("--workspace", metavar="DIR",
                    help="the workspace folder (default: $AVML_WORKSPACE or ./avml-workspace)")
JSON_ARG = arg("--json", action="store_true", help="print one JSON object instead of text")


class Door:
    """Where a verb is called from: this is the shell's door (``avml``).

    The notebook's door (``magics._magic.NotebookDoor``) displays objects richly, binds variables, remembers
    the experiment last started, and adds ``show_dashboard(handle)`` and ``wait(handle, widget)``, which only
    the verbs' notebook ``display`` functions call. ``command`` is how the user calls a verb in the door
    (``avml`` or ``%avml``): hints in messages use it.
    """

    name = SHELL
    command = "avml"

    def display(self, obj: Any) -> None:
        print(obj if isinstance(obj, str) else repr(obj))

    def bind(self, variable: str, value: Any) -> None:
        """Put ``value`` in the user's variable. The shell's parser has no ``--var`` (an argument of the notebook
        only), so a verb that reaches this from the shell is a programming error, said as such."""
        raise RuntimeError(f"a shell has no variables: --var {variable} is an argument of the notebook door only")

    def help_text(self, topic: list[str]) -> str:
        """The overview of the door's verbs, or the help of the verb ``topic`` names."""
        from jupyter_avml.cli.main import shell_help

        return shell_help(topic)

    def remember(self, name: str, workspace) -> None:
        """Note the experiment last started or attached (the notebook's default for ``status``)."""

    def current_experiment(self, workspace, explicit: bool) -> tuple[str, Any] | None:
        """``(name, workspace root)`` of the experiment a verb without NAME means, if the door has one in mind
        (``explicit``: the user named the workspace)."""
        return None


# -- building parsers ---------------------------------------------------------------------------------------
def add_verbs(subparsers, verbs: Iterable[Verb], door: str, groups: Mapping[str, str],
              workspace_default: Any = argparse.SUPPRESS) -> dict[str, argparse.ArgumentParser]:
    """Add every verb of ``door`` to an argparse ``subparsers`` (groups such as ``runs`` get their own level).

    ``workspace_default`` is the default of each verb's ``--workspace``: by default none is set, so that
    ``avml --workspace DIR VERB`` is not overwritten (the notebook, with no top-level option, passes ``None``).
    Every parser's ``func(args)`` runs the verb through the shell door and returns the exit status; the
    notebook door calls ``run_verb`` with its own door instead. Returns the parsers by verb name.
    """
    parsers: dict[str, argparse.ArgumentParser] = {}
    group_subparsers: dict[str, Any] = {}
    for verb in verbs:
        if door not in verb.doors:
            continue
        target = subparsers
        if len(verb.words) == 2:
            group = verb.words[0]
            if group not in group_subparsers:
                group_parser = subparsers.add_parser(group, help=groups.get(group, ""),
                                                     description=groups.get(group, ""))
                group_subparsers[group] = group_parser.add_subparsers(
                    dest=f"{group}_command", metavar="COMMAND", required=True)
                parsers[group] = group_parser
            target = group_subparsers[group]
        parser = target.add_parser(verb.words[-1], help=verb.summary, description=verb.description or verb.summary,
                                   epilog=_other_door_epilog(verb, door))
        for item in verb.args_for(door):
            options = dict(item.options)
            if item is WORKSPACE_ARG:
                options["default"] = workspace_default
            parser.add_argument(*item.flags, help=item.help, **options)
        parser.set_defaults(func=_shell_runner(verb), verb_name=verb.name)
        parsers[verb.name] = parser
    return parsers


def _other_door_epilog(verb: Verb, door: str) -> str | None:
    """The arguments the verb takes in the other door only, and what they do there."""
    other = NOTEBOOK if door == SHELL else SHELL
    items = [a for a in verb.args if door not in a.doors and other in a.doors]
    if not items:
        return None
    where = f"%avml {verb.name}" if other == NOTEBOOK else f"avml {verb.name}"
    return f"In {'a notebook' if other == NOTEBOOK else 'a shell'} ({where}) also: " + "; ".join(
        f"{synopsis(a).strip('[]')}: {a.help}" for a in items) + "."


def _shell_runner(verb: Verb) -> Callable[[argparse.Namespace], int]:
    def func(args: argparse.Namespace) -> int:
        outcome = run_verb(verb, args, Door())
        if outcome.failure:
            print(f"avml {verb.name}: {outcome.failure}", file=sys.stderr)
        return outcome.status

    return func


# -- running -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """How a verb ended: its exit status and, when not 0, the verb's line saying why (if it has one)."""

    status: int
    failure: str | None = None


def run_verb(verb: Verb, args: argparse.Namespace, door: Door) -> Outcome:
    """Do the verb and show its result the way ``door`` shows things."""
    if not hasattr(args, "workspace"):
        args.workspace = None
    result = verb.run(args, door)
    status: int | None = None
    if getattr(args, "json", False) and verb.json is not None:
        print(json.dumps(verb.json(result, args), default=str), file=sys.stdout, flush=True)
    elif door.name == NOTEBOOK and verb.display is not None:
        status = verb.display(result, args, door)
    elif verb.text is not None:
        status = verb.text(result, args, door)
    if status is None:
        status = verb.exit_status(result, args) if verb.exit_status is not None else 0
    status = int(status or 0)
    failure = verb.failure(result, args) if status and verb.failure is not None else None
    return Outcome(status, failure)


def usage(verb: Verb, door: str) -> list[str]:
    """The synopsis of the verb in ``door``, one part per argument: ``["status", "[NAME]"]`` (``--workspace``
    and ``--json``, which many verbs share, are left out)."""
    return [verb.name] + [synopsis(item) for item in verb.args_for(door) if item not in (WORKSPACE_ARG, JSON_ARG)]


def synopsis(item: Arg) -> str:
    """How an argument shows in a synopsis: ``NAME``, ``[--child ID]``, ``[--set KEY=VALUE ...]``."""
    options = item.options
    if item.positional:
        name = options.get("metavar") or item.flags[0].upper()
        nargs = options.get("nargs")
        return f"[{name}]" if nargs == "?" else f"[{name} ...]" if nargs == "*" else name
    flag = item.flags[-1] if len(item.flags) > 1 and item.flags[-1].startswith("--") else item.flags[0]
    if options.get("action") in ("store_true", "store_false"):
        shown = flag
    else:
        shown = f"{flag} {options.get('metavar') or item.dest.upper()}"
    if options.get("action") == "append":
        shown += " ..."
    return shown if options.get("required") else f"[{shown}]"
