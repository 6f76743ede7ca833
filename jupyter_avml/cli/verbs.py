"""The verb table of ``avml VERB`` and ``%avml VERB``: every verb, in the order the help lists them.

Each module declares its verbs (``VERBS``: name, arguments with help, the function that does it, its text,
JSON and notebook forms; see ``cli/table.py``); this module puts them in one table, from which
``cli/main.py`` builds the shell's parser and ``magics/_magic.py`` the notebook's.
"""

from __future__ import annotations

import textwrap

from jupyter_avml.cli import (
    convert,
    datasets,
    demo,
    experiments,
    export,
    models,
    predict,
    qa,
    runs,
    serve,
    sweep,
    train,
    validate,
)
from jupyter_avml.cli.overrides import SET_ARG
from jupyter_avml.cli.table import NOTEBOOK, SHELL, Verb, arg, synopsis, usage

WIDTH = 110  # of the help texts' lines
GROUPS = {"datasets": datasets.GROUP_HELP, "runs": runs.GROUP_HELP, "qa": qa.GROUP_HELP}
# group -> the command a group's word alone means (`avml qa TARGET` is `avml qa review TARGET`)
GROUP_DEFAULTS = {"qa": qa.DEFAULT_COMMAND}


def help_verb(args, door) -> str:
    """The door's overview, or the help of the verb named by ``args.topic``."""
    return door.help_text(list(args.topic))


HELP = Verb("help", "this overview, or the arguments of VERB", help_verb,
            args=(arg("topic", nargs="*", metavar="VERB", help="a verb (and its command: runs list)"),),
            text=lambda text, args, door: print(text))

VERBS: tuple[Verb, ...] = (
    *demo.VERBS, *validate.VERBS, *convert.VERBS, *datasets.VERBS, *models.VERBS, *train.VERBS, *runs.VERBS,
    *sweep.VERBS,  # sweep, resume
    *experiments.VERBS,  # list, status, stop, best, register, attach
    *qa.VERBS,  # qa check, import, predict, evaluate, mistakes, review, export
    *predict.VERBS,  # predict, score
    *serve.VERBS,  # serve, deploy, deployments
    *export.VERBS,
    HELP,
)


def verb_named(name: str) -> Verb:
    for verb in VERBS:
        if verb.name == name:
            return verb
    raise KeyError(name)


def expand_group_default(words: list[str]) -> list[str]:
    """``["qa", "TARGET", ...]`` -> ``["qa", "review", "TARGET", ...]``: a group followed by no command of its own
    means its default command (both doors call this before parsing)."""
    if len(words) >= 2 and words[0] in GROUP_DEFAULTS and not words[1].startswith("-"):
        commands = {verb.words[1] for verb in VERBS if len(verb.words) == 2 and verb.words[0] == words[0]}
        if words[1] not in commands:
            return [words[0], GROUP_DEFAULTS[words[0]], *words[1:]]
    return list(words)


def verbs_in(door: str) -> list[Verb]:
    return [verb for verb in VERBS if door in verb.doors]


def other_door_only(door: str) -> list[Verb]:
    """The verbs ``door`` does not have (each says why)."""
    return [verb for verb in VERBS if door not in verb.doors]


# -- the cell magic's arguments (the notebook form of ``sweep``: the YAML is the cell) ---------------------------
CELL_ARGS = (
    arg("name", nargs="?", default=None, metavar="NAME",
        help="the experiment's name (default: experiment_name in the YAML, else sweep-N)"),
    experiments.VAR_ARG, sweep.DRY_RUN_ARG, sweep.FOREGROUND_ARG, SET_ARG,
)


def notebook_overview() -> str:
    """``%avml help``: the cell magic, every verb of the notebook, and what the shell has that it has not."""
    lines = ["%%avml [NAME] [--var VAR] [--dry-run] [--foreground] [--set KEY=VALUE ...] [--workspace DIR]",
             "    The cell body is an experiment in YAML (the keys of `avml sweep CONFIG.yaml`): task, training_data,",
             "    model_name or a search_space, hyperparameters, sampling, iterations, early_termination_policy,",
             "    limits, arguments. Validates it, starts it in the background, shows its live dashboard and returns.",
             "    A single model without a search space is a one-child experiment (a baseline). The line is",
             "    expanded by IPython (--set number_of_epochs={epochs} passes a Python value); the YAML never is."]
    for item in CELL_ARGS:
        shown = synopsis(item).strip("[]").replace(" ...", "")
        lines += _wrap(item.help, WIDTH, f"      {shown:17} ", " " * 24)
    lines += ["", "%avml VERB ...: the verbs of the `avml` command line, with the same arguments:"]
    lines += _verb_lines(NOTEBOOK)
    lines += ["", "Every verb takes --workspace DIR (default: $AVML_WORKSPACE or ./avml-workspace); --json prints",
              "JSON instead. `%avml help VERB` (or `%avml VERB --help`) lists a verb's arguments."]
    missing = other_door_only(NOTEBOOK)
    if missing:
        lines += textwrap.wrap("Not in a notebook: " + "; ".join(f"{v.name} ({v.only_because})" for v in missing)
                               + ".", WIDTH)
    return "\n".join(lines)


def shell_epilog() -> str:
    """The end of ``avml --help``: exit statuses, and the verbs only a notebook has."""
    lines = ["exit status:",
             "  0    done (also: Ctrl-C while `sweep` follows an experiment, which goes on in the background)",
             "  1    it ran but did not succeed: a training run failed; an experiment ended with no completed",
             "       child (every child failed, was invalid or stopped before a model), or its driver failed",
             "  2    refused: a usage error, an invalid configuration or data, a name not found, a damaged",
             "       state.json/run.json; `validate` (and `sweep --dry-run`) found problems in the data",
             "  130  interrupted (Ctrl-C)",
             "",
             "in a notebook: %load_ext jupyter_avml, then %avml VERB ... takes the same verbs and arguments",
             "(%avml help); a %%avml cell holds an experiment's YAML."]
    for verb in other_door_only(SHELL):
        lines += textwrap.wrap(f"only in a notebook: {verb.name}, because {verb.only_because}.", WIDTH)
    return "\n".join(lines)


def _verb_lines(door: str) -> list[str]:
    prefix = "%avml " if door == NOTEBOOK else "avml "
    column = 46
    out = []
    for verb in verbs_in(door):
        parts = usage(verb, door)
        text = prefix + " ".join(parts)
        if len(text) >= column:
            out += _wrap_parts([prefix + parts[0], *parts[1:]], WIDTH, "      ")
            text = ""
        summary = _wrap(verb.summary, WIDTH - column, "", "")
        out.append(f"{text:{column}}{summary[0]}")
        out += [" " * column + line for line in summary[1:]]
    return out


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False,
                         break_long_words=False)


def _wrap_parts(parts: list[str], width: int, rest: str) -> list[str]:
    """Join ``parts`` with spaces into lines of at most ``width`` characters, never splitting a part."""
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 1 + len(part) > width:
            lines.append(rest + part)
        else:
            lines[-1] += " " + part
    return lines
