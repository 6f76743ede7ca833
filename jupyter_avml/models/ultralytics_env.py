"""Re-export of ``jupyter_avml.models.ultralytics_adapter.environment`` (every ultralytics touch point now lives in
the ``ultralytics_adapter`` package); kept for existing imports."""

from jupyter_avml.models.ultralytics_adapter.environment import UltralyticsDirs, prepare_ultralytics  # noqa: F401
