"""The dashboard without a browser: the state model on scripted and recorded histories, the file source, the
widget's state after renders, the controls, the updater thread and the static fallback."""

from __future__ import annotations

import base64
import re
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest

from jupyter_avml.dashboard import (
    DashboardModel,
    DashboardSource,
    DashboardUpdater,
    ExperimentFiles,
    open_dashboard,
    static_summary,
)
from jupyter_avml.sweep.state import ChildState, ExperimentState
from jupyter_avml.training.events import BatchProgress, EpochMetrics, EpochStarted, RunStarted


def _state(children, status="running", **kw) -> ExperimentState:
    return ExperimentState(name="exp", task="image-classification", primary_metric="accuracy", status=status,
                           iterations=kw.pop("iterations", len(children)), started=100.0, children=children, **kw)


def _child(k, status="queued", history=(), epochs=3, **kw) -> ChildState:
    history = [list(h) for h in history]
    best = max(history, key=lambda h: h[1]) if history else None
    return ChildState(id=k, params={"model_name": "resnet18", "learning_rate": 0.01 * (k + 1)},
                      model_name="resnet18", status=status, run_id=kw.pop("run_id", f"r{k}" if status != "queued"
                                                                          else None),
                      epoch=len(history), number_of_epochs=epochs, metric_history=history,
                      best_value=best[1] if best else None, best_epoch=best[0] if best else None, **kw)


# -- the state model -----------------------------------------------------------------------------------------
def test_rows_sorted_by_best_metric_with_the_best_child_highlighted():
    model = DashboardModel(clock=lambda: 165.0)
    model.apply_state(_state([
        _child(0, "completed", [(1, 0.4), (2, 0.6), (3, 0.55)]),
        _child(1, "early_terminated", [(1, 0.2)], reason="Bandit: 0.2 < 0.6 / (1 + 0.2) at interval 1"),
        _child(2, "running", [(1, 0.5), (2, 0.7)]),
        _child(3, "failed", [(1, 0.9)], error="RuntimeError: CUDA out of memory"),
        _child(4, "queued"),
    ], budget_seconds=3600.0))
    snap = model.snapshot()
    assert [r.id for r in snap.rows] == [3, 2, 0, 1, 4]  # by best metric, queued (no metric) last
    assert snap.best_child == 2                           # a failed child is never the best
    assert [r.id for r in snap.rows if r.is_best] == [2]
    assert snap.row(0).best == 0.6 and snap.row(0).best_epoch == 2 and snap.row(0).current == 0.55
    assert snap.row(1).cut_short and snap.row(1).note.startswith("Bandit")
    assert snap.row(3).note == "RuntimeError: CUDA out of memory"
    assert not snap.row(0).cut_short and not snap.row(2).cut_short
    assert (snap.done, snap.iterations, snap.elapsed, snap.budget) == (3, 5, 65, 3600.0)
    assert dict(snap.counts) == {"completed": 1, "early_terminated": 1, "running": 1, "failed": 1, "queued": 1}
    assert snap.row(0).params == (("learning_rate", 0.01),)


def test_events_show_batch_progress_and_epoch_metrics_before_the_state_has_them():
    model = DashboardModel()
    model.apply_state(_state([_child(0, "running", [(1, 0.5)])]))
    model.apply_events("r0", [RunStarted("r0", number_of_epochs=3), EpochStarted("r0", epoch=2, number_of_epochs=3),
                              BatchProgress("r0", epoch=2, batch=1, num_batches=4)])
    row = model.snapshot().row(0)
    assert row.epoch == 1 and row.progress == pytest.approx(1.25) and row.fraction == pytest.approx(1.25 / 3)
    model.apply_events("r0", [BatchProgress("r0", epoch=2, batch=4, num_batches=4),
                              EpochMetrics("r0", epoch=2, primary_metric="accuracy", primary_value=0.8)])
    row = model.snapshot().row(0)  # the state still says one epoch: the event is newer
    assert row.epoch == 2 and row.history == ((1, 0.5), (2, 0.8)) and row.best == 0.8 and row.best_epoch == 2
    # The driver's next state agrees; nothing moves backwards.
    model.apply_state(_state([_child(0, "running", [(1, 0.5), (2, 0.8)])]))
    assert model.snapshot().row(0).history == ((1, 0.5), (2, 0.8))


