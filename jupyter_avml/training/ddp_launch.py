"""Launching a DDP run torchrun-style, and the rank processes' entry point (``distributed.py`` says what DDP does).

``launch`` runs in the process that owns the run (``run.train``/``run.resume``): it starts the rank processes
(``start_ranks``: ``python -m jupyter_avml.training.ddp_launch RUN_DIR ...`` with ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``; output in ``<run>/ranks/rank<N>.log``), relays rank 0's events
to its callbacks, passes a stop on as the run's ``STOP`` file, and watches the ranks (``supervise``). A rank that
dies ends the others; the run is then recorded ``failed`` with the rank's own error when its log ends with one
(``TrainingDivergedError: ... (DDP rank 1 of 2 ...)``), else which rank died, how, and the end of its log. The
ranks record nothing of a failure themselves (rank 0 would record the symptom, a closed connection), and each
dies with its launcher.

``train_rank`` is a rank's work: rank 0 runs the run as a single process does (``run._execute``: events, MLflow,
files); the other ranks train with the same trainer, no callbacks, and write nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from jupyter_avml.errors import AvmlError
from jupyter_avml.liveness import die_with_parent
from jupyter_avml.runs.folder import RunFolder
from jupyter_avml.training.distributed import RANK_ENV, join, rank_context, visible_gpus

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
END_GRACE_SECONDS = 10.0


# -- the launcher ------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class _Rank:
    rank: int
    process: subprocess.Popen
    log: Path


def start_ranks(run_dir: Path, workspace: Path, world: int, *, resume: bool) -> list[_Rank]:
    """Start the ``world`` rank processes of the run in ``run_dir``."""
    port = free_port()
    ranks = []
    for rank in range(world):
        path = RunFolder(Path(run_dir)).rank_log(rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
               "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               RANK_ENV: str(rank), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "jupyter_avml.training.ddp_launch", str(run_dir), "--workspace",
                   str(workspace), "--launcher", str(os.getpid())]
        if resume:
            command.append("--resume")
        with open(path, "ab") as out:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                       env=env, close_fds=True)
        ranks.append(_Rank(rank, process, path))
    return ranks


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _tail(path: Path, lines: int = 8) -> str:
    """The last ``lines`` lines of a log ('' when it cannot be read); reads its last 16 KiB only."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def end_ranks(ranks: list[_Rank], grace: float = END_GRACE_SECONDS) -> None:
    """SIGTERM the ranks still running, SIGKILL those still there after ``grace`` seconds."""
    for rank in ranks:
        if rank.process.poll() is None:
            rank.process.terminate()
    deadline = time.monotonic() + grace
    for rank in ranks:
        try:
            rank.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            rank.process.kill()
            rank.process.wait()


def _first_to_fail(rank: _Rank) -> tuple:
    """Which failed rank caused the others to fail: one killed by a signal, else the one whose log ended first
    (the others fail after it, on a closed connection)."""
    try:
        ended = rank.log.stat().st_mtime
    except OSError:
        ended = 0.0
    return (rank.process.returncode >= 0, ended)


def rank_error(rank: _Rank, world: int) -> str:
    """The error of a failed rank: its own exception when its log ends with one, else how it ended and the end
    of its log."""
    where = f"DDP rank {rank.rank} of {world} (pid {rank.process.pid}) {describe_exit(rank.process.returncode)}"
    tail = _tail(rank.log, 30)
    if rank.process.returncode == 1:  # it raised: a traceback ends with "Module.Error: message"
        raised = [line.strip() for line in tail.splitlines() if _EXCEPTION_LINE.match(line)]
        if raised:
            return f"{raised[-1]} ({where})"
    tail = "\n".join(tail.splitlines()[-8:])
    return where + (f"; end of {rank.log}:\n{tail}" if tail else "")


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt): ")


