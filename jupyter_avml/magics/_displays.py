"""Dashboards shown by the magics, and the refresh of their static fallback once they are finished.

A dashboard is displayed with a ``display_id``. Its display bundle carries a ``text/html`` copy of the
picture (``DashboardWidget._repr_mimebundle_``) for notebooks saved or exported without widget state; at
display time that copy shows the experiment just started. After the experiment ends, the next cell the user
runs triggers IPython's ``post_execute`` event, in the kernel's main thread, and there each finished
dashboard's display is updated in place (``update_display``): the saved notebook then holds the final
leaderboard and plots. The background updater never does this itself: output sent from a thread lands in
whatever cell happens to run.
"""

from __future__ import annotations

import threading
from typing import Any


class LiveDisplays:
    """The dashboards displayed in this kernel whose static fallback still shows an unfinished state."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: dict[str, Any] = {}  # display_id -> DashboardWidget
        self._shells: list[Any] = []

    def show(self, widget) -> str:
        """Display ``widget`` (main thread only) and remember it until its final picture is published."""
        from IPython.display import display

        handle = display(widget, display_id=True)
        display_id = handle.display_id if handle is not None else ""
        with self._lock:
            if display_id and not self._final(widget):
                self._pending[display_id] = widget
        return display_id

    def publish_final(self, display_id: str, widget) -> None:
        """Replace the display's bundle by the widget's current one (its final picture)."""
        from IPython.display import update_display

        update_display(widget, display_id=display_id)

    def refresh(self, *_: Any) -> int:
        """``post_execute`` hook: publish the final picture of every dashboard that finished since."""
        with self._lock:
            done = [(did, w) for did, w in self._pending.items() if self._final(w) or _closed(w)]
            for did, _ in done:
                del self._pending[did]
        published = 0
        for display_id, widget in done:
            if not _closed(widget):
                self.publish_final(display_id, widget)
                published += 1
        return published

    def forget(self, display_id: str) -> None:
        with self._lock:
            self._pending.pop(display_id, None)

    @property
    def pending(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._pending)

    @staticmethod
    def _final(widget) -> bool:
        snap = widget.snapshot
        if snap is None or not snap.finished:
            return False
        # The updater ends right after drawing the final state; a dashboard without one drew it at once.
        return widget.updater is None or widget.updater.done.is_set()

    def register(self, shell) -> None:
        if shell in self._shells:
            return
        shell.events.register("post_execute", self.refresh)
        self._shells.append(shell)

    def unregister(self, shell) -> None:
        if shell in self._shells:
            shell.events.unregister("post_execute", self.refresh)
            self._shells.remove(shell)


def _closed(widget) -> bool:
    return getattr(widget, "comm", None) is None


DISPLAYS = LiveDisplays()