def test_a_finished_experiment_takes_the_drivers_best_child_and_keeps_partial_progress_of_a_stopped_child():
    model = DashboardModel()
    model.apply_state(_state([_child(0, "completed", [(1, 0.5), (2, 0.6), (3, 0.7)]),
                              _child(1, "stopped", [(1, 0.75)], reason="stopped by user")],
                             status="stopped", best_child=0, ended=130.0))
    model.apply_events("r1", [EpochStarted("r1", epoch=2, number_of_epochs=3),
                              BatchProgress("r1", epoch=2, batch=2, num_batches=4)])
    snap = model.snapshot()
    assert snap.finished and snap.best_child == 0 and snap.elapsed == 30
    stopped = snap.row(1)
    assert stopped.cut_short and stopped.progress == 1.0  # the half epoch is not shown once it ended


def test_snapshots_compare_equal_when_nothing_changed():
    model = DashboardModel(clock=lambda: 150.0)
    state = _state([_child(0, "running", [(1, 0.5)])])
    model.apply_state(state)
    first = model.snapshot()
    model.apply_state(ExperimentState.from_dict(state.to_dict()))
    assert model.snapshot() == first


def test_chart_axis_holds_every_value():
    from jupyter_avml.dashboard._html import y_range

    for values in ([0.4444], [0.3333, 0.4444], [0.0, 1.0], [0.5], [0.91, 0.97], [0.05], [0.99], [1.0], [1.7, 2.2]):
        low, high = y_range(values)
        assert low <= min(values) and max(values) <= high and high - low >= 0.1 - 1e-9, (values, low, high)
        if max(values) <= 1:
            assert 0.0 <= low and high <= 1.0
    assert y_range([0.3333, 0.4444]) == (0.3, 0.5)


# -- the files ---------------------------------------------------------------------------------------------
def test_source_follows_state_and_events_files(scripted):
    sweep = scripted(name="files", iterations=2, epochs=2)
    source = DashboardSource(ExperimentFiles("files", sweep.workspace))
    assert [r.status for r in source.poll().rows] == ["queued", "queued"]
    sweep.start_child(0)
    sweep.batch(0, 1, 1, 2)
    assert source.poll().row(0).progress == pytest.approx(0.5)
    # A line being written (no newline yet) waits for the next poll.
    path = sweep.workspace / "runs" / sweep.run_id(0) / "events.jsonl"
    sweep.writers[0]._file.write('{"event": "batch_progress", "run_id": "x", "epo')
    sweep.writers[0]._file.flush()
    assert source.poll().row(0).progress == pytest.approx(0.5)
    sweep.writers[0]._file.write('ch": 1, "batch": 2, "num_batches": 2, "time": 1.0}\n')
    sweep.writers[0]._file.flush()
    assert source.poll().row(0).progress == pytest.approx(1.0)
    sweep.epoch(0, 1, 0.6, update_state=False)
    assert source.poll().row(0).history == ((1, 0.6),)
    sweep.epoch(0, 2, 0.7, update_state=False)
    sweep.state.child(0).status = "completed"  # the driver saw it finish before noting its last epoch
    sweep.write()
    assert source.poll().row(0).history == ((1, 0.6), (2, 0.7))  # the last events are read once more
    assert path.stat().st_size == source.files._offsets[sweep.run_id(0)]


def test_run_report_reads_the_outputs_of_a_finished_child(scripted):
    sweep = scripted(name="report", iterations=1, epochs=2)
    sweep.start_child(0)
    sweep.epoch(0, 1, 0.5)
    sweep.epoch(0, 2, 0.9)
    sweep.finish_child(0)
    report = ExperimentFiles("report", sweep.workspace).run_report(sweep.run_id(0))
    assert report.primary_value == 0.9 and report.best_epoch == 2
    assert report.class_names == ["circle", "square", "triangle"]
    assert set(report.per_class) == {"circle", "square", "triangle"}
    outputs = sweep.workspace / "runs" / sweep.run_id(0) / "outputs"
    assert report.images["confusion_matrix"] == (outputs / "confusion_matrix.png").read_bytes()
    assert set(report.images) == {"confusion_matrix", "pr_curves", "loss_curve", "metric_curve"}
    assert ExperimentFiles("report", sweep.workspace).run_report("nosuchrun") is None


