"""Turn a configuration's data settings into validated training and validation records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.data.records import ImageRecord, sorted_classes
from jupyter_avml.errors import DataError
from jupyter_avml.workspace import Workspace


@dataclass
class RunData:
    train: list[ImageRecord]
    valid: list[ImageRecord]
    class_names: list[str]
    train_source: Path
    valid_source: Path | None  # None when split from training data


def resolve_data_path(value: str, workspace: Workspace) -> Path:
    """A JSONL path, or ``dataset:NAME[:VERSION]`` of the workspace's dataset registry."""
    if value.startswith("dataset:"):
        from jupyter_avml.data.registry import resolve_dataset_reference

        return Path(resolve_dataset_reference(value, workspace=workspace))
    return Path(value).expanduser().resolve()


def load_run_data(config: AutoMLImageConfig, workspace: Workspace, outputs_dir: Path) -> RunData:
    """Read and validate the data of a run.

    Invalid rows stop the run with every problem listed, unless ``skip_invalid`` is set: then the valid
    rows are used and the rejected ones are written, with their reasons, to ``outputs_dir``.
    """
    from jupyter_avml.data.split import split_records
    from jupyter_avml.data.validate import read_dataset

    task = config.task_type
    common = dict(skip_invalid=bool(config.skip_invalid), prefix_map=config.image_url_prefix_map,
                  cache_dir=workspace.cache_dir)
    train_path = resolve_data_path(config.training_data, workspace)
    train = read_dataset(train_path, task, rejected_out=outputs_dir / "rejected_training_rows.jsonl", **common)
    class_names = sorted_classes(train.records)
    if not class_names:
        raise DataError(f"{train_path}: no labelled rows to train on")
    if config.validation_data:
        valid_path = resolve_data_path(config.validation_data, workspace)
        valid = read_dataset(valid_path, task, known_classes=class_names,
                             rejected_out=outputs_dir / "rejected_validation_rows.jsonl", **common)
        train_records, valid_records = train.records, valid.records
        if not valid_records:
            raise DataError(f"{valid_path}: validation data has no usable rows")
    else:
        valid_path = None
        train_records, valid_records = split_records(train.records, task, config.split_ratio, config.seed)
    return RunData(train_records, valid_records, class_names, train_path, valid_path)
