"""The background thread that keeps a dashboard current.

It polls (reads files), and when the picture changed it renders, which only sets widget state: traitlets
assignments that ipykernel sends as comm messages. It never calls ``display()`` (output from a thread lands
in whatever cell runs at that moment). One render per ``interval`` at most (0.5 s: about 2 updates per
second), batched: a render draws everything that changed since the last one, however many events and state
writes that was, and only the widgets whose part changed send a message. It ends by itself after rendering
a finished experiment, or when ``stop()`` is called (the widget was closed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from jupyter_avml.dashboard._model import Snapshot

log = logging.getLogger(__name__)

#: Consecutive failed polls after which the updater gives up (about 30 s at the default interval).
MAX_CONSECUTIVE_ERRORS = 60


class DashboardUpdater:
    """Poll, compare, render; in a daemon thread.

    Parameters
    ----------
    poll : returns the current ``Snapshot`` (or None while there is nothing to show yet).
    render : draws a snapshot; called only with a snapshot that differs from the last one drawn.
    interval : seconds between polls, and so the shortest time between two renders.
    on_error : told about an exception of ``poll`` or ``render`` (the updater carries on).
    """

    def __init__(self, poll: Callable[[], Snapshot | None], render: Callable[[Snapshot], None], *,
                 interval: float = 0.5, on_error: Callable[[BaseException], None] | None = None,
                 name: str = "avml-dashboard"):
        self._poll = poll
        self._render = render
        self.interval = float(interval)
        self._on_error = on_error
        self._stop = threading.Event()
        self.done = threading.Event()          # set when the thread has ended, for any reason
        self.renders = 0
        self.last: Snapshot | None = None
        self.ended_because: str | None = None  # "finished", "stopped" or "errors"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> DashboardUpdater:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to end (at its next wake-up, within ``interval``)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        errors = 0
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    snap = self._poll()
                    if snap is not None and snap != self.last:
                        self._render(snap)
                        self.last = snap
                        self.renders += 1
                    errors = 0
                    if snap is not None and snap.finished:
                        self.ended_because = "finished"
                        return
                except Exception as exc:  # a half-written file, a closed comm: report and try again
                    errors += 1
                    log.debug("dashboard update failed", exc_info=True)
                    if self._on_error is not None:
                        try:
                            self._on_error(exc)
                        except Exception:
                            log.debug("dashboard error display failed", exc_info=True)
                    if errors >= MAX_CONSECUTIVE_ERRORS:
                        self.ended_because = "errors"
                        return
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))
            self.ended_because = "stopped"
        finally:
            self.done.set()