# -- the widget ------------------------------------------------------------------------------------------------
class RecordingController:
    """Records what the controls ask of an ExperimentHandle."""

    def __init__(self, fail=False):
        self.calls = []
        self.fail = fail

    def stop(self):
        self.calls.append(("stop",))

    def stop_child(self, child_id):
        if self.fail:
            from jupyter_avml.errors import AvmlError

            raise AvmlError(f"child {child_id} is not running")
        self.calls.append(("stop_child", child_id))


def _rows(html: str) -> dict[int, str]:
    return {int(c): s for c, s in re.findall(r'class="avml-row[^"]*" data-child="(\d+)" data-status="(\w+)"', html)}


def test_widget_draws_the_leaderboard_chart_and_details_of_the_best_child(scripted):
    sweep = scripted(name="draw", iterations=3, epochs=2)
    widget = open_dashboard("draw", sweep.workspace, start=False)
    assert _rows(widget.leaderboard.value) == {0: "queued", 1: "queued", 2: "queued"}
    assert 'data-status="running"' in widget.header.value and "0 / 3 children done" in widget.header.value
    for k, values in enumerate([(0.5, 0.8), (0.3,), (0.6,)]):
        sweep.start_child(k)
        for epoch, value in enumerate(values, start=1):
            sweep.epoch(k, epoch, value)
    sweep.finish_child(0)
    sweep.finish_child(1, "early_terminated", reason="Bandit policy: 0.3 < 0.5 / (1 + 0.1)")
    sweep.finish_child(2, "failed", error="ValueError: broken image", outputs=False)
    sweep.finish()
    source = DashboardSource(ExperimentFiles("draw", sweep.workspace))
    widget.render(source.poll())
    assert _rows(widget.leaderboard.value) == {0: "completed", 1: "early_terminated", 2: "failed"}
    order = [int(c) for c in re.findall(r'data-child="(\d+)" data-status', widget.leaderboard.value)]
    assert order == [0, 2, 1]
    assert re.search(r'class="avml-row avml-status-completed avml-best" data-child="0"', widget.leaderboard.value)
    assert "Bandit policy" in widget.leaderboard.value and "ValueError: broken image" in widget.leaderboard.value
    assert 'data-status="completed"' in widget.header.value and "3 / 3 children done" in widget.header.value
    series = dict(re.findall(r'class="avml-series" data-child="(\d+)" data-cut="(\w+)"', widget.chart.value))
    assert series == {"0": "false", "1": "true", "2": "true"}
    assert widget.chart.value.count('class="avml-cut"') == 2
    # Finished: the best child's report shows by itself.
    assert widget.child_select.value == 0
    outputs = sweep.workspace / "runs" / sweep.run_id(0) / "outputs"
    assert widget.images["confusion_matrix"].value == (outputs / "confusion_matrix.png").read_bytes()
    assert widget.images["confusion_matrix"].layout.display == ""
    assert 'data-class="square"' in widget.per_class.value
    assert widget.stop_button.disabled and widget.stop_child_button.disabled
    # Any other child on request: the failed one has no report.
    widget.child_select.value = 2
    assert "left no report" in widget.details_title.value
    assert all(image.layout.display == "none" for image in widget.images.values())
    widget.child_select.value = 0
    assert widget.images["pr_curves"].value == (outputs / "pr_curves.png").read_bytes()
    widget.close()


def test_controls_stop_a_child_and_the_experiment_while_it_runs(scripted):
    sweep = scripted(name="controls", iterations=2)
    sweep.start_child(0)
    controller = RecordingController()
    widget = open_dashboard("controls", sweep.workspace, controller=controller, start=False)
    widget.stop_child_button.click()
    assert controller.calls == [] and "choose a child" in widget.message.value
    widget.child_select.value = 0
    assert not widget.stop_child_button.disabled
    widget.stop_child_button.click()
    assert controller.calls == [("stop_child", 0)] and "stop requested" in widget.message.value
    widget.stop_button.click()
    assert controller.calls[-1] == ("stop",) and widget.stop_button.disabled
    failing = open_dashboard("controls", sweep.workspace, controller=RecordingController(fail=True), start=False)
    failing.child_select.value = 1
    failing.stop_child_button.click()
    assert "child 1 is not running" in failing.message.value and "avml-error" in failing.message.value
    # Without a handle (a dashboard of files only) there is nothing to press.
    bare = open_dashboard("controls", sweep.workspace, start=False)
    assert bare.stop_button.layout.display == "none"
    for w in (widget, failing, bare):
        w.close()


