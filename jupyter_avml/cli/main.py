"""``avml``: the command line. Each verb lives in its own module with ``register(subparsers)``.

Verb modules parse arguments and call the same Python API a notebook uses; errors the user can fix
(``AvmlError``) are printed as one message without a traceback, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from jupyter_avml import __version__
from jupyter_avml.errors import AvmlError

# Order here is the order of `avml --help`.
VERB_MODULES = (
    "demo",
    "validate",
    "convert",
    "datasets",
    "train",
    "runs",
    "sweep",  # also status, stop, best, register
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avml", description="AutoML for computer vision: validate data, train, sweep, register.")
    parser.add_argument("--version", action="version", version=f"jupyter_avml {__version__}")
    parser.add_argument("--workspace", default=None,
                        help="workspace folder (default: $AVML_WORKSPACE or ./avml-workspace)")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in VERB_MODULES:
        importlib.import_module(f"jupyter_avml.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except AvmlError as exc:
        print(f"avml {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"avml {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
