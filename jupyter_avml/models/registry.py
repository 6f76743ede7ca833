"""Re-export of ``jupyter_avml.models.zoo`` (the model-architecture registry was renamed to tell it apart from
the dataset registry and the MLflow model registry); kept for callers outside the models package."""

from jupyter_avml.models.zoo import TASK_NOUN, ModelSpec, get_model_spec, list_models  # noqa: F401
