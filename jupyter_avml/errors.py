"""Errors the user sees. Each one says where the problem is (file, line, field) and what value caused it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class AvmlError(Exception):
    """Base class of every error jupyter_avml raises on purpose.

    The CLI and the magics print ``str(error)`` without a traceback: the message must stand alone.
    """


class ConfigError(AvmlError, ValueError):
    """A configuration value is unknown, out of range or inconsistent with the task or the model."""

    def __init__(self, message: str, *, field: str | None = None, value: Any = None,
                 source: str | None = None, line: int | None = None):
        self.field = field
        self.value = value
        self.source = source
        self.line = line
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(where + message)
        self.message = message


class DataError(AvmlError, ValueError):
    """Data cannot be used: the message lists the problems found (see ``problems``)."""

    def __init__(self, message: str, problems: list | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


class WeightsUnavailableError(AvmlError, RuntimeError):
    """Pretrained weights could not be loaded (offline, or a bad local file)."""


class NotFoundError(AvmlError, LookupError):
    """A named thing (dataset, run, experiment, model) does not exist in the workspace."""


class UnsafeWeightsError(WeightsUnavailableError):
    """A weights file that could only be read by running code stored in it (a pickle of arbitrary objects).

    jupyter_avml reads weights as data only; the message says how a user converts a file they trust.
    """


class ModelFileError(AvmlError, ValueError):
    """A file given as a trained model is not one (empty, truncated, a checkpoint, another kind of file)."""


class DamagedRunError(AvmlError, ValueError):
    """A record of a run (``run.json``) exists but cannot be read; the message names it and what can be done.

    ``folder`` (the run folder) and ``reason`` let a door word the advice in its own commands.
    """

    def __init__(self, message: str, folder: Path, reason: str):
        super().__init__(message)
        self.folder = folder
        self.reason = reason


class RunBusyError(AvmlError, RuntimeError):
    """A run folder is in use by another training process (e.g. a resume while the run still trains)."""


class TrainingDivergedError(AvmlError, FloatingPointError):
    """The training loss became infinite or NaN; the message names the epoch, the batch and what to change."""
