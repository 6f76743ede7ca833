"""Predictions of a model on a FiftyOne dataset, through ``load_model(...).predict``: what deployment returns.

``add_predictions(dataset, model)`` fills the field named after the run (``sources.ModelSource.field``) with
``labels.prediction_to_label`` of each image's prediction, computed with the run's inference settings (those
saved with the model; ``model_settings`` override them as ``load_model`` allows), in batches of the predictor's
``batch_size``, with progress. While it predicts, forward hooks on the predictor's network record, with no
second pass:

* the logits of a classifier (the network's output; stored in ``Classification.logits``, which
  ``fiftyone.brain``'s mistakenness and hardness read);
* an embedding per image from the trained model itself (``FIELD_embedding``): the input of a timm
  classifier's head (its penultimate layer, pooled), the last feature map of a torchvision detector's
  backbone (global-average-pooled), or the pooled feature maps a YOLO ``Detect`` head receives. Nothing is
  downloaded; these feed near-duplicates and the 2-D map (``brain``).

Checks before any prediction: the model's task is the dataset's, and every class of the dataset is one the
model knows (otherwise its predictions cannot be compared with the labels). Predicting again fills only the
samples that have no prediction yet (an interrupted run resumes); ``overwrite=True`` starts over.
``background=True`` returns a ``PredictionJob`` at once (the notebook's way) and predicts in a thread.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

from jupyter_avml.errors import ConfigError
from jupyter_avml.qa._progress import Progress, reporter
from jupyter_avml.qa.labels import prediction_to_label
from jupyter_avml.tasks import ImageTask
from jupyter_avml.workspace import Workspace

EMBEDDING_SUFFIX = "_embedding"
CHUNK_BATCHES = 8  # predictor batches per database write


def add_predictions(dataset, model, *, child: int | None = None, field: str | None = None,
                    workspace: str | os.PathLike | Workspace | None = None, embeddings: bool = True,
                    overwrite: bool = False, progress: bool | Progress = True, background: bool = False,
                    device: str = "auto", **model_settings: Any):
    """Predict every image of ``dataset`` with ``model``; returns the prediction field's name.

    Parameters
    ----------
    dataset : a FiftyOne dataset made by ``to_fiftyone`` (or anything ``to_fiftyone`` takes).
    model : a run id, an experiment (its best child, or ``child``), ``models:/NAME/VERSION`` or a model file.
    field : the field to fill (default: named after the run, see ``sources``).
    embeddings : also store the model's embedding of each image in ``FIELD_embedding``.
    overwrite : predict every sample again (default: only those without a prediction in ``field``).
    background : return a ``PredictionJob`` at once and predict in a thread.
    model_settings : inference settings passed to ``load_model`` (e.g. ``box_score_thresh``).

    Raises
    ------
    ConfigError : the model is of another task than the dataset, or does not know some of its classes.
    NotFoundError : no such run, experiment, child or registered model.
    """
    from jupyter_avml.qa.sources import resolve_model

    ws = Workspace.resolve(workspace)
    dataset = _dataset(dataset, ws)
    source = resolve_model(model, child=child, workspace=ws)
    field = field or source.field
    if background:
        return PredictionJob(dataset, source, field, ws, embeddings, overwrite, device, model_settings)
    _predict(dataset, source, field, ws, embeddings, overwrite, progress, device, model_settings)
    return field


def _dataset(dataset, ws: Workspace):
    from jupyter_avml.qa.importer import open_dataset

    return open_dataset(dataset, workspace=ws)


def dataset_task(dataset) -> ImageTask:
    """The task recorded in ``dataset.info`` by ``to_fiftyone``."""
    info = dataset.info.get("avml") or {}
    if "task" not in info:
        raise ConfigError(f"FiftyOne dataset {dataset.name!r} was not made by jupyter_avml (no task in its info); "
                          f"import it with to_fiftyone / `avml qa import`", field="dataset", value=dataset.name)
    return ImageTask.parse(info["task"])


def check_model_fits(predictor, dataset, description: str) -> None:
    """``ConfigError`` when the model's task or classes do not fit the dataset, saying what to do instead."""
    info = dataset.info.get("avml") or {}
    task = dataset_task(dataset)
    if predictor.task is not task:
        raise ConfigError(f"{description} is an {predictor.task.value} model; FiftyOne dataset {dataset.name!r} "
                          f"({info.get('reference', '')}) is {task.value}: choose a model trained for "
                          f"{task.value}", field="task", value=predictor.task.value)
    unknown = sorted(set(info.get("classes") or []) - set(predictor.class_names))
    if unknown:
        raise ConfigError(f"dataset {info.get('reference', dataset.name)} has classes the model of {description} "
                          f"does not know: {', '.join(unknown)} (the model's classes: "
                          f"{', '.join(predictor.class_names)}); predict with a model trained on this data "
                          f"(training_data: {info.get('reference', '')})", field="classes", value=unknown)


