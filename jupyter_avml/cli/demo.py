"""``demo``: the product end to end on generated data (see ``jupyter_avml.demo``)."""

from __future__ import annotations

from jupyter_avml.cli.table import SHELL, Verb, add_verbs, arg


def run_demo(args, door=None) -> dict:
    """Run the demo, printing as it goes; returns what it produced."""
    from jupyter_avml.demo import run_demo as demo

    return demo(args.workspace, detection=not args.no_detection)


VERBS = (
    Verb("demo", "generate data, validate, convert, register, sweep, train a detector (CPU, minutes)", run_demo,
         description="Run jupyter_avml end to end on generated data, in the workspace, printing each step.",
         args=(arg("--no-detection", action="store_true", help="skip the object-detection run"),)),
)


def register(subparsers) -> None:
    """Add ``demo`` to an ``avml`` subparsers (as ``cli/main.py`` does)."""
    add_verbs(subparsers, VERBS, SHELL, {})
