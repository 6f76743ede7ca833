"""Turn a configuration's data settings into validated training and validation records."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.data.records import ImageRecord, sorted_classes
from jupyter_avml.data.validate import RejectedRow
from jupyter_avml.errors import DataError
from jupyter_avml.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class RunData:
    train: list[ImageRecord]
    valid: list[ImageRecord]
    class_names: list[str]
    train_source: Path
    valid_source: Path | None  # None when split from training data
    rejected: dict[str, list[RejectedRow]] = field(default_factory=dict)  # output file name -> rows

    def write_rejected(self, outputs_dir: Path) -> list[Path]:
        """Write the rows ``skip_invalid`` left out, with their reasons, next to the run outputs."""
        from jupyter_avml.data.validate import write_rejected

        return [write_rejected(rows, outputs_dir / name) for name, rows in self.rejected.items() if rows]


def resolve_data_path(value: str, workspace: Workspace) -> Path:
    """A JSONL path, or ``dataset:NAME[:VERSION]`` of the workspace's dataset registry."""
    if value.startswith("dataset:"):
        from jupyter_avml.data.dataset_registry import resolve_dataset_reference

        return Path(resolve_dataset_reference(value, workspace=workspace))
    return Path(value).expanduser().resolve()


def load_run_data(config: AutoMLImageConfig, workspace: Workspace) -> RunData:
    """Read and validate the data of a run, before anything is created for it.

    Invalid rows stop here with every problem listed, unless ``skip_invalid`` is set: then the valid rows
    are used and the rejected ones are kept in ``RunData.rejected`` for the run to write.
    """
    from jupyter_avml.data.split import split_records
    from jupyter_avml.data.validate import emit_hints, validate_jsonl

    task = config.task_type

    def read(path: Path, known_classes=None):
        report = validate_jsonl(path, task, prefix_map=config.image_url_prefix_map, cache_dir=workspace.cache_dir,
                                known_classes=known_classes)
        emit_hints(report, log)
        if report.file_problems:  # the file as a whole (not JSON Lines, one class): skipping rows cannot help
            raise DataError(report.format(), report.problems)
        if not report.ok and not config.skip_invalid:
            raise DataError(report.format() + "\n(set skip_invalid: 1 to train on the valid rows only)",
                            report.problems)
        return report

    train_path = resolve_data_path(config.training_data, workspace)
    train = read(train_path)
    class_names = sorted_classes(train.records)
    if not class_names:
        raise DataError(f"{train_path}: no labelled rows to train on")
    rejected = {"rejected_training_rows.jsonl": train.rejected}
    if config.validation_data:
        valid_path = resolve_data_path(config.validation_data, workspace)
        valid = read(valid_path, known_classes=class_names)
        rejected["rejected_validation_rows.jsonl"] = valid.rejected
        train_records, valid_records = train.records, valid.records
        if not valid_records:
            raise DataError(f"{valid_path}: validation data has no usable rows")
    else:
        valid_path = None
        train_records, valid_records = split_records(train.records, task, config.split_ratio, config.seed)
    return RunData(train_records, valid_records, class_names, train_path, valid_path, rejected)
