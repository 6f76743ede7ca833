"""Re-export of ``jupyter_avml.tracking.model_registry`` (renamed to tell the MLflow model registry apart from the
dataset registry and the model zoo); kept for callers outside the tracking package."""

from jupyter_avml.tracking.model_registry import (  # noqa: F401
    download_registered_model,
    list_registered_models,
    parse_model_uri,
    register_run_model,
)
