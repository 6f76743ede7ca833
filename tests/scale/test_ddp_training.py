"""DDP runs on the CPU: two processes over gloo against one process, and a rank that dies.

Stated tolerance (``distributed.py`` says why the runs are not bit-identical: each rank draws its own random
augmentations, and on the CPU BatchNorm normalises over each rank's share): with the same data, configuration
and global batch, the validation log loss of every epoch and the first epoch's training loss of the 2-process
run are within 10% of the single-process run's (measured here: 0.5-2.2% and 5.7%; accuracy on 18 validation
images moves in steps of 5.6% and is not compared). What must be identical: the batches per epoch, one of each
run event (only rank 0 records), the files of a run, and the MLflow metrics (once per epoch). The exactness of
one DDP update is tested in ``test_distributed_parts.py``.
"""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from jupyter_avml.config import AutoMLImageConfig

TOLERANCE = 0.10
CONFIG = dict(task="image-classification", model_name="resnet18", pretrained=0, train_crop_size=32,
              valid_resize_size=32, valid_crop_size=32, training_batch_size=16, validation_batch_size=32,
              device="cpu", cpu_threads=1, early_stopping=0, optimizer="adam", learning_rate=0.002,
              log_every_n_batches=1, number_of_epochs=3)


@pytest.fixture(scope="module")
def ddp_data(tmp_path_factory):
    from jupyter_avml.data.shapes import make_shapes

    return make_shapes(tmp_path_factory.mktemp("ddp-data"), "image-classification", n=96, size=32, seed=3,
                       color_by_class=True)


def events_of(workspace, run_id: str) -> list:
    from jupyter_avml.runs.events import read_events

    return read_events(workspace / "runs" / run_id / "events.jsonl")[0]


class Recorder:
    def __init__(self):
        self.events = []

    def on_event(self, event):
        self.events.append(event)


def rank_processes(run_dir) -> list:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info.get("cmdline") or [])
        if "jupyter_avml.training.ddp_launch" in cmdline and str(run_dir) in cmdline:
            found.append(process)
    return found


@pytest.mark.slow(seconds=20)
def test_two_gloo_processes_train_like_one_process_with_the_same_global_batch(ddp_data, workspace):
    from jupyter_avml.inference.predictor import load_model
    from jupyter_avml.runs.events import BatchProgress, EpochMetrics, RunFinished, RunStarted
    from jupyter_avml.training.run import train

    single = train(AutoMLImageConfig.from_dict({**CONFIG, "training_data": str(ddp_data)}), workspace=workspace)
    relayed = Recorder()
    ddp = train(AutoMLImageConfig.from_dict({**CONFIG, "training_data": str(ddp_data), "distributed": 2}),
                workspace=workspace, callbacks=[relayed])
    assert (single.status, ddp.status) == ("completed", "completed")

    one, two = events_of(workspace, single.run_id), events_of(workspace, ddp.run_id)
    assert [type(e) for e in relayed.events] == [type(e) for e in two]  # the caller heard rank 0's events
    for kind in (RunStarted, RunFinished):
        assert sum(isinstance(e, kind) for e in two) == 1  # only rank 0 records
    batches = [(e.epoch, e.batch, e.num_batches) for e in two if isinstance(e, BatchProgress)]
    assert batches == [(e.epoch, e.batch, e.num_batches) for e in one if isinstance(e, BatchProgress)]
    epochs_one = [e for e in one if isinstance(e, EpochMetrics)]
    epochs_two = [e for e in two if isinstance(e, EpochMetrics)]
    assert len(epochs_one) == len(epochs_two) == 3
    assert epochs_two[0].train_loss == pytest.approx(epochs_one[0].train_loss, rel=TOLERANCE)
    for a, b in zip(epochs_one, epochs_two, strict=True):
        assert b.metrics["log_loss"] == pytest.approx(a.metrics["log_loss"], rel=TOLERANCE), a.epoch
        assert set(b.metrics) == set(a.metrics)

    run_dir = workspace / "runs" / ddp.run_id
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    assert sorted(p.name for p in (run_dir / "outputs").iterdir()) == \
        sorted(p.name for p in (workspace / "runs" / single.run_id / "outputs").iterdir())
    prediction = load_model(ddp.model_path).predict(str(next((ddp_data.parent / "images").iterdir())))
    assert sum(prediction["probs"]) == pytest.approx(1.0, abs=1e-5)  # a plain model file (no DDP wrapper)
    from mlflow import MlflowClient

    history = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}").get_metric_history(ddp.run_id,
                                                                                                  "log_loss")
    assert sorted(m.step for m in history) == [1, 2, 3]
    assert not rank_processes(run_dir)


