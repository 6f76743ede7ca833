"""Visual QA in FiftyOne: the data and the model's mistakes on it, looked at, fixed, and fed back to training.

The loop, in Python (the ``avml qa`` verbs and ``%avml qa`` call the same functions):

* ``to_fiftyone(source)``: a registered dataset (or a JSONL file, registered on the way) as a persistent FiftyOne
  dataset, ground truth of the four tasks, split tags, row of origin, exact duplicates (``importer``);
* ``check_data(FILE, task=...)``: the QA pass on the data alone, ``avml validate``'s numbers in FiftyOne (``check``);
* ``add_predictions(dataset, model)``: predictions of a run, an experiment's child or a registered model, with
  logits and the model's own embeddings (``predict``);
* ``evaluate(dataset, field)``: FiftyOne's evaluation beside ``jupyter_avml.metrics`` (``evaluation``), and the saved
  views of mistakes (``views``); ``find_mistakes``: mistakenness, hardness, near-duplicates, 2-D map (``brain``);
* ``review(TARGET)``: all of it, then the App on 127.0.0.1 on the chosen view (``app``);
* ``export(dataset)``: tags and label edits back as a new dataset version in the registry (``feedback``).

Importing this package imports neither fiftyone nor torch: each function imports what it needs. No module is named
like a function it exports (``evaluation`` holds ``evaluate``, ``app`` holds ``review``, ``feedback`` holds
``export``): once imported, a submodule would shadow the function of the same name on the package.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "to_fiftyone": "jupyter_avml.qa.importer",
    "dataset_name": "jupyter_avml.qa.importer",
    "check_data": "jupyter_avml.qa.check",
    "DataCheck": "jupyter_avml.qa.check",
    "add_predictions": "jupyter_avml.qa.predict",
    "PredictionJob": "jupyter_avml.qa.predict",
    "evaluate": "jupyter_avml.qa.evaluation",
    "Evaluation": "jupyter_avml.qa.evaluation",
    "find_mistakes": "jupyter_avml.qa.brain",
    "MistakeReport": "jupyter_avml.qa.brain",
    "review": "jupyter_avml.qa.app",
    "Review": "jupyter_avml.qa.app",
    "export": "jupyter_avml.qa.feedback",
    "ExportResult": "jupyter_avml.qa.feedback",
    "FiftyOneError": "jupyter_avml.qa._fo",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jupyter_avml.qa' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
