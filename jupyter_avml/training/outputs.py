"""The files a finished run leaves in ``<run>/outputs`` besides ``model.pt``.

* ``labels.json``: class names, in the model's output order;
* ``metrics.json``: primary metric, best epoch, final metrics (of the best epoch), per-class metrics and
  per-epoch history (train loss, learning rate, validation metrics);
* ``confusion_matrix.json`` (multi-class), ``pr_curves.json`` (every task), ``roc_curves.json``
  (classification): the data behind the plots;
* ``loss_curve.png``, ``metric_curve.png``, ``confusion_matrix.png``, ``pr_curves.png``, ``roc_curves.png``
  (matplotlib);
* ``config.yaml``: the resolved configuration;
* ``MLmodel`` and MLflow's files (the folder is an MLflow pyfunc model around ``model.pt``),
  ``scoring_file_v_1_0_0.py``, ``conda_env_v_1_0_0.yml``: the model packaged for deployment (``serving.packaging``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from jupyter_avml.fileio import atomic_write, atomic_write_json, atomic_write_text
from jupyter_avml.metrics.result import MetricsResult
from jupyter_avml.runs.folder import jsonable
from jupyter_avml.workspace import Workspace


def write_json(path: Path, data: Any) -> Path:
    return atomic_write_json(path, jsonable(data), indent=2)


def confine_matplotlib(workspace: str | os.PathLike | Workspace | None) -> bool:
    """Keep matplotlib's configuration and font cache in ``<workspace>/cache/matplotlib`` instead of HOME.

    For the entry points of processes jupyter_avml owns (the CLI, sweep workers): matplotlib reads
    ``MPLCONFIGDIR`` once, at its import, so this must run before anything imports it. Library code never calls
    it (a user's process and its matplotlib settings are the user's). Returns whether it took effect (not when
    matplotlib is already imported or ``MPLCONFIGDIR`` is already set).
    """
    if "matplotlib" in sys.modules or os.environ.get("MPLCONFIGDIR"):
        return False
    os.environ["MPLCONFIGDIR"] = str(Workspace.resolve(workspace).ensure("cache", "matplotlib"))
    return True


def write_run_outputs(outputs_dir: Path, *, class_names: list[str], primary_metric: str,
                      best: MetricsResult | None, best_epoch: int | None, history: list[dict],
                      config_yaml: str) -> dict[str, Path]:
    outputs_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "labels": write_json(outputs_dir / "labels.json", class_names),
        "metrics": write_json(outputs_dir / "metrics.json", {
            "primary_metric": primary_metric,
            "primary_metric_value": best.primary_value if best else None,
            "best_epoch": best_epoch,
            "final": dict(best.scalars) if best else {},
            "per_class": best.per_class if best else {},
            "per_epoch": history,
        }),
    }
    atomic_write_text(outputs_dir / "config.yaml", config_yaml)
    files["config"] = outputs_dir / "config.yaml"
    if best is not None and best.confusion_matrix is not None:
        files["confusion_matrix"] = write_json(outputs_dir / "confusion_matrix.json",
                                               {"class_names": class_names, "matrix": best.confusion_matrix})
    if best is not None and best.pr_curves:
        files["pr_curves"] = write_json(outputs_dir / "pr_curves.json", best.pr_curves)
    if best is not None and best.roc_curves:
        files["roc_curves"] = write_json(outputs_dir / "roc_curves.json", best.roc_curves)
    files.update(write_plots(outputs_dir, class_names=class_names, primary_metric=primary_metric, best=best,
                             history=history))
    files.update(package_for_deployment(outputs_dir))
    return files


def package_for_deployment(outputs_dir: Path) -> dict[str, Path]:
    """The MLflow model, scoring file and environment file beside ``model.pt`` (``serving.packaging``). A
    failure is logged, not raised: the trained model stays, and registering it packages it again."""
    if not (outputs_dir / "model.pt").is_file():
        return {}
    from jupyter_avml.serving.packaging import package_model

    try:
        return package_model(outputs_dir)
    except Exception as exc:  # noqa: BLE001 - the run's model must not be lost to a packaging problem
        import logging

        logging.getLogger(__name__).warning("could not package %s for deployment: %s: %s", outputs_dir,
                                            type(exc).__name__, exc)
        return {}


def write_plots(outputs_dir: Path, *, class_names: list[str], primary_metric: str, best: MetricsResult | None,
                history: list[dict]) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    files: dict[str, Path] = {}
    epochs = [h["epoch"] for h in history]
    if epochs:
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        ax.plot(epochs, [h["train_loss"] for h in history], marker="o")
        ax.set(xlabel="epoch", ylabel="training loss", title="Training loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        files["loss_curve"] = _save(fig, outputs_dir / "loss_curve.png")
        evaluated = [(h["epoch"], h["metrics"].get(primary_metric)) for h in history
                     if h["metrics"].get(primary_metric) is not None]
        if evaluated:
            fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
            ax.plot([e for e, _ in evaluated], [v for _, v in evaluated], marker="o", color="tab:green")
            ax.set(xlabel="epoch", ylabel=primary_metric, title=f"Validation {primary_metric}")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            files["metric_curve"] = _save(fig, outputs_dir / "metric_curve.png")
    if best is not None and best.confusion_matrix is not None:
        files["confusion_matrix_plot"] = _save(confusion_matrix_figure(best.confusion_matrix, class_names),
                                               outputs_dir / "confusion_matrix.png")
    if best is not None and best.pr_curves:
        files["pr_curves_plot"] = _save(pr_curves_figure(best.pr_curves), outputs_dir / "pr_curves.png")
    if best is not None and any(curve.get("fpr") for curve in best.roc_curves.values()):
        files["roc_curves_plot"] = _save(roc_curves_figure(best.roc_curves), outputs_dir / "roc_curves.png")
    return files


def confusion_matrix_figure(matrix: list[list[int]], class_names: list[str]):
    import matplotlib.pyplot as plt
    import numpy as np

    data = np.asarray(matrix)
    size = max(3.5, 0.5 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    ax.imshow(data, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    threshold = data.max() / 2 if data.size else 0
    for (i, j), value in np.ndenumerate(data):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > threshold else "black")
    fig.tight_layout()
    return fig


def pr_curves_figure(curves: dict[str, dict[str, list[float]]]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for name, curve in curves.items():
        ax.plot(curve["recall"], curve["precision"], label=name)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="Precision-recall per class")
    ax.legend(fontsize="small", loc="lower left")
    fig.tight_layout()
    return fig


def roc_curves_figure(curves: dict[str, dict[str, list[float]]]):
    """One ROC curve per class (one-vs-rest, or per label), with its area in the legend."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot([0, 1], [0, 1], color="#bbbbbb", linestyle="--", linewidth=1)  # a classifier that guesses
    for name, curve in curves.items():
        if curve.get("fpr"):
            area = float(np.trapezoid(curve["tpr"], curve["fpr"]))
            ax.plot(curve["fpr"], curve["tpr"], label=f"{name} (AUC {area:.3f})")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02),
           title="ROC per class")
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format="png"))
    finally:
        plt.close(fig)
    return path
