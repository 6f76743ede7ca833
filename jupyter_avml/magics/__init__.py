"""``%load_ext jupyter_avml``: the ``%avml`` line magic and the ``%%avml`` cell magic.

Loading is cheap (no torch, mlflow, pandas, ipywidgets or matplotlib): everything heavy is imported by the
magic that needs it, when it runs.
"""

from __future__ import annotations

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython) -> None:
    """Register the magics and the hook that refreshes finished dashboards' static fallback."""
    from jupyter_avml.magics._displays import DISPLAYS
    from jupyter_avml.magics._magic import AvmlMagics

    ipython.register_magics(AvmlMagics)
    DISPLAYS.register(ipython)


def unload_ipython_extension(ipython) -> None:
    from jupyter_avml.magics._displays import DISPLAYS

    DISPLAYS.unregister(ipython)
