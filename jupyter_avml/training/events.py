"""Re-export of ``jupyter_avml.runs.events`` (the events moved to the neutral ``runs`` package, which training,
inference, tracking, sweeps and the CLI all import); kept so that existing imports keep working."""

from jupyter_avml.runs.events import (  # noqa: F401
    EVENT_TYPES,
    STOP_FILENAME,
    TERMINAL_STATUSES,
    BatchProgress,
    Callback,
    CallbackList,
    CheckpointSaved,
    EpochMetrics,
    EpochStarted,
    Event,
    JsonlEventWriter,
    RunFinished,
    RunStarted,
    StopSignal,
    read_events,
    request_stop,
)
