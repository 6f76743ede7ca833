"""Every setting of a run, declared once: name, type, range, default and the models it applies to.

The defaults follow spec sections 5 and 6. A default may depend on the task and on the model: the model
registry (``jupyter_avml.models``) holds per-model overrides (e.g. ``training_batch_size`` 48 for
``vitb16r224``); task-level defaults live here. This table drives validation, the CLI help, the resolved
configuration saved with each run, and the sweep's checks of sampled values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyter_avml.tasks import ImageTask

# Who a parameter applies to. A parameter given for a model outside its scope is an error, so that a
# sweep never searches a value that is then ignored.
ALL = "all"
CLASSIFICATION = "classification"          # timm classifiers (multi-class and multi-label)
TORCHVISION_DETECTION = "torchvision"      # Faster/Mask R-CNN, RetinaNet
YOLO = "yolov5"
DETECTION = "detection"                    # both detector families

SCOPE_TEXT = {
    CLASSIFICATION: "image classification models",
    TORCHVISION_DETECTION: "the torchvision detection and segmentation models (not yolov5)",
    YOLO: "yolov5",
    DETECTION: "object detection and instance segmentation models",
}


def family_scopes(family: str) -> set[str]:
    """The scopes that apply to a model family (``timm``, ``torchvision``, ``yolov5``): its record in
    ``jupyter_avml.models.families``, where each family is declared once."""
    from jupyter_avml.models.families import get_family

    return set(get_family(family).scopes)


@dataclass(frozen=True)
class Param:
    """One setting. ``kind`` is one of int, float, bool01, choice, str, path, grid, mapping, any."""

    name: str
    kind: str
    doc: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    scopes: frozenset = frozenset({ALL})
    hyperparameter: bool = True
    nullable: bool = False
    note: str = ""  # why the range is what it is, added to the message that refuses a value


    def range_text(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "bool01":
            return "0 or 1"
        noun = {"int": "an integer", "float": "a float"}.get(self.kind, self.kind)
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"{noun} in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low == 1 and self.kind == "int":
            return "a positive integer"
        if self.low is not None:
            return f"{noun} >= {_num(self.low)}"
        return noun


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _p(name, kind, doc, default=None, **kw) -> Param:
    scopes = kw.pop("scopes", (ALL,))
    return Param(name, kind, doc, default, scopes=frozenset(scopes), **kw)


MAX_IMAGE_SIDE = 4096
"""Largest image size in pixels of any size setting (crops, resizes, ``min_size``/``max_size``, ``img_size``).

