"""``avml``: the command line, built from the verb table (``cli/verbs.py``) that ``%avml`` is built from too.

Verbs parse arguments and call the same Python API a notebook uses; errors the user can fix (``AvmlError``)
are printed as one line without a traceback, exit status 2 (``avml --help`` lists the exit statuses).
"""

from __future__ import annotations

import argparse
import sys

from jupyter_avml import __version__
from jupyter_avml.errors import AvmlError


def build_parser() -> argparse.ArgumentParser:
    """The ``avml`` parser (its verbs' parsers: ``shell_parsers``)."""
    return shell_parsers()[0]


def shell_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """``(the avml parser, {verb name: its parser})``."""
    from jupyter_avml.cli.table import SHELL, add_verbs
    from jupyter_avml.cli.verbs import GROUPS, VERBS, shell_epilog

    parser = argparse.ArgumentParser(
        prog="avml", description="AutoML for computer vision: validate data, train, sweep, register.",
        epilog=shell_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"jupyter_avml {__version__}")
    parser.add_argument("--workspace", default=None,
                        help="workspace folder (default: $AVML_WORKSPACE or ./avml-workspace)")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    parsers = add_verbs(subparsers, VERBS, SHELL, GROUPS)
    return parser, parsers


def shell_help(topic: list[str]) -> str:
    """``avml help [VERB]``: the overview, or a verb's help."""
    parser, parsers = shell_parsers()
    if not topic:
        return parser.format_help().rstrip()
    name = " ".join(topic)
    if name not in parsers:
        from jupyter_avml.cli.verbs import other_door_only

        elsewhere = {verb.name: verb for verb in other_door_only("shell")}
        if name in elsewhere:
            return f"{name}: only in a notebook (%avml {name}), because {elsewhere[name].only_because}"
        raise AvmlError(f"no verb {name!r}; the verbs are: {', '.join(sorted(p for p in parsers if ' ' not in p))}")
    return parsers[name].format_help().rstrip()


def main(argv: list[str] | None = None) -> int:
    from jupyter_avml.cli.verbs import expand_group_default

    parser = build_parser()
    args = parser.parse_args(expand_group_default(sys.argv[1:] if argv is None else list(argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    name = getattr(args, "verb_name", args.verb)
    try:
        return int(args.func(args) or 0)
    except AvmlError as exc:
        print(f"avml {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"avml {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
