"""Without the ``onnx`` extra, export and ONNX inference say what to install (these tests run either way)."""

from __future__ import annotations

import importlib.util

import pytest

from jupyter_avml.errors import AvmlError
from jupyter_avml.inference.onnx_runtime import OnnxPackagesMissing, OnnxSession, require_onnx_packages


def _without(monkeypatch, *names: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in names else real(name, *a))


def test_a_missing_package_is_named_with_the_extra_to_install(monkeypatch):
    _without(monkeypatch, "onnxruntime")
    with pytest.raises(OnnxPackagesMissing) as caught:
        require_onnx_packages("running the ONNX model m.onnx", "onnx", "onnxruntime")
    message = str(caught.value)
    assert isinstance(caught.value, AvmlError) and "\n" not in message
    assert "running the ONNX model m.onnx needs onnxruntime," in message and "onnx," not in message.split("needs")[1]
    assert "pip install 'jupyter_avml[onnx]'" in message


def test_export_and_onnx_inference_refuse_before_any_work(monkeypatch, tmp_path):
    from jupyter_avml.export import export_onnx

    _without(monkeypatch, "onnx", "onnxruntime")
    with pytest.raises(OnnxPackagesMissing, match=r"ONNX export needs onnx, onnxruntime"):
        export_onnx(tmp_path / "no-model-here")  # refused before the model is even looked for
    with pytest.raises(OnnxPackagesMissing, match="onnxruntime"):
        OnnxSession(tmp_path / "model.onnx")