def _predict(dataset, source, field: str, ws: Workspace, embeddings: bool, overwrite: bool, progress,
             device: str, model_settings: dict) -> None:
    from jupyter_avml import load_model
    from jupyter_avml.qa._fo import fiftyone

    fo = fiftyone(ws)
    predictor = load_model(source.path, device=device, workspace=ws, **model_settings)
    check_model_fits(predictor, dataset, source.description)
    task = predictor.task
    embedding_field = field + EMBEDDING_SUFFIX
    view = dataset if overwrite or not dataset.has_sample_field(field) else dataset.exists(field, False)
    ids, paths = view.values("id"), view.values("filepath")
    widths, heights = view.values("metadata.width"), view.values("metadata.height")
    _record(dataset, field, source, predictor, model_settings, complete=False)
    report = reporter(progress, len(ids), f"predicting with {source.description}")
    chunk = max(1, int(predictor.batch_size)) * CHUNK_BATCHES
    with _Taps(predictor.model, embeddings) as taps:
        for start in range(0, len(ids), chunk):
            stop = min(start + chunk, len(ids))
            taps.clear()
            outputs = predictor.predict(list(paths[start:stop]))
            logits, vectors = taps.take(stop - start)
            labels, embedded = {}, {}
            for k, output in enumerate(outputs):
                row = start + k
                labels[ids[row]] = prediction_to_label(
                    fo, output, task, predictor.class_names, int(widths[row]), int(heights[row]),
                    logits=None if logits is None else logits[k])
                if vectors is not None:
                    embedded[ids[row]] = vectors[k]
            dataset.set_values(field, labels, key_field="id")
            if embedded:
                dataset.set_values(embedding_field, embedded, key_field="id")
            report(stop)
    _record(dataset, field, source, predictor, model_settings, complete=True)


def _record(dataset, field: str, source, predictor, model_settings: dict, *, complete: bool) -> None:
    """Note in ``dataset.info`` which model filled ``field`` and whether it finished."""
    info = dict(dataset.info.get("avml") or {})
    predictions = dict(info.get("predictions") or {})
    predictions[field] = {"model": source.path, "description": source.description, "run_id": source.run_id,
                          "experiment": source.experiment, "child": source.child, "model_name": predictor.model_name,
                          "classes": list(predictor.class_names), "settings": dict(model_settings),
                          "complete": complete, "time": time.time()}
    info["predictions"] = predictions
    dataset.info = {**dataset.info, "avml": info}
    dataset.save()


def predictions_of(dataset) -> dict[str, dict]:
    """``{field: what filled it}`` for every prediction field of ``dataset``."""
    return dict((dataset.info.get("avml") or {}).get("predictions") or {})


