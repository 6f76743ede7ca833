"""``avml demo``: the product end to end on generated data (see ``jupyter_avml.demo``)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="generate data, validate, convert, register, sweep, train a detector (CPU, minutes)",
        description="Run jupyter_avml end to end on generated data, in the workspace.")
    parser.add_argument("--no-detection", action="store_true", help="skip the object-detection run")
    parser.set_defaults(func=run)


def run(args) -> int:
    from jupyter_avml.demo import run_demo

    run_demo(args.workspace, detection=not args.no_detection)
    return 0