A 4096 px square is 200 MB as a float32 tensor before the model runs; larger values were killed by the kernel
without a message. Batch sizes have their own bound, and ``config._check_memory`` the product of both."""

MAX_BATCH_SIZE = 1024
"""Largest training or validation batch size."""

MAX_NUM_WORKERS = 64
"""Most data-loading worker processes (each one is a whole Python process with a copy of the dataset)."""

MAX_TILE_GRID = 16
"""Most tiles in each direction of ``tile_grid_size`` (16 x 16 = 256 tiles per image)."""

UNIT = dict(low=0.0, high=1.0)
POS = dict(low=1)
SIDE = dict(low=1, high=MAX_IMAGE_SIDE)
BATCH = dict(low=1, high=MAX_BATCH_SIZE)

PARAMS: dict[str, Param] = {p.name: p for p in [
    # --- what and where (not hyperparameters) ---
    _p("task", "choice", "Task type (spec section 1).", choices=tuple(t.value for t in ImageTask),
       hyperparameter=False),
    _p("training_data", "path", "JSONL file of training data (or a registered dataset: dataset:NAME[:VERSION]).",
       hyperparameter=False),
    _p("validation_data", "path", "JSONL file of validation data; without it split_ratio of training is held out.",
       hyperparameter=False, nullable=True),
    _p("model_name", "str", "Model architecture, by the spec's names (see `avml models`).", hyperparameter=False),
    _p("split_ratio", "float", "Fraction of training data held out for validation when validation_data is not given "
       "(newer name: validation_data_size).",
       0.2, low=0.0, high=1.0, low_open=True, high_open=True,
       note="0 would hold out no validation image and 1 no training image: the ends of the spec's [0, 1] "
            "cannot train (docs/porting.md)"),
    _p("device", "str", "'auto' (a GPU when there is one), 'cpu' or 'cuda:N'.", "auto", hyperparameter=False),
    _p("seed", "int", "Seed for splitting, initialisation, shuffling and augmentation.", 0, low=0,
       hyperparameter=False),
    _p("pretrained", "bool01", "Start from the library's pretrained weights (needs them cached or a network).", 1,
       hyperparameter=False),
    _p("pretrained_weights", "path", "A local weights file to start from instead of downloading.",
       hyperparameter=False, nullable=True),
    _p("checkpoint_run_id", "str", "Incremental training: start from the model of this earlier run of the workspace "
       "(same model, same labels).", hyperparameter=False, nullable=True),
    _p("checkpoint_filename", "path", "Incremental training: start from this model file (a run's outputs/model.pt).",
       hyperparameter=False, nullable=True),
    _p("skip_invalid", "bool01", "Train on the valid rows and write the rejected ones next to the run outputs.", 0,
       hyperparameter=False),
    _p("image_url_prefix_map", "mapping", "Map URL prefixes (e.g. 'AmlDatastore://image_data/') to local folders.",
       hyperparameter=False, nullable=True),
    _p("workspace", "path", "Workspace folder (default: $AVML_WORKSPACE or ./avml-workspace).",
       hyperparameter=False, nullable=True),
    _p("tracking_uri", "str", "MLflow tracking URI; default: a SQLite store inside the workspace.",
       hyperparameter=False, nullable=True),
    _p("run_name", "str", "A name for the run in the tracking store.", hyperparameter=False, nullable=True),
    _p("num_workers", "int", "Data-loading worker processes; 0 loads in the training process.", 0, low=0,
       high=MAX_NUM_WORKERS,
       hyperparameter=False),
    _p("cpu_threads", "int", "Torch threads on CPU; default: torch's own choice.", low=1, hyperparameter=False,
       nullable=True),
    _p("mixed_precision", "bool01", "Automatic mixed precision (and channels-last) on CUDA; ignored on CPU.", 1,
       hyperparameter=False),
    _p("log_every_n_batches", "int", "Emit a batch-progress event every this many batches.", 10, **POS,
       hyperparameter=False),

    # --- spec section 5: every model ---
    _p("number_of_epochs", "int", "Training epochs.", 15, **POS),
    _p("training_batch_size", "int", "Training batch size.", **BATCH),
    _p("validation_batch_size", "int", "Validation batch size.", **BATCH),
    _p("grad_accumulation_step", "int", "Steps of accumulated gradients per weight update.", 1, **POS),
    _p("early_stopping", "bool01", "Stop when the primary metric stops improving.", 1),
    _p("early_stopping_patience", "int", "Evaluations without improvement before stopping.", 5, **POS),
    _p("early_stopping_delay", "int", "Evaluations to wait before improvement is tracked.", 5, **POS),
    _p("learning_rate", "float", "Initial learning rate.", **UNIT),
    _p("lr_scheduler", "choice", "Learning-rate scheduler.", "warmup_cosine", choices=("warmup_cosine", "step")),
    _p("step_lr_gamma", "float", "Gamma of the step scheduler.", 0.5, **UNIT),
    _p("step_lr_step_size", "int", "Epochs between steps of the step scheduler.", 5, **POS),
    _p("warmup_cosine_lr_cycles", "float", "Cosine cycles of the warmup_cosine scheduler.", 0.45, **UNIT),
    _p("warmup_cosine_lr_warmup_epochs", "int", "Warm-up epochs of the warmup_cosine scheduler; 0: no warm-up (the "
       "spec says positive; 0 is accepted on purpose, docs/porting.md).", 2, low=0),
    _p("optimizer", "choice", "Optimizer.", "sgd", choices=("sgd", "adam", "adamw")),
    _p("momentum", "float", "Momentum (sgd).", 0.9, **UNIT),
    _p("weight_decay", "float", "Weight decay.", 1e-4, **UNIT),
    _p("nesterov", "bool01", "Nesterov momentum (sgd).", 1),
    _p("beta1", "float", "beta1 (adam, adamw).", 0.9, **UNIT),
    _p("beta2", "float", "beta2 (adam, adamw).", 0.999, **UNIT),
    _p("amsgrad", "bool01", "AMSGrad (adam, adamw).", 0),
    _p("evaluation_frequency", "int", "Evaluate on validation data every this many epochs.", 1, **POS),
    _p("checkpoint_frequency", "int", "Save a checkpoint every this many epochs (default: keep only the best).",
       **POS, nullable=True),
    _p("layers_to_freeze", "int", "Freeze this many leading layer groups of the model.", **POS, nullable=True),

    # --- spec section 6: classification ---
    _p("weighted_loss", "choice", "0 none, 1 sqrt(class weights), 2 class weights.", 0, choices=(0, 1, 2),
       scopes=(CLASSIFICATION,)),
    _p("valid_resize_size", "int", "Resize validation images to this before cropping.", 256, **SIDE,
       scopes=(CLASSIFICATION,)),
    _p("valid_crop_size", "int", "Crop fed to the network at validation.", 224, **SIDE, scopes=(CLASSIFICATION,)),
    _p("train_crop_size", "int", "Crop fed to the network in training.", 224, **SIDE, scopes=(CLASSIFICATION,)),

    # --- spec section 6: detection and segmentation ---
    _p("validation_metric_type", "choice", "mAP flavour: none, coco, voc or coco_voc.", "voc",
       choices=("none", "coco", "voc", "coco_voc"), scopes=(DETECTION,)),
    _p("min_size", "int", "Images are rescaled to at least this before the backbone.", 600, **SIDE,
       scopes=(TORCHVISION_DETECTION,)),
    _p("max_size", "int", "... and at most this.", 1333, **SIDE, scopes=(TORCHVISION_DETECTION,)),
    _p("box_score_thresh", "float", "At inference, return only proposals scoring above this.", **UNIT,
       scopes=(TORCHVISION_DETECTION, YOLO)),
    _p("box_nms_thresh", "float", "NMS threshold of the prediction head at inference.", 0.5, **UNIT,
       scopes=(TORCHVISION_DETECTION,)),
    _p("box_detections_per_img", "int", "Maximum detections per image, all classes.", 100, **POS,
       scopes=(TORCHVISION_DETECTION,)),
    _p("tile_grid_size", "grid", "Tile grid (columns, rows), e.g. '(3, 2)', each in [1, 16]: turns small-object "
       "detection on.",
       scopes=(TORCHVISION_DETECTION,), nullable=True),
    _p("tile_overlap_ratio", "float", "Overlap of neighbouring tiles in each dimension.", 0.25, low=0.0, high=1.0,
       high_open=True, scopes=(TORCHVISION_DETECTION,)),
    _p("tile_predictions_nms_thresh", "float", "IoU of the NMS merging tile and full-image predictions.", 0.25,
       **UNIT, scopes=(TORCHVISION_DETECTION,)),

    # --- spec section 6: yolov5 ---
    _p("img_size", "int", "Image size for training and validation.", 640, **SIDE, scopes=(YOLO,)),
    _p("model_size", "choice", "YOLOv5 scale.", "medium", choices=("small", "medium", "large", "xlarge"),
       scopes=(YOLO,)),
    _p("multi_scale", "bool01", "Vary image size by +/-50% in training.", 0, scopes=(YOLO,)),
    _p("box_iou_thresh", "float", "IoU threshold of the NMS at inference.", 0.5, **UNIT, scopes=(YOLO,)),
]}

# Task-level defaults (spec section 5); models override them through their registry entry.
TASK_DEFAULTS: dict[ImageTask, dict[str, Any]] = {
    ImageTask.IMAGE_CLASSIFICATION: dict(model_name="vitb16r224", training_batch_size=78,
                                         validation_batch_size=78, learning_rate=0.01),
    ImageTask.IMAGE_CLASSIFICATION_MULTILABEL: dict(model_name="vitb16r224", training_batch_size=78,
                                                    validation_batch_size=78, learning_rate=0.035),
    ImageTask.IMAGE_OBJECT_DETECTION: dict(model_name="yolov5", training_batch_size=2, validation_batch_size=1,
                                           learning_rate=0.005, box_score_thresh=0.3),
    ImageTask.IMAGE_INSTANCE_SEGMENTATION: dict(model_name="maskrcnn_resnet50_fpn", training_batch_size=2,
                                                validation_batch_size=1, learning_rate=0.005,
                                                box_score_thresh=0.3),
}

# The newer generation's names of settings (the cloud SDK v2, ``azure.ai.ml.automl``: ``validation_data_size``,
# ``set_training_parameters(...)``) -> ours. Only one-to-one renames: the value is read as ours would be.
# (``nms_iou_threshold`` is not here: it is ``box_nms_thresh`` or ``box_iou_thresh`` depending on the model.)
ALIASES: dict[str, str] = {
    "validation_data_size": "split_ratio",
    "ams_gradient": "amsgrad",
    "gradient_accumulation_step": "grad_accumulation_step",
    "learning_rate_scheduler": "lr_scheduler",
    "number_of_workers": "num_workers",
    "random_seed": "seed",
    "training_crop_size": "train_crop_size",
    "validation_crop_size": "valid_crop_size",
    "validation_resize_size": "valid_resize_size",
    "box_detections_per_image": "box_detections_per_img",
    "box_score_threshold": "box_score_thresh",
    "image_size": "img_size",
    "tile_predictions_nms_threshold": "tile_predictions_nms_thresh",
}


def canonical_name(name: str) -> str:
    """Our name of a setting given by its newer-generation name (``ALIASES``); other names unchanged."""
    return ALIASES.get(name, name)


CoerceFn = Callable[[Any], Any]
