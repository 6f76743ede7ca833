"""What a finished run leaves beside ``model.pt`` for deployment (``package_model``, called at the end of every run).

* the run's ``outputs/`` folder becomes an MLflow model (pyfunc flavour, ``serving.pyfunc``): MLflow's files
  (``MLMODEL_FILES``: ``MLmodel``, ``python_model.pkl``, ``requirements.txt``, ``conda.yaml``,
  ``python_env.yaml``, ``input_example.json``, ``serving_input_example.json``) are written beside ``model.pt``,
  which is the model's artifact where it lies. The weights are never copied: a second copy would double every
  run's size on disk and in the artifact store, and the model registry points at the folder;
* ``scoring_file_v_1_0_0.py``: the spec's scoring file (``serving.scoring_file``);
* ``conda_env_v_1_0_0.yml``: its environment (pinned, ``serving.environment``).

Every file is written atomically (MLflow's in a staging folder, then each renamed into place), so a reader never
sees half a file; packaging again replaces them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from jupyter_avml.fileio import atomic_write_text

log = logging.getLogger(__name__)

MLMODEL_FILES = ("python_model.pkl", "requirements.txt", "conda.yaml", "python_env.yaml", "input_example.json",
                 "serving_input_example.json", "MLmodel")  # MLmodel last: a folder with it is a complete model

# MLflow's type of each kind of setting (config.params kinds).
_PARAM_TYPES = {"int": "long", "float": "double", "choice": "string", "grid": "string", "str": "string"}


def model_facts(model_file: str | os.PathLike) -> dict[str, Any]:
    """``task``, ``model_name``, ``labels``, ``family`` and ``settings`` (the inference settings with their
    training values) of a model file, read without building the model."""
    from jupyter_avml.config import AutoMLImageConfig
    from jupyter_avml.models.families import get_family
    from jupyter_avml.models.model_file import read_model_file

    payload = read_model_file(model_file)  # read as data; ModelFileError naming the file otherwise
    config = AutoMLImageConfig.from_dict(payload["config"])
    family = config.model_spec.family
    settings = {}
    for name in get_family(family).inference_settings:
        value = getattr(config, name, None)
        settings[name] = list(value) if isinstance(value, tuple) else value
    return {"task": payload["task"], "model_name": payload["model_name"], "labels": list(payload["class_names"]),
            "family": family, "settings": settings}


def signature(task: str, settings: dict[str, Any]):
    """The MLflow signature: an ``image`` column of base64 text, the task's output columns, the settings as
    params with the training values as defaults."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Object, ParamSchema, ParamSpec, Property, Schema

    from jupyter_avml.config.params import PARAMS

    inputs = Schema([ColSpec("string", "image")])
    if task.startswith("image-classification"):
        outputs = Schema([ColSpec(Array("double"), "probs"), ColSpec(Array("string"), "labels")])
    else:
        box = Object([Property(side, "double") for side in ("topX", "topY", "bottomX", "bottomY")])
        properties = [Property("box", box), Property("label", "string"), Property("score", "double")]
        if task == "image-instance-segmentation":
            properties.append(Property("polygon", Array(Array("double"))))
        outputs = Schema([ColSpec(Array(Object(properties)), "boxes")])
    specs = []
    for name, value in settings.items():
        kind = _PARAM_TYPES.get(PARAMS[name].kind, "string")
        if value is None or kind == "string":
            value = "" if value is None else (f"({value[0]}, {value[1]})" if isinstance(value, list) else str(value))
            kind = "string"
        specs.append(ParamSpec(name, kind, value))
    return ModelSignature(inputs=inputs, outputs=outputs, params=ParamSchema(specs))


def input_example():
    """One generated image, as the model's input table."""
    import base64

    import pandas as pd

    from jupyter_avml.serving.client import probe_image_bytes

    return pd.DataFrame({"image": [base64.b64encode(probe_image_bytes(32)).decode("ascii")]})


