"""Progress of long QA steps (imports, predictions): a callback, a line on stderr, or nothing."""

from __future__ import annotations

import sys
from collections.abc import Callable

Progress = Callable[[int, int], None]
"""``progress(done, total)``: called after each batch."""


def reporter(progress: bool | Progress, total: int, what: str) -> Callable[[int], None]:
    """``report(done)``: calls ``progress(done, total)``, or rewrites one line on stderr, or does nothing.

    The line is redrawn only when the whole percentage changes: a notebook's output stays small.
    """
    if callable(progress):
        return lambda done: progress(done, total)
    if not progress or total == 0:
        return lambda done: None
    last = [-1]

    def report(done: int) -> None:
        percent = int(100 * done / total)
        if percent != last[0]:
            last[0] = percent
            end = "\n" if done >= total else ""
            print(f"\r{what}: {done}/{total} ({percent}%)", end=end, file=sys.stderr, flush=True)

    return report
