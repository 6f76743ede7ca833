"""The environment a model needs at inference: pinned requirements, read from what is installed (no network).

The versions are those of the packages that trained the model (``importlib.metadata`` in the training process),
so the environment file and the MLflow model's ``requirements.txt`` describe the process the model comes from.
"""

from __future__ import annotations

import platform
from importlib import metadata

# What every model needs at inference, then what each family adds (distribution names).
BASE_PACKAGES = ("jupyter_avml", "torch", "torchvision", "numpy", "pillow", "pyyaml", "pandas", "mlflow", "psutil")
FAMILY_PACKAGES = {
    "timm": ("timm",),
    "torchvision": ("opencv-python-headless",),  # mask outlines (Mask R-CNN polygons)
    "yolov5": ("ultralytics", "opencv-python-headless"),
    "onnx": ("onnxruntime",),
}


def pinned(packages) -> list[str]:
    """``name==version`` of each installed package of ``packages`` (in order, without duplicates); packages
    that are not installed are left out."""
    out, seen = [], set()
    for name in packages:
        if name in seen:
            continue
        seen.add(name)
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return out


def inference_requirements(family: str, *extra: str) -> list[str]:
    """The pinned requirements of a model of ``family`` (``timm``, ``torchvision``, ``yolov5``, ``onnx``)."""
    return pinned((*BASE_PACKAGES, *FAMILY_PACKAGES.get(family, ()), *extra))


def conda_environment_text(requirements: list[str], name: str = "avml-inference") -> str:
    """A conda environment file (YAML) with this Python and ``requirements`` installed by pip."""
    lines = [f"name: {name}", "channels:", "  - conda-forge", "dependencies:",
             f"  - python={platform.python_version()}", "  - pip", "  - pip:"]
    lines += [f"    - {requirement}" for requirement in requirements]
    return "\n".join(lines) + "\n"
