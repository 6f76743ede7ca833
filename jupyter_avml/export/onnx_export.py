"""``export_onnx(MODEL)``: a trained model as an ONNX export folder (see ``inference.onnx_runtime`` for the
folder's contract).

The graph is traced from the model ``load_model`` builds (with ``settings`` applied first, for the settings a
graph fixes), then run once by onnxruntime on the tracing sample and compared with PyTorch: the largest
difference is recorded in ``onnx_model.json`` (``check``). The folder is written beside, then renamed into
place: an interrupted export leaves the previous one (or none), never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jupyter_avml.errors import AvmlError, ConfigError
from jupyter_avml.fileio import atomic_write_json


class ExportError(AvmlError, RuntimeError):
    """A model could not be exported (the message says which step failed and why)."""


@dataclass
class ExportResult:
    """Where the export went and how well onnxruntime reproduces PyTorch on the tracing sample."""

    folder: str
    task: str
    model_name: str
    max_abs_diff: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def default_export_folder(source: str, workspace=None) -> Path:
    """``<folder of model.pt>/onnx``; for a registered model ``<workspace>/exports/NAME-VERSION/onnx``."""
    from jupyter_avml.inference.predictor import resolve_model_file
    from jupyter_avml.workspace import Workspace

    if source.startswith("models:/"):
        name, _, version = source[len("models:/"):].rstrip("/").partition("/")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{name}-{version}")
        return Workspace.resolve(workspace).ensure("exports", safe) / "onnx"
    return resolve_model_file(source, workspace).parent / "onnx"


def export_onnx(model: str | os.PathLike, output: str | os.PathLike | None = None, *,
                settings: dict[str, Any] | None = None, workspace=None, opset: int | None = None) -> ExportResult:
    """Export MODEL (a run id, a path, ``models:/NAME/VERSION``, a registered name) to an ONNX folder.

    Parameters
    ----------
    output:
        The export folder (default: ``default_export_folder``); replaced when it exists.
    settings:
        Inference settings applied before tracing (those the graph fixes: ``min_size``, ``max_size``,
        ``box_nms_thresh``... for the torchvision detectors; ``valid_crop_size`` for classifiers).
    opset:
        The ONNX opset (default ``onnx_graphs.OPSET``).
    """
    from jupyter_avml import __version__
    from jupyter_avml.export.onnx_graphs import OPSET, exporter_for
    from jupyter_avml.inference.onnx_runtime import (
        DESCRIPTION_FILE,
        LABELS_FILE,
        ONNX_FILE,
        ONNX_FORMAT,
        OnnxSession,
        onnx_export_folder,
        require_onnx_packages,
    )
    from jupyter_avml.inference.predictor import load_model
    from jupyter_avml.serving.model_source import resolve_model_reference

    require_onnx_packages("ONNX export", "onnx", "onnxruntime")  # before any work
    started = time.perf_counter()
    source = resolve_model_reference(model, workspace)
    if not source.startswith("models:/") and onnx_export_folder(source) is not None:
        raise ConfigError(f"{source} is already an ONNX export; export the model it came from", field="model",
                          value=str(model))
    predictor = load_model(source, device="cpu", workspace=workspace, **(settings or {}))
    family = predictor.config.model_spec.family
    target = Path(output).expanduser() if output is not None else default_export_folder(source, workspace)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    folder = staging / "export"
    folder.mkdir()
    try:
        graph = folder / ONNX_FILE
        exporter = exporter_for(predictor)
        if exporter is None:
            raise ExportError(f"{predictor.model_name} ({family}) has no ONNX exporter in this version")
        try:
            facts = exporter(predictor, graph, opset or OPSET)
        except Exception as exc:  # noqa: BLE001 - the exporters' errors are many; the message keeps theirs
            raise ExportError(f"exporting {predictor.model_name} ({family}) to ONNX failed: "
                              f"{type(exc).__name__}: {exc}") from exc
        feeds, expected = facts.pop("check")
        got = OnnxSession(graph, "cpu").run(feeds)
        difference = max((float(np.max(np.abs(got[name].astype(np.float64) - value.astype(np.float64))))
                          for name, value in expected.items() if value.size and got[name].shape == value.shape),
                         default=0.0)
        mismatched = [f"{name}: {got[name].shape} vs {value.shape}" for name, value in expected.items()
                      if got[name].shape != value.shape]
        if mismatched:
            raise ExportError(f"the exported graph's outputs differ in shape from PyTorch's on the tracing sample "
                              f"({'; '.join(mismatched)})")
        atomic_write_json(folder / LABELS_FILE, list(predictor.class_names))
        description = {"format": ONNX_FORMAT, "task": predictor.task.value, "model_name": predictor.model_name,
                       "family": family, "class_names": list(predictor.class_names),
                       "config": predictor.config.to_dict(), "opset": opset or OPSET, **facts,
                       "check": {"max_abs_diff": difference, "sample": "the tracing sample"},
                       "exported_from": source, "jupyter_avml_version": __version__,
                       "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (folder / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2, default=str), encoding="utf-8")
        for leftover in folder.iterdir():  # what ultralytics' exporter leaves beside the graph
            if leftover.name not in (ONNX_FILE, LABELS_FILE, DESCRIPTION_FILE):
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        if target.is_dir():
            os.replace(target, staging / "replaced")  # removed with the staging folder
        elif target.exists():
            raise ConfigError(f"{target} exists and is not a folder: choose another -o", field="output",
                              value=str(target))
        os.replace(folder, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(str(target), predictor.task.value, predictor.model_name, difference,
                        round(time.perf_counter() - started, 2))
