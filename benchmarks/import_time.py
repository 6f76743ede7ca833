"""How long ``import jupyter_avml`` and the CLI's ``--help`` take in a fresh interpreter (target < 0.5 s).

    python benchmarks/import_time.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def best_of(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    baseline = best_of([sys.executable, "-c", "pass"], args.repeat)
    package = best_of([sys.executable, "-c", "import jupyter_avml"], args.repeat)
    cli = best_of([sys.executable, "-m", "jupyter_avml", "--help"], args.repeat)
    print(f"python -c pass            best {baseline[0]:.3f} s  median {baseline[1]:.3f} s")
    print(f"import jupyter_avml       best {package[0]:.3f} s  median {package[1]:.3f} s  "
          f"(+{package[0] - baseline[0]:.3f} s over bare python)")
    print(f"avml --help               best {cli[0]:.3f} s  median {cli[1]:.3f} s")
    ok = package[0] < 0.5
    print("PASS" if ok else "FAIL", "(target: import under 0.5 s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
