"""ONNX export of a YOLO network through ultralytics' own exporter (``export.onnx_graphs.export_yolo`` uses it).

ultralytics knows how to export its Detect head (anchors and strides folded into the graph); we only choose the
settings: dynamic batch and size, no NMS in the graph (the predictor applies ultralytics' NMS after it), float32.
"""

from __future__ import annotations

from pathlib import Path

import torch


def export_yolo_onnx(model: torch.nn.Module, path: Path, *, size: int, opset: int) -> Path:
    """Write ``model`` (a YOLO ``DetectionModel`` on the CPU, in eval mode) as ONNX at ``path``; returns ``path``.

    ultralytics' exporter writes beside the model's ``pt_path``: it is set to ``path`` with a ``.pt`` suffix, and
    the file is moved to ``path`` when the exporter named it otherwise.
    """
    from ultralytics.engine.exporter import Exporter

    model.pt_path = str(path.with_suffix(".pt"))
    exporter = Exporter(overrides={"format": "onnx", "dynamic": True, "simplify": False, "imgsz": size, "batch": 1,
                                   "device": "cpu", "opset": opset, "half": False, "nms": False, "verbose": False})
    written = Path(exporter(model=model))
    if written != path:
        written.replace(path)
    return path
