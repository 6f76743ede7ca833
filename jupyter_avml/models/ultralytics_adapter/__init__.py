"""Every point where jupyter_avml touches ultralytics, in one package.

* ``environment``: ultralytics' settings, folders and network behaviour confined to the workspace
  (``prepare_ultralytics``, before its first import), its ``PIL.Image.open`` patch undone;
* ``network``: the model YAML, the ``YOLO`` object, its loss, pretrained downloads, and YOLO weights files read
  as data (``read_yolo_state_dict``: an ultralytics checkpoint's pickled modules never run code);
* ``trainer``: the ``DetectionTrainer`` subclass whose hooks the YOLO runner (``training.yolo``) drives;
* ``export``: ONNX through ultralytics' exporter (dynamic batch and size, no NMS in the graph);
* ``predict``: letterbox, forward and ultralytics' NMS, shared by the run's evaluation and the predictor;
* ``hooks``: the list of ultralytics names the above rely on, with their expected signatures, and the check
  that they still exist in the installed release (ultralytics is pinned in pyproject).

Nothing else in jupyter_avml imports ultralytics. ultralytics itself is imported inside functions, after
``prepare_ultralytics``.
"""

from jupyter_avml.models.ultralytics_adapter.environment import UltralyticsDirs, prepare_ultralytics

__all__ = ["UltralyticsDirs", "prepare_ultralytics"]