def test_static_fallback_in_the_display_bundle(scripted):
    sweep = scripted(name="static", iterations=2, epochs=1)
    widget = open_dashboard("static", sweep.workspace, start=False)
    bundle = widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert 'class="avml-leaderboard"' in bundle["text/html"] and "static: image-classification" in bundle["text/plain"]
    assert "data:image/png" not in bundle["text/html"]  # nothing to plot yet: no matplotlib at display time
    for k in (0, 1):
        sweep.start_child(k)
        sweep.epoch(k, 1, 0.5 + 0.2 * k)
        sweep.finish_child(k)
    sweep.finish()
    widget.render(DashboardSource(ExperimentFiles("static", sweep.workspace)).poll())
    html = widget._repr_mimebundle_()["text/html"]
    outputs = sweep.workspace / "runs" / sweep.run_id(1) / "outputs"
    png = base64.b64encode((outputs / "confusion_matrix.png").read_bytes()).decode()
    assert f'class="avml-confusion-matrix" alt="confusion matrix" width="320" src="data:image/png;base64,{png}"' in html
    assert 'class="avml-chart"' in html and 'data-status="completed"' in html
    summary = static_summary("static", sweep.workspace)._repr_html_()
    assert png in summary and 'class="avml-per-class"' in summary
    widget.close()


# -- the updater thread ---------------------------------------------------------------------------------------
def test_updater_renders_changes_at_most_twice_a_second_and_ends_after_the_final_render(scripted):
    sweep = scripted(name="rate", iterations=1, epochs=40)
    sweep.start_child(0)
    renders: list[tuple[float, str]] = []
    source = DashboardSource(ExperimentFiles("rate", sweep.workspace))
    updater = DashboardUpdater(source.poll, lambda s: renders.append((time.monotonic(), s.status)),
                               interval=0.5).start()
    began = time.monotonic()
    for epoch in range(1, 31):  # 30 epochs in about 1.5 s: far more changes than renders
        sweep.batch(0, epoch, 1, 1)
        sweep.epoch(0, epoch, epoch / 40)
        time.sleep(0.05)
    sweep.finish_child(0, "stopped", reason="stopped by user")
    sweep.finish("stopped")
    assert updater.join(10), "the updater did not end after the experiment finished"
    elapsed = time.monotonic() - began
    assert updater.ended_because == "finished"
    assert renders[-1][1] == "stopped"
    assert len(renders) <= elapsed / 0.5 + 2
    gaps = [b[0] - a[0] for a, b in pairwise(renders)]
    assert min(gaps) >= 0.45
    assert updater.last.row(0).history[-1] == (30, 0.75)  # batched: the last render has everything


def test_updater_stops_when_the_widget_is_closed_and_never_displays(scripted, monkeypatch):
    import IPython.display
    from IPython.core import display_functions

    displayed = []

    def record(*args, **kwargs):
        displayed.append(threading.current_thread().name)

    monkeypatch.setattr(display_functions, "display", record)
    monkeypatch.setattr(display_functions, "publish_display_data", record)
    monkeypatch.setattr(display_functions, "update_display", record)
    monkeypatch.setattr(IPython.display, "display", record)
    sweep = scripted(name="close", iterations=1)
    sweep.start_child(0)
    widget = open_dashboard("close", sweep.workspace, interval=0.1)
    sweep.epoch(0, 1, 0.5)
    deadline = time.monotonic() + 5
    while 'data-epoch="1"' not in widget.leaderboard.value and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 'data-epoch="1"' in widget.leaderboard.value
    widget.close()
    assert widget.updater.join(2) and widget.updater.ended_because == "stopped"
    assert displayed == []


def test_an_epoch_reaches_the_widget_state_within_two_seconds(scripted):
    """Latency from a child's epoch end (the EpochMetrics event time) to the widget's leaderboard value."""
    sweep = scripted(name="latency", iterations=1, epochs=5)
    sweep.start_child(0)
    widget = open_dashboard("latency", sweep.workspace)  # default interval
    seen: dict[int, float] = {}

    def on_change(change):
        for epoch in re.findall(r'data-child="0" data-status="running" data-epoch="(\d+)"', change["new"]):
            seen.setdefault(int(epoch), time.time())

    widget.leaderboard.observe(on_change, names="value")
    latencies = []
    for epoch in range(1, 5):
        # Only the run's event: the dashboard must not wait for the driver's state write.
        written = sweep.epoch(0, epoch, 0.1 * epoch, update_state=False)
        deadline = time.monotonic() + 5
        while epoch not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert epoch in seen, f"epoch {epoch} never reached the widget"
        latencies.append(seen[epoch] - written)
        time.sleep(0.3)
    assert max(latencies) < 2.0, latencies
    widget.close()