@pytest.mark.slow
def test_a_rank_that_dies_fails_the_run_cleanly(ddp_data, workspace):
    from jupyter_avml.runs.events import EpochStarted, RunFinished
    from jupyter_avml.training.ddp_launch import RankFailedError
    from jupyter_avml.training.run import train

    config = AutoMLImageConfig.from_dict({**CONFIG, "training_data": str(ddp_data), "distributed": 2,
                                          "number_of_epochs": 50})
    killed = []

    class KillRankOne:
        """At the second epoch, SIGKILL rank 1 (a GPU or a node that fails)."""

        def on_event(self, event):
            if isinstance(event, EpochStarted) and event.epoch == 2 and not killed:
                run_dir = workspace / "runs" / event.run_id
                victim = [p for p in rank_processes(run_dir) if p.environ().get("RANK") == "1"][0]
                os.kill(victim.pid, signal.SIGKILL)
                killed.append((victim.pid, run_dir))

    started = time.monotonic()
    with pytest.raises(RankFailedError) as caught:
        train(config, workspace=workspace, callbacks=[KillRankOne()])
    pid, run_dir = killed[0]
    assert str(caught.value).startswith(f"DDP rank 1 of 2 (pid {pid}) killed by signal 9 (SIGKILL)")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["error"] == str(caught.value)
    ends = [e for e in events_of(workspace, run_dir.name) if isinstance(e, RunFinished)]
    assert len(ends) == 1 and ends[0].status == "failed" and ends[0].error == str(caught.value)
    assert not rank_processes(run_dir)  # rank 0 was ended too
    assert time.monotonic() - started < 300


@pytest.mark.slow(seconds=20)
def test_a_sweep_child_trains_with_ddp_and_stops_when_asked(ddp_data, workspace):
    """A child of a local sweep with ``distributed: 2`` (what a slot of two GPUs gives): its worker launches
    the ranks, the driver hears rank 0's events through it, and a stop order reaches every rank."""
    from jupyter_avml.sweep import Experiment
    from tests.sweep.test_experiment import kill_leftovers, wait_for

    config = {**CONFIG, "training_data": str(ddp_data), "distributed": 2, "number_of_epochs": 50,
              "cpu_slots": 1}
    handle = Experiment("ddp-child", workspace).submit(config)
    try:
        wait_for(lambda: handle.state.children and handle.state.children[0].epoch >= 1, timeout=300,
                 what="the child's first epoch", handle=handle)
        assert handle.stop_child(0, "enough")
        state = handle.wait(timeout=300)
        child = state.children[0]
        assert (child.status, child.reason) == ("stopped", "enough") and child.best_value is not None
        run_dir = workspace / "runs" / child.run_id
        assert sorted(p.name for p in (run_dir / "ranks").iterdir()) == ["rank0.log", "rank1.log"]
        wait_for(lambda: not rank_processes(run_dir), timeout=60, what="the ranks to exit")
    finally:
        kill_leftovers(workspace)


@pytest.mark.slow(seconds=20)
def test_a_detector_trains_under_ddp_and_saves_a_plain_model(tmp_path, workspace):
    """The detection recipe under two gloo processes: each rank gets half of every global batch (BatchNorm
    from scratch needs two images a rank), rank 0 evaluates mAP over the whole validation set, and the model
    file is a single process's (it loads and predicts in the spec's format)."""
    from jupyter_avml.data.shapes import make_shapes
    from jupyter_avml.inference.predictor import load_model
    from jupyter_avml.runs.events import EpochMetrics
    from jupyter_avml.training.run import train

    data = make_shapes(tmp_path / "det", "image-object-detection", n=12, size=48, seed=4, color_by_class=True)
    config = AutoMLImageConfig.from_dict({
        "task": "image-object-detection", "training_data": str(data), "model_name": "fasterrcnn_resnet18_fpn",
        "pretrained": 0, "min_size": 48, "max_size": 48, "training_batch_size": 4, "validation_batch_size": 4,
        "device": "cpu", "cpu_threads": 1, "number_of_epochs": 1, "distributed": 2})
    summary = train(config, workspace=workspace)
    assert summary.status == "completed", summary
    epochs = [e for e in events_of(workspace, summary.run_id) if isinstance(e, EpochMetrics)]
    assert len(epochs) == 1 and "mean_average_precision" in epochs[0].metrics
    prediction = load_model(summary.model_path).predict(str(next((data.parent / "images").iterdir())))
    assert set(prediction) >= {"filename", "boxes"}
    assert not rank_processes(workspace / "runs" / summary.run_id)


@pytest.mark.slow(seconds=20)
def test_a_stopped_ddp_run_resumes_under_ddp_to_its_last_epoch(ddp_data, workspace):
    """Stopped after its first epoch, a 2-process run resumes from rank 0's checkpoint: the ranks start again,
    the epochs go on from 2 (none repeated) and the run ends completed, with one RunStarted per start."""
    from jupyter_avml.runs.events import EpochMetrics, RunStarted, request_stop
    from jupyter_avml.training.run import resume, train

    class StopAfterEpoch1:
        def on_event(self, event):
            if isinstance(event, EpochMetrics) and event.epoch == 1:
                request_stop(workspace / "runs" / event.run_id, "pause")

    config = AutoMLImageConfig.from_dict({**CONFIG, "training_data": str(ddp_data), "distributed": 2})
    stopped = train(config, workspace=workspace, callbacks=[StopAfterEpoch1()])
    assert (stopped.status, stopped.reason) == ("stopped", "pause")
    assert not rank_processes(workspace / "runs" / stopped.run_id)

    resumed = resume(stopped.run_id, workspace=workspace)
    assert (resumed.run_id, resumed.status) == (stopped.run_id, "completed")
    events = events_of(workspace, stopped.run_id)
    assert [e.epoch for e in events if isinstance(e, EpochMetrics)] == [1, 2, 3]
    assert sum(isinstance(e, RunStarted) for e in events) == 2
    assert not rank_processes(workspace / "runs" / stopped.run_id)
