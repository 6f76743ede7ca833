"""Old name of ``jupyter_avml.data.dataset_registry``, kept until the callers' imports are updated."""

from jupyter_avml.data.dataset_registry import *  # noqa: F401,F403