def supervise(ranks: list[_Rank], *, on_tick, stop_requested) -> str | None:
    """Wait for the ranks, calling ``on_tick()`` every ``POLL_SECONDS`` and passing a stop on once.

    Returns None when every rank exited with 0, else the error: which rank died first and how, with the
    end of its log (the others are ended then).
    """
    stop_sent = False
    done_since = None  # when rank 0 finished: the others follow it within END_GRACE_SECONDS
    while True:
        on_tick()
        if not stop_sent and stop_requested():
            stop_sent = True
        if done_since is None and ranks[0].process.poll() == 0:
            done_since = time.monotonic()
        if done_since is not None and time.monotonic() - done_since > END_GRACE_SECONDS and \
                any(r.process.poll() is None for r in ranks):
            log.warning("rank 0 finished the run; ending the ranks still running after %.0f s", END_GRACE_SECONDS)
            end_ranks(ranks)
            return None
        failed = [r for r in ranks if r.process.poll() not in (None, 0)]
        if failed:
            first = min(failed, key=_first_to_fail)
            end_ranks(ranks)
            if done_since is not None:  # rank 0 had finished the run: a late failure only leaves the group
                log.warning("after rank 0 finished: %s", rank_error(first, len(ranks)))
                return None
            return rank_error(first, len(ranks))
        if all(r.process.poll() == 0 for r in ranks):
            on_tick()
            return None
        time.sleep(POLL_SECONDS)


class RankFailedError(AvmlError, RuntimeError):
    """A rank process of a DDP run died or failed (the message names it, how, and the end of its log)."""


def launch(config, workspace, tracker, folder, callbacks, stop_signal, resume: bool, world: int):
    """Train the run in ``folder`` with ``world`` rank processes; returns its ``RunSummary`` (see the module
    docstring). Called by ``run.execute`` in the process that owns the run.

    Raises
    ------
    RankFailedError
        A rank died or failed; the run is recorded ``failed`` with that error.
    """
    from jupyter_avml.runs.events import CallbackList, RunFinished, read_events, request_stop
    from jupyter_avml.training import run as runs

    relay = CallbackList(list(callbacks))
    offset = folder.events_file.stat().st_size if folder.events_file.exists() else 0
    finished: list = []

    def on_tick() -> None:
        nonlocal offset
        events, offset = read_events(folder.events_file, offset, on_bad_line=lambda line, exc: None)
        for event in events:
            relay.on_event(event)
            if isinstance(event, RunFinished):
                finished.append(event)

    def stop_requested() -> bool:
        if stop_signal and not folder.stop_file.exists():
            # A stop asked in this process (a sweep worker's order): rank 0 reads it from the run's STOP file.
            request_stop(folder.path, stop_signal.reason or "stopped by user", status=stop_signal.status or "stopped")
        return bool(stop_signal)

    log.info("run %s: DDP over %d processes (%s)", folder.run_id, world,
             "gloo on the CPU" if str(config.device).lower() == "cpu" or not visible_gpus() else "NCCL on GPUs")
    ranks = start_ranks(folder.path, workspace.root, world, resume=resume)
    try:
        error = supervise(ranks, on_tick=on_tick, stop_requested=stop_requested)
    except BaseException as exc:  # KeyboardInterrupt...: nothing may outlive the launcher
        end_ranks(ranks)
        error = f"{type(exc).__name__}: the launcher was interrupted"
        if not isinstance(exc, Exception):
            _record_rank_failure(runs, config, tracker, folder, relay, error, status="stopped")
            raise
    on_tick()
    if error is None and finished:
        return _summary(runs, config, folder, finished[-1])
    error = error or f"rank 0 ended without finishing run {folder.run_id}"
    if not finished:  # rank 0 could not record the end itself
        _record_rank_failure(runs, config, tracker, folder, relay, error)
    raise RankFailedError(error)