def package_model(outputs_dir: str | os.PathLike, model_file: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write the MLflow model, the scoring file and the environment file of ``model_file`` (default:
    ``outputs_dir/model.pt``) into ``outputs_dir``; returns their paths."""
    from jupyter_avml.serving.environment import conda_environment_text, inference_requirements
    from jupyter_avml.serving.scoring_file import ENVIRONMENT_FILE, SCORING_FILE, scoring_file_text

    outputs = Path(outputs_dir)
    model_file = Path(model_file) if model_file is not None else outputs / "model.pt"
    facts = model_facts(model_file)
    requirements = inference_requirements(facts["family"])
    files = {
        "scoring_file": atomic_write_text(outputs / SCORING_FILE,
                                          scoring_file_text(facts["task"], facts["model_name"], facts["settings"])),
        "environment": atomic_write_text(outputs / ENVIRONMENT_FILE, conda_environment_text(requirements)),
        "mlflow_model": save_mlflow_model(outputs, model_file, facts, requirements),
    }
    return files


def logged_mlflow_model(tracker, run_id: str, outputs: Path) -> str:
    """The artifact URI of run ``run_id``'s ``outputs`` folder as an MLflow model, for the model registry: a run
    packaged before (or whose packaging failed) is packaged now, and logged again if its artifacts lack it."""
    if not (outputs / "MLmodel").is_file():
        package_model(outputs)
    listed = {item.path for item in tracker.client.list_artifacts(run_id, "outputs")}
    if not {"outputs/MLmodel", "outputs/model.pt"} <= listed:
        tracker.client.log_artifacts(run_id, str(outputs), "outputs")
    return f"{tracker.get_run(run_id).info.artifact_uri.rstrip('/')}/outputs"


def save_mlflow_model(folder: Path, model_file: Path, facts: dict[str, Any], requirements: list[str]) -> Path:
    """Make ``folder`` (which holds ``model_file``) an MLflow pyfunc model whose artifact is ``model_file``."""
    import mlflow.pyfunc
    from mlflow.models import Model

    from jupyter_avml import __version__
    from jupyter_avml.serving.pyfunc import MODEL_ARTIFACT, AvmlImageModel

    staging = Path(tempfile.mkdtemp(prefix=".mlflow-model.", dir=folder))
    try:
        # MLflow copies every artifact into the model it saves: it is given an empty stand-in, and the saved
        # model then names the real file, beside MLmodel.
        stand_in = staging / model_file.name
        stand_in.touch()
        built = staging / "model"
        with _quiet_mlflow():
            mlflow.pyfunc.save_model(
                str(built), python_model=AvmlImageModel(), artifacts={MODEL_ARTIFACT: str(stand_in)},
                signature=signature(facts["task"], facts["settings"]), input_example=input_example(),
                pip_requirements=requirements,
                metadata={"task": facts["task"], "model_name": facts["model_name"], "labels": facts["labels"],
                          "jupyter_avml_version": __version__})
        model = Model.load(str(built / "MLmodel"))
        relative = os.path.relpath(model_file, folder)
        model.flavors["python_function"]["artifacts"][MODEL_ARTIFACT] = {"path": relative, "uri": str(model_file)}
        model.model_size_bytes = model_file.stat().st_size + sum(
            (built / name).stat().st_size for name in MLMODEL_FILES if (built / name).is_file() and name != "MLmodel")
        model.save(str(built / "MLmodel"))
        for name in MLMODEL_FILES:
            if (built / name).is_file():
                os.replace(built / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


@contextlib.contextmanager
def _quiet_mlflow():
    """MLflow logs its steps at INFO, shows a progress bar for copying artifacts and suggests type hints that
    this model does not use (its signature is given). It also checks the requirements against the installed
    packages by scanning every installed distribution (seconds, at the end of every run); these requirements are
    read from the installed packages (``serving.environment``), so that check can only pass and is skipped."""
    import mlflow.utils.environment as environment

    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    check = getattr(environment, "warn_dependency_requirement_mismatches", None)
    if check is not None:
        environment.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*type hints.*")
            yield
    finally:
        if check is not None:
            environment.warn_dependency_requirement_mismatches = check
        logger.setLevel(level)
        if bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = bar