def test_a_state_left_unfinished_by_a_dead_driver_shows_as_interrupted(scripted):
    sweep = scripted(name="orphan", iterations=2)
    sweep.start_child(0)
    sweep.epoch(0, 1, 0.5)
    sweep.driver_file(alive=False)  # the driver died without writing a final state
    widget = open_dashboard("orphan", sweep.workspace, interval=0.1)
    assert widget.snapshot.status == "interrupted" and widget.snapshot.finished
    assert 'data-status="interrupted"' in widget.header.value and "resume it" in widget.header.value
    assert widget.updater is None  # nothing to wait for
    sweep.driver_file(alive=True)
    live = open_dashboard("orphan", sweep.workspace, interval=0.1)
    assert live.snapshot.status == "running" and live.updater.alive
    live.close()
    widget.close()


# -- a recorded sweep -----------------------------------------------------------------------------------------
RECORDED = Path(__file__).parent / "data" / "recorded_sweep"


def test_replay_of_a_recorded_sweep_through_the_files(tmp_path):
    """A real sweep (2 children x 3 epochs), recorded by ``benchmarks/notebook_latency.py --record``: every
    state.json the driver wrote, and each child's events, replayed in the order and at the moments they
    were seen. The dashboard must follow: statuses as the driver says, never less than the state knows, no
    progress lost, the leaderboard sorted, and the final picture the driver's."""
    import json
    import os

    from jupyter_avml.dashboard import DashboardWidget
    from jupyter_avml.sweep.folder import ExperimentFolder, process_identity
    from jupyter_avml.sweep.state import experiment_dir, write_state

    states = [json.loads(line) for line in (RECORDED / "states.jsonl").read_text().splitlines()]
    events = {run.name: (run / "events.jsonl").read_text().splitlines() for run in (RECORDED / "runs").iterdir()}
    name = states[0]["state"]["name"]
    workspace = tmp_path / "ws"
    folder = experiment_dir(workspace, name)
    folder.mkdir(parents=True)
    ExperimentFolder(folder).write_driver_record(process_identity(os.getpid()))  # this process replays the driver
    files = ExperimentFiles(name, workspace)
    source = DashboardSource(files)
    widget = DashboardWidget(report_loader=files.run_report)
    written = dict.fromkeys(events, 0)
    previous = None
    ahead = 0
    for item in states:
        for run_id, lines in events.items():
            due = [line for line in lines if json.loads(line)["time"] <= item["t"]]
            if len(due) > written[run_id]:
                path = workspace / "runs" / run_id / "events.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a") as handle:
                    handle.write("".join(line + "\n" for line in due[written[run_id]:]))
                written[run_id] = len(due)
        state = ExperimentState.from_dict(item["state"])
        write_state(folder, state)
        snap = source.poll()
        widget.render(snap)
        assert snap.status == state.status and len(snap.rows) == len(state.children)
        for child in state.children:
            row = snap.row(child.id)
            assert row.status == child.status
            assert {tuple(h) for h in child.metric_history} <= set(row.history)
            assert row.epoch >= child.epoch
            ahead += len(row.history) > len(child.metric_history)
            if previous is not None and child.id in {r.id for r in previous.rows}:
                assert row.progress >= previous.row(child.id).progress - 1e-9
                assert len(row.history) >= len(previous.row(child.id).history)
        ranked = [r.best for r in snap.rows if r.best is not None]
        assert ranked == sorted(ranked, reverse=True)
        assert _rows(widget.leaderboard.value) == {c.id: c.status for c in state.children}
        previous = snap
    final = ExperimentState.from_dict(states[-1]["state"])
    assert snap.finished and snap.status == "completed" and snap.best_child == final.best_child
    assert all(len(r.history) == r.number_of_epochs == 3 for r in snap.rows)
    assert widget.chart.value.count('class="avml-series"') == 2
    best_row = f'class="avml-row avml-status-completed avml-best" data-child="{final.best_child}"'
    assert best_row in widget.leaderboard.value
    # In this recording the events told an epoch's metric before the driver's state did: the dashboard showed it.
    assert ahead >= 1
    widget.close()
