"""``export MODEL --format onnx [-o DIR]``: a trained model for another runtime (``jupyter_avml.export``);
``--format mlflow`` (re)writes the deployment package of a run (MLflow model, scoring file, environment)."""

from __future__ import annotations

from jupyter_avml.cli.predict import SETTING_ARG
from jupyter_avml.cli.serve import MODEL_ARG
from jupyter_avml.cli.table import SHELL, Verb, add_verbs, arg


def export_verb(args, door=None):
    from jupyter_avml.serving.offline import parse_settings

    if args.format == "mlflow":
        return _package(args)
    from jupyter_avml.export import export_onnx

    return export_onnx(args.model, args.output, settings=parse_settings(args.settings), workspace=args.workspace,
                       opset=args.opset)


def _package(args) -> dict:
    from pathlib import Path

    from jupyter_avml.errors import ConfigError
    from jupyter_avml.inference.predictor import resolve_model_file
    from jupyter_avml.serving.model_source import resolve_model_reference
    from jupyter_avml.serving.packaging import package_model

    if args.settings or args.output or args.opset:
        raise ConfigError("--format mlflow packages the model in its own outputs folder; it takes no -o, --set or "
                          "--opset", field="--format", value="mlflow")
    source = resolve_model_reference(args.model, args.workspace)
    if source.startswith("models:/"):
        raise ConfigError("--format mlflow packages a run's model: give its run id or path (a registered model is "
                          "already an MLflow model)", field="model", value=args.model)
    model_file = resolve_model_file(source, args.workspace)
    files = package_model(Path(model_file).parent, model_file)
    return {"folder": str(Path(model_file).parent), **{k: str(v) for k, v in files.items()}}


def export_text(result, args, door) -> None:
    if args.format == "mlflow":
        print(f"packaged {result['folder']}: {result['mlflow_model']}, {result['scoring_file']}, "
              f"{result['environment']}")
        return
    print(f"exported {result.model_name} ({result.task}) to {result.folder} in {result.seconds:.1f} s")
    print(f"  model.onnx, labels.json, onnx_model.json (inputs, outputs, pre/post-processing); onnxruntime "
          f"reproduces PyTorch on the tracing sample within {result.max_abs_diff:.2g}")
    print(f"  load_model({result.folder!r}) predicts with it; `avml serve {result.folder}` serves it")


VERBS = (
    Verb("export", "export a model to ONNX (model.onnx, labels.json, pre/post-processing)", export_verb,
         description="Trace MODEL into an ONNX graph run by onnxruntime: classifiers and yolov5 with a dynamic "
                     "batch, the torchvision detectors one image per call. The folder (default: onnx/ beside "
                     "model.pt) also holds labels.json and onnx_model.json, which says what the graph takes and "
                     "gives. --set fixes settings before tracing (min_size, max_size, box_nms_thresh...).",
         args=(MODEL_ARG, arg("--format", choices=("onnx", "mlflow"), default="onnx",
                              help="onnx (default), or mlflow: write a run's MLflow model, scoring file and "
                                   "environment file again"),
               arg("-o", "--output", default=None, metavar="DIR", help="the export folder (replaced if it exists)"),
               SETTING_ARG, arg("--opset", type=int, default=None, metavar="N", help="ONNX opset (default 17)")),
         text=export_text, json=lambda result, args: result if isinstance(result, dict) else result.to_dict()),
)


def register(subparsers) -> None:
    add_verbs(subparsers, VERBS, SHELL, {})