class _Taps:
    """Forward hooks that record a network's logits (classifiers) and image embeddings while it predicts.

    ``take(n)`` returns ``(logits [n, C] or None, embeddings [n, D] or None)`` for the ``n`` images of the
    last ``predict`` call. A torchvision detector that tiles runs its backbone on each image and then on its
    tiles, image after image: the first of each equal group of rows is the image's own.
    """

    def __init__(self, model, embeddings: bool):
        self.model = model
        self.embeddings = embeddings
        self.handles: list = []
        self.logits: list[np.ndarray] = []
        self.vectors: list[np.ndarray] = []

    def __enter__(self) -> _Taps:
        model = self.model
        if hasattr(model, "get_classifier"):  # timm: logits out of the network, embedding into its head
            self.handles.append(model.register_forward_hook(self._on_logits))
            head = model.get_classifier()
            if self.embeddings and head is not None and len(list(head.parameters())):
                self.handles.append(head.register_forward_pre_hook(self._on_features))
        elif self.embeddings and hasattr(model, "backbone") and hasattr(model, "transform"):  # torchvision
            self.handles.append(model.backbone.register_forward_hook(self._on_backbone))
        elif self.embeddings and hasattr(model, "model") and len(getattr(model, "model", ())):  # ultralytics
            self.handles.append(model.model[-1].register_forward_pre_hook(self._on_features))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()

    def clear(self) -> None:
        self.logits.clear()
        self.vectors.clear()

    def take(self, count: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        logits = np.concatenate(self.logits) if self.logits else None
        vectors = np.concatenate(self.vectors) if self.vectors else None
        if vectors is not None and len(vectors) != count and len(vectors) % count == 0:
            vectors = vectors[::len(vectors) // count]  # tiles: keep each image's own row
        if logits is not None and len(logits) != count:
            logits = None  # not one row per image: do not guess
        if vectors is not None and len(vectors) != count:
            vectors = None
        return logits, vectors

    def _on_logits(self, module, inputs, output) -> None:
        if hasattr(output, "detach") and output.dim() == 2:
            self.logits.append(output.detach().float().cpu().numpy())

    def _on_features(self, module, inputs) -> None:
        features = inputs[0]
        self.vectors.append(_pooled(features))

    def _on_backbone(self, module, inputs, output) -> None:
        last = list(output.values())[-1] if isinstance(output, dict) else output
        self.vectors.append(_pooled(last))


def _pooled(features) -> np.ndarray:
    """``[B, D]`` float32 from a ``[B, D]`` tensor, a ``[B, C, H, W]`` map (average-pooled) or a list of maps."""
    import torch

    if isinstance(features, (list, tuple)):
        return np.concatenate([_pooled(f) for f in features], axis=1)
    features = features.detach().float()
    if features.dim() == 4:
        features = torch.nn.functional.adaptive_avg_pool2d(features, 1).flatten(1)
    elif features.dim() == 3:  # tokens [B, N, D] (a head that pools itself)
        features = features.mean(dim=1)
    return features.cpu().numpy().astype(np.float32)


class PredictionJob:
    """Predictions running in a background thread (``add_predictions(..., background=True)``).

    ``done``/``total`` count images; ``finished`` says whether it ended; ``wait(timeout)`` blocks until it does
    and returns the field, or raises what the predictions raised.
    """

    def __init__(self, dataset, source, field: str, ws: Workspace, embeddings: bool, overwrite: bool, device: str,
                 model_settings: dict):
        self.dataset, self.source, self.field = dataset, source, field
        self.done = self.total = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(ws, embeddings, overwrite, device, model_settings),
            name=f"avml-qa-predict-{field}", daemon=True)
        self._thread.start()

    def _progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def _run(self, ws, embeddings, overwrite, device, model_settings) -> None:
        try:
            _predict(self.dataset, self.source, self.field, ws, embeddings, overwrite, self._progress, device,
                     model_settings)
        except BaseException as exc:  # kept for wait(): a thread has nowhere else to put it
            self.error = exc

    @property
    def finished(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> str:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"predictions with {self.source.description} still running after {timeout:g} s "
                               f"({self.done}/{self.total} images)")
        if self.error is not None:
            raise self.error
        return self.field

    def __repr__(self) -> str:
        state = "failed: " + str(self.error) if self.error else ("done" if self.finished else "running")
        return f"PredictionJob({self.field!r}, {self.done}/{self.total} images, {state})"
