"""The MLflow model of a run: a pyfunc flavour around ``model.pt`` (the run's ``outputs/`` folder).

Input: a table with a column ``image`` of base64-encoded image files (bytes are accepted too). Output: one row
per image in the spec's inference format: ``probs`` and ``labels`` (classification), ``boxes`` (detection and
segmentation, each ``{"box", "label", "score"}``, plus ``polygon`` for segmentation). The inference settings
(the spec's ``model_settings``) are predict-time params whose defaults are the training values::

    model = mlflow.pyfunc.load_model("models:/NAME/1")
    model.predict(pandas.DataFrame({"image": [base64_text]}), params={"box_score_thresh": 0.5})

The folder holds ``MLmodel`` (signature, params schema, input example, ``metadata``: task, model name,
labels), ``requirements.txt``/``conda.yaml``/``python_env.yaml`` (pinned, ``serving.environment``) and
``model.pt``, the artifact (``serving.packaging``). Loading it imports ``jupyter_avml`` (listed in its
requirements); nothing is downloaded.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import mlflow.pyfunc
import pandas as pd

MODEL_ARTIFACT = "model"


class AvmlImageModel(mlflow.pyfunc.PythonModel):
    """The pyfunc model (see the module docstring). Its state is built by ``load_context``; nothing of a
    loaded model is pickled."""

    def load_context(self, context):
        from jupyter_avml.serving.model_source import ServedModel

        device = os.environ.get("AVML_DEVICE", "auto")
        self.served = ServedModel(context.artifacts[MODEL_ARTIFACT], device=device)

    def predict(self, context, model_input: pd.DataFrame, params=None):
        # (The type hint is MLflow's: a table in; it keeps the signature given at save time.)
        images = [_image_bytes(value, index) for index, value in enumerate(_image_column(model_input))]
        served = self.served
        # MLflow passes every param, with its schema default where the caller gave none ("" stands for None).
        given = {k: v for k, v in (params or {}).items() if v not in (None, "") and k in served.names}
        key = served.settings_key(given)
        rows = served.predict(key, images) if images else []
        columns = ["probs", "labels"] if served.task.startswith("image-classification") else ["boxes"]
        return pd.DataFrame([{column: row[column] for column in columns} for row in rows], columns=columns)


def _image_column(model_input) -> list:
    if hasattr(model_input, "columns"):
        if "image" not in model_input.columns:
            raise ValueError(f"the input table has no column 'image' (columns: {list(model_input.columns)})")
        return list(model_input["image"])
    if isinstance(model_input, dict) and "image" in model_input:
        value = model_input["image"]
        return list(value) if isinstance(value, (list, tuple)) else [value]
    if isinstance(model_input, (list, tuple)):
        return [item["image"] if isinstance(item, dict) else item for item in model_input]
    raise ValueError(f"the input must be a table with a column 'image' (base64 image files), got "
                     f"{type(model_input).__name__}")


def _image_bytes(value: Any, index: int) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise ValueError(f"row {index}: image is not valid base64 ({exc})") from None
    raise ValueError(f"row {index}: image must be base64 text (or bytes), got {type(value).__name__}")
