"""The cloud system's Python API, by its names: a cloud notebook runs here once its imports and data change.

::

    from jupyter_avml.automl import (AutoMLImageConfig, BanditPolicy, Experiment, GridParameterSampling,
                                     ImageTask, RandomParameterSampling, Workspace, choice, load_model, uniform)

    ws = Workspace.from_config()
    experiment = Experiment(ws, name="automl-image-object-detection")
    image_config = AutoMLImageConfig(task=ImageTask.IMAGE_OBJECT_DETECTION, compute_target="local",
                                     training_data="train.jsonl", validation_data="valid.jsonl",
                                     hyperparameter_sampling=GridParameterSampling({'model_name': choice('yolov5')}),
                                     iterations=1)
    run = experiment.submit(image_config)
    run.wait_for_completion(show_output=True)        # the live dashboard in a notebook
    best_child = run.get_best_child()
    model = best_child.register_model(model_name=best_child.properties["model_name"],
                                      model_path="outputs/model.pt")
    predictor = load_model(ImageTask.IMAGE_OBJECT_DETECTION, model.uri)

Everything here is a thin layer over the sweep (``jupyter_avml.sweep``): the sampling objects and the job
builders of the newer generation (``image_object_detection(...)``...) produce the settings an experiment YAML
holds, read by the same parser; ``choice``, ``uniform``... and the policies are the sweep's own objects. The
correspondence of every cloud name with ours is one table: ``docs/porting.md``.

Layout: ``_config`` (``AutoMLImageConfig``), ``_sampling`` (the three samplings), ``_experiment``
(``Workspace``, ``Experiment``), ``_runs`` (the parent ``AutoMLRun``, child ``Run``s, ``RegisteredModel``),
``_jobs`` (the newer generation's builders and expressions).
"""

from jupyter_avml.automl._config import AutoMLImageConfig
from jupyter_avml.automl._experiment import Experiment, Workspace
from jupyter_avml.automl._jobs import (
    Choice,
    ImageJob,
    LogNormal,
    LogUniform,
    Normal,
    QLogNormal,
    QLogUniform,
    QNormal,
    QUniform,
    Randint,
    SearchSpace,
    Uniform,
    image_classification,
    image_classification_multilabel,
    image_instance_segmentation,
    image_object_detection,
)
from jupyter_avml.automl._runs import AutoMLRun, RegisteredModel, Run
from jupyter_avml.automl._sampling import (
    BayesianParameterSampling,
    GridParameterSampling,
    HyperParameterSampling,
    RandomParameterSampling,
)
from jupyter_avml.inference.predictor import load_model
from jupyter_avml.sweep.policies import BanditPolicy, MedianStoppingPolicy, TruncationSelectionPolicy
from jupyter_avml.sweep.space import (
    choice,
    lognormal,
    loguniform,
    normal,
    qlognormal,
    qloguniform,
    qnormal,
    quniform,
    randint,
    uniform,
)
from jupyter_avml.tasks import ImageTask

__all__ = [
    "AutoMLImageConfig", "ImageTask", "Workspace", "Experiment", "AutoMLRun", "Run", "RegisteredModel",
    "HyperParameterSampling", "GridParameterSampling", "RandomParameterSampling", "BayesianParameterSampling",
    "BanditPolicy", "MedianStoppingPolicy", "TruncationSelectionPolicy",
    "choice", "randint", "uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal", "lognormal",
    "qlognormal", "load_model",
    "ImageJob", "SearchSpace", "image_classification", "image_classification_multilabel", "image_object_detection",
    "image_instance_segmentation", "Choice", "Randint", "Uniform", "QUniform", "LogUniform", "QLogUniform",
    "Normal", "QNormal", "LogNormal", "QLogNormal",
]
