"""Every ultralytics name the adapter relies on, checked against the installed ultralytics.

ultralytics changes its trainer from one patch release to the next (it is pinned in pyproject for that reason).
``HOOKS`` lists each method we override or call, each attribute we read or set, each callback event we register
and each private name we touch, with the signature we expect; ``check_hook`` says, naming the hook, what no
longer holds. ``tests/models/test_ultralytics_hooks.py`` runs it for every hook, so an upgrade that breaks one
fails there, by name, before any training goes wrong.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Hook:
    """One ultralytics name the adapter uses.

    ``target`` is ``"module:Qualified.name"``. ``kind``:

    * ``call``: a function or method; its parameters start with ``parameters``, in that order;
    * ``keywords``: a function accepting each of ``parameters`` by keyword;
    * ``attribute``: the name exists;
    * ``assigned``: an instance attribute (``parameters[0]``) that the class ``target`` (or a base in ultralytics)
      assigns in its source (``self.NAME = ...``);
    * ``callback``: an event name of ultralytics' callbacks (``target`` is the event).
    """

    target: str
    kind: Literal["call", "keywords", "attribute", "assigned", "callback"]
    parameters: tuple[str, ...] = ()
    used_by: str = ""

    @property
    def name(self) -> str:
        return self.target if self.kind != "assigned" else f"{self.target}.{self.parameters[0]}"


_TRAINER = "ultralytics.engine.trainer:BaseTrainer"
_DETECT = "ultralytics.models.yolo.detect:DetectionTrainer"

HOOKS: tuple[Hook, ...] = (
    # export.py: the ONNX exporter
    Hook("ultralytics.engine.exporter:Exporter.__call__", "call", ("self", "model"), "export: ONNX of a YOLO network"),
    # trainer.py: the subclass's overrides and the calls it makes
    Hook(f"{_DETECT}.__init__", "call", ("self", "cfg", "overrides", "_callbacks"), "trainer: constructor"),
    Hook(f"{_TRAINER}.get_dataset", "call", ("self",), "trainer: our dataset dictionary"),
    Hook(f"{_TRAINER}.build_optimizer", "call", ("self", "model", "name", "lr", "momentum", "decay", "iterations"),
         "trainer: our optimizer"),
    Hook(f"{_TRAINER}._setup_scheduler", "call", ("self",), "trainer: our schedule"),
    Hook(f"{_TRAINER}._setup_train", "call", ("self",), "trainer: AMP without the download of check_amp"),
    Hook("ultralytics.engine.trainer:check_amp", "attribute", (), "trainer: why _setup_train is overridden"),
    Hook(f"{_TRAINER}.optimizer_step", "call", ("self",), "trainer: schedule after each update"),
    Hook(f"{_TRAINER}.validate", "call", ("self",), "trainer: our evaluation"),
    Hook(f"{_TRAINER}.final_eval", "call", ("self",), "trainer: no final validation"),
    Hook(f"{_TRAINER}.add_callback", "call", ("self", "event", "callback"), "runner: event callbacks"),
    Hook(f"{_TRAINER}.train", "call", ("self",), "runner: fit"),
    *(Hook(_TRAINER, "assigned", (name,), "trainer/runner: state read or restored")
      for name in ("args", "model", "ema", "optimizer", "scaler", "train_loader", "test_loader", "epoch",
                   "start_epoch", "best_fitness", "stop", "loss", "loss_items", "tloss", "device", "accumulate",
                   "scheduler", "lf", "amp")),
    Hook("ultralytics.utils.torch_utils:ModelEMA", "assigned", ("ema",), "trainer: EMA weights"),
    Hook("ultralytics.utils.torch_utils:ModelEMA", "assigned", ("updates",), "trainer: EMA update count (resume)"),
    Hook("ultralytics.data.base:BaseDataset", "assigned", ("buffer",), "trainer: mosaic buffer (resume)"),
    Hook("ultralytics.data.base:BaseDataset.load_image", "call", ("self", "i"), "trainer: mosaic buffer replay"),
    Hook("ultralytics.data.build:InfiniteDataLoader.reset", "call", ("self",), "trainer: reseeded epoch order"),
    Hook("ultralytics.data.build:InfiniteDataLoader.close", "call", ("self",), "trainer: loaders closed"),
    Hook("ultralytics.data.utils:check_class_names", "call", ("names",), "trainer: dataset dictionary"),
    Hook("ultralytics.utils.torch_utils:unwrap_model", "call", ("m",), "trainer: the raw model"),
    *(Hook(event, "callback", (), "runner: event callbacks")
      for event in ("on_train_start", "on_train_epoch_start", "on_train_batch_start", "on_train_batch_end",
                    "on_train_epoch_end", "on_fit_epoch_end")),
    # network.py
    Hook("ultralytics.nn.tasks:yaml_model_load", "call", ("path",), "network: model YAML"),
    Hook("ultralytics.nn.tasks:DetectionModel.init_criterion", "call", ("self",), "network: loss"),
    Hook("ultralytics.nn.tasks:BaseModel.loss", "call", ("self", "batch", "preds"), "network: loss"),
    Hook("ultralytics:YOLO.__init__", "call", ("self", "model", "task", "verbose"), "network: new_yolo"),
    Hook("ultralytics.engine.model:Model", "attribute", (), "network: yolo_loss accepts a YOLO"),
    Hook("ultralytics.utils:DEFAULT_CFG_DICT", "attribute", (), "network: loss gains"),
    Hook("ultralytics.utils:IterableSimpleNamespace", "attribute", (), "network: loss gains"),
    Hook("ultralytics.utils.downloads:attempt_download_asset", "call", ("file", "repo", "release"),
         "network: pretrained download (and its release default)"),
    Hook("ultralytics.utils.downloads:GITHUB_ASSETS_REPO", "attribute", (), "network: pretrained download URL"),
    # predict.py
    Hook("ultralytics.utils.nms:non_max_suppression", "keywords",
         ("prediction", "conf_thres", "iou_thres", "multi_label", "max_det", "max_time_img"), "predict: NMS"),
    # environment.py
    Hook("ultralytics.utils:SETTINGS", "attribute", (), "environment: settings in the workspace"),
    Hook("ultralytics.utils:SettingsManager", "assigned", ("file",), "environment: settings file re-pointed"),
    Hook("ultralytics.utils:JSONDict", "assigned", ("file_path",), "environment: settings file re-pointed"),
    Hook("ultralytics.utils:SettingsManager", "assigned", ("defaults",), "environment: flags switched off"),
    Hook("ultralytics.utils:SettingsManager.update", "call", ("self",), "environment: flags switched off"),
    Hook("ultralytics.utils:LOGGER", "attribute", (), "environment: verbosity"),
    Hook("ultralytics.utils.patches:_image_open", "attribute", (), "environment: PIL.Image.open restored"),
    Hook("ultralytics.utils.patches:image_open", "attribute", (), "environment: PIL.Image.open restored"),
)


def resolve(target: str) -> Any:
    """The object ``"module:Qualified.name"`` names (AttributeError / ImportError when it does not exist)."""
    module_name, _, qualified = target.partition(":")
    value: Any = importlib.import_module(module_name)
    for part in qualified.split("."):
        value = getattr(value, part)
    return value


def check_hook(hook: Hook) -> str | None:
    """What no longer holds for ``hook`` in the installed ultralytics, or None when it is as expected."""
    where = f"ultralytics hook {hook.name} (used by {hook.used_by})"
    if hook.kind == "callback":
        from ultralytics.utils.callbacks import default_callbacks

        return None if hook.target in default_callbacks else f"{where}: no such callback event"
    try:
        value = resolve(hook.target)
    except (ImportError, AttributeError) as exc:
        return f"{where}: not found ({exc})"
    if hook.kind == "attribute":
        return None
    if hook.kind == "assigned":
        return _check_assigned(value, hook.parameters[0], where)
    try:
        parameters = list(inspect.signature(value).parameters)
    except (TypeError, ValueError) as exc:
        return f"{where}: no signature ({exc})"
    if hook.kind == "call" and parameters[:len(hook.parameters)] != list(hook.parameters):
        return f"{where}: parameters are ({', '.join(parameters)}), expected ({', '.join(hook.parameters)}, ...)"
    if hook.kind == "keywords":
        missing = [name for name in hook.parameters if name not in parameters]
        if missing:
            return f"{where}: no parameter {', '.join(missing)} (parameters: {', '.join(parameters)})"
    if hook.target.endswith("attempt_download_asset") and \
            inspect.signature(value).parameters["release"].default is inspect.Parameter.empty:
        return f"{where}: 'release' has no default (the release of this ultralytics version)"
    return None


def _check_assigned(cls: type, attribute: str, where: str) -> str | None:
    pattern = re.compile(rf"\bself\.{re.escape(attribute)}\s*(?::[^=]*)?=[^=]")
    for klass in inspect.getmro(cls):
        if not klass.__module__.startswith("ultralytics"):
            continue
        try:
            if pattern.search(inspect.getsource(klass)):
                return None
        except (OSError, TypeError):
            continue
    return f"{where}: {cls.__name__} and its ultralytics bases never assign self.{attribute}"


def check_hooks() -> list[str]:
    """The problems of every hook (empty when the installed ultralytics is as the adapter expects)."""
    return [problem for problem in map(check_hook, HOOKS) if problem is not None]
