"""The bookkeeping both trainers share: the early-stopping decision on scripted histories, best-model files."""

from __future__ import annotations

import pytest
import torch

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.metrics.result import MetricsResult
from jupyter_avml.training.bookkeeping import RunBookkeeper, TrainerState, early_stopping_decision
from tests.conftest import Recorder

CLASSES = ["a", "b"]


def _config(**settings) -> AutoMLImageConfig:
    return AutoMLImageConfig(task="image-classification", training_data="unused.jsonl", model_name="resnet18",
                             **settings)


def _result(value: float | None) -> MetricsResult:
    return MetricsResult(task="image-classification", primary_metric="accuracy",
                         scalars={"accuracy": float("nan") if value is None else value}, class_names=CLASSES)


def _replay(book: RunBookkeeper, values: list[float | None], model) -> list[str | None]:
    """Evaluate every epoch with the scripted values; the decisions after each epoch."""
    decisions = []
    for epoch, value in enumerate(values, start=1):
        book.epoch_started(epoch - 1)
        book.state.epochs_done = epoch
        book.record_evaluation(_result(value), model, epoch)
        decision = book.end_epoch(epoch=epoch, train_loss=1.0, learning_rate=0.1, model=model, seconds=0.0,
                                  resumable_state=lambda: {"model": model.state_dict()})
        decisions.append(decision[1] if decision else None)
        if decision:
            break
    return decisions


@pytest.mark.parametrize("values, delay, patience, stops_after, best, early", [
    ([0.5, 0.4, 0.3, 0.2, 0.1, 0.0], 1, 2, 3, 1, True),     # evaluations 2, 3 do not improve: patience reached
    ([0.5, 0.4, 0.3, 0.2, 0.1, 0.0], 3, 2, 5, 1, True),     # the first 3 evaluations only track the best
    ([0.1, 0.2, 0.1, 0.3, 0.2, 0.1], 1, 2, 6, 4, True),     # an improvement resets the counter
    ([0.1, 0.2, 0.1, 0.3, 0.2, 0.4], 1, 2, 6, 6, False),    # ...and the run goes to its end
    ([None, None, None, 0.1, 0.1, 0.1], 1, 2, 6, 4, True),  # no metric: no count (and no best)
])
def test_early_stopping_counts_evaluations_after_the_delay(tmp_path, values, delay, patience, stops_after, best,
                                                           early):
    recorder = Recorder()
    book = RunBookkeeper(_config(early_stopping=1, early_stopping_delay=delay, early_stopping_patience=patience,
                                 number_of_epochs=len(values)),
                         run_id="r", run_dir=tmp_path, callbacks=_callbacks(recorder), class_names=CLASSES)
    decisions = _replay(book, values, torch.nn.Linear(2, 2))
    assert len(decisions) == stops_after
    assert (decisions[-1] or "").startswith("early stopping") == early
    assert all(decision is None for decision in decisions[:-1])
    assert book.state.best_epoch == best
    saved = torch.load(tmp_path / "outputs" / "model.pt", weights_only=True)
    assert saved["epoch"] == best and saved["class_names"] == CLASSES
    best_so_far, expected = None, []
    for value in values[:stops_after]:
        improved = value is not None and (best_so_far is None or value > best_so_far)
        expected.append(improved)
        best_so_far = value if improved else best_so_far
    assert [e.is_best for e in recorder.events if e.kind == "epoch_metrics"] == expected
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["trainer_state"]["epochs_done"] == \
        stops_after


def test_the_decision_is_a_pure_rule_over_the_counters():
    config = _config(early_stopping=1, early_stopping_patience=3)
    assert early_stopping_decision(TrainerState(evaluations_without_improvement=2), config, "accuracy") is None
    reason = early_stopping_decision(TrainerState(evaluations_without_improvement=3), config, "accuracy")
    assert reason == "early stopping: accuracy did not improve for 3 evaluations"
    assert early_stopping_decision(TrainerState(evaluations_without_improvement=9),
                                   config.replace(early_stopping=0), "accuracy") is None


def test_a_non_finite_loss_names_the_epoch_and_batch(tmp_path):
    from jupyter_avml.errors import AvmlError

    book = RunBookkeeper(_config(), run_id="r", run_dir=tmp_path, class_names=CLASSES)
    with pytest.raises(AvmlError, match="training loss is nan at epoch 2, batch 5: lower learning_rate"):
        book.batch_done(1, 4, 10, float("nan"))
    with pytest.raises(FloatingPointError):  # still a FloatingPointError for code that catches those
        book.check_loss(0, 0, float("inf"))


def test_finalize_keeps_the_best_model_or_saves_the_last_weights(tmp_path):
    model = torch.nn.Linear(2, 2)
    book = RunBookkeeper(_config(), run_id="r", run_dir=tmp_path, class_names=CLASSES)
    path = book.finalize(model)  # stopped before any epoch: the weights so far, without metrics
    assert torch.load(path, weights_only=True)["epoch"] == 0
    book.state.epochs_done = 1
    book.record_evaluation(_result(0.7), model, 1)
    with torch.no_grad():
        model.weight.add_(1.0)
    assert book.finalize(model) == path
    assert not torch.equal(torch.load(path, weights_only=True)["state_dict"]["weight"], model.weight)


def _callbacks(recorder):
    from jupyter_avml.runs.events import CallbackList

    return CallbackList([recorder])