def _summary(runs, config, folder, finished):
    """The ``RunSummary`` of a run rank 0 finished (from its ``RunFinished``)."""
    return runs.RunSummary(run_id=folder.run_id, task=config.task_type.value, model_name=config.model_name,
                           status=finished.status, primary_metric=config.task_type.primary_metric,
                           primary_metric_value=finished.best_value, best_epoch=finished.best_epoch,
                           metrics=dict(finished.metrics), model_path=finished.model_path,
                           output_dir=str(folder.outputs_dir), reason=finished.reason)


def _record_rank_failure(runs, config, tracker, folder, relay, error: str, status: str = "failed") -> None:
    """Record a run whose rank 0 could not (it died): ``run.json``, the events (relayed too), MLflow."""
    from jupyter_avml.runs.events import CallbackList, JsonlEventWriter, RunFinished

    writer = CallbackList([JsonlEventWriter(folder.events_file), tracker.callback(folder.run_id), relay])
    finished = RunFinished(folder.run_id, status=status, primary_metric=config.task_type.primary_metric,
                           error=error)
    for what, record in (("run.json", lambda: runs.write_run_json(folder.path, status=status, error=error,
                                                                   ended=time.time())),
                         ("the events", lambda: writer.on_event(finished)),
                         ("MLflow", lambda: tracker.end_run(folder.run_id, status))):
        try:
            record()
        except Exception as secondary:  # noqa: BLE001 - the rank's error is the one raised
            log.error("run %s: could not record the end in %s: %s", folder.run_id, what, secondary)


def train_rank(run_dir: Path, workspace: Path, rank: int, world: int, *, resume: bool) -> int:
    """One rank's training of the run in ``run_dir`` (its ``config.yaml``); returns the exit status.

    Rank 0 runs the run exactly as a single process does (``run._execute``: events, MLflow, files); the other
    ranks train with the same trainer and no callbacks, and write nothing.
    """
    from jupyter_avml.config import AutoMLImageConfig
    from jupyter_avml.runs.events import CallbackList, StopSignal
    from jupyter_avml.tracking.store import Tracker
    from jupyter_avml.training import run as runs
    from jupyter_avml.training.data import load_run_data
    from jupyter_avml.training.incremental import check_start_model
    from jupyter_avml.workspace import Workspace

    folder = RunFolder(Path(run_dir))
    config = AutoMLImageConfig.from_yaml(folder.config_file)
    ws = Workspace.resolve(workspace)
    data = load_run_data(config, ws)
    # Incremental training (``checkpoint_run_id``): every rank starts from the same weights, as ``run`` does.
    start_model = None if resume else check_start_model(config, ws, data.class_names)
    context = join(rank, world, config.device)
    log.info("rank %d of %d on %s", rank, world, context.device)
    if context.is_writer:
        tracker = Tracker(ws, config.tracking_uri)
        runs._execute(config, ws, tracker, folder, data, (), None, resume=resume,  # as a single process
                      start_model=start_model)
        return 0
    trainer = runs.build_trainer(config, data, run_id=folder.run_id, run_dir=folder.path, callbacks=CallbackList(),
                                 stop_signal=StopSignal(), start_model=start_model)
    trainer.fit(resume=resume)
    return 0


# -- the rank process -------------------------------------------------------------------------------------
def rank_main(argv: list[str] | None = None) -> int:
    """One rank of a run (started by ``start_ranks``)."""
    parser = argparse.ArgumentParser(prog="python -m jupyter_avml.training.ddp_launch")
    parser.add_argument("run_dir")
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--launcher", type=int, required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    die_with_parent(args.launcher)  # a rank never outlives its launcher
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s rank %(process)d %(name)s: %(message)s")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    try:
        return train_rank(Path(args.run_dir), Path(args.workspace), rank, world, resume=args.resume)
    except BaseException:  # noqa: BLE001 - the launcher reads the end of this log
        import traceback

        traceback.print_exc()
        return 1
    finally:
        context = rank_context()
        if context is not None:
            context.leave()


if __name__ == "__main__":
    code = rank_main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
