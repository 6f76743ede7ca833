"""Run folders and their event stream: the neutral layer that training writes and that inference, tracking,
sweeps, dashboards and the CLI read (``runs.folder``: paths, record, lock, status; ``runs.events``: events)."""

from jupyter_avml.runs.events import (
    CallbackList,
    Event,
    JsonlEventWriter,
    StopSignal,
    read_events,
    request_stop,
)
from jupyter_avml.runs.folder import (
    RunFolder,
    check_run_id,
    find_run_dir,
    list_runs,
    lock_run,
    read_run_json,
    record_run_status,
    run_status,
    write_run_json,
)

__all__ = ["CallbackList", "Event", "JsonlEventWriter", "RunFolder", "StopSignal", "check_run_id", "find_run_dir",
           "list_runs", "lock_run", "read_events", "read_run_json", "record_run_status", "request_stop",
           "run_status", "write_run_json"]
