"""Exporting trained models to other runtimes: ``export_onnx`` (``avml export MODEL --format onnx``).

An export folder holds ``model.onnx``, ``labels.json`` and ``onnx_model.json`` (what the graph takes and gives,
and the pre/post-processing around it: ``inference.onnx_runtime`` describes the contract and runs it).
``load_model(FOLDER)`` predicts with it through onnxruntime, in the same output format as the PyTorch model, and
``avml serve FOLDER`` serves it.

Per family (``export.onnx_graphs``): classifiers with a dynamic batch; yolov5 through ultralytics' own exporter,
dynamic batch and image size; torchvision's Faster R-CNN, RetinaNet and Mask R-CNN one image per call, any size.
"""

from jupyter_avml.export.onnx_export import export_onnx

__all__ = ["export_onnx"]
