"""The engine's loop on a linear model over random tensors (no images): accumulation, counts, events."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.metrics import multiclass_metrics
from jupyter_avml.runs.events import CallbackList
from jupyter_avml.training.engine import Trainer
from jupyter_avml.training.recipe import Recipe
from tests.conftest import Recorder


class LinearRecipe(Recipe):
    """8 features -> 3 classes; batches are fixed tensors; evaluation = accuracy on the same data."""

    def __init__(self, config, batches, initial_state):
        super().__init__(config, ["a", "b", "c"], [], [])
        self.batches, self.initial_state = batches, initial_state

    def build_model(self):
        model = torch.nn.Linear(8, 3)
        model.load_state_dict(self.initial_state)
        return model

    def train_batches(self, epoch):
        return self.batches

    def num_train_batches(self):
        return len(self.batches)

    def training_loss(self, model, batch, device):
        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y), len(x)

    def evaluate(self, model, device):
        x = torch.cat([b[0] for b in self.batches])
        y = torch.cat([b[1] for b in self.batches])
        probs = torch.softmax(model(x), 1).double().numpy()
        return multiclass_metrics(probs, y.numpy(), self.class_names)


def fit(tmp_path, batches, **settings):
    config = AutoMLImageConfig(task="image-classification", training_data="unused.jsonl", model_name="resnet18",
                               device="cpu", lr_scheduler="step", step_lr_gamma=1.0, momentum=0.0,
                               weight_decay=0.0, early_stopping=0, **settings)
    torch.manual_seed(0)
    initial = torch.nn.Linear(8, 3).state_dict()
    recorder = Recorder()
    trainer = Trainer(LinearRecipe(config, batches, initial), config, run_id="test", run_dir=tmp_path,
                      callbacks=CallbackList([recorder]))
    return trainer.fit(), recorder


def data(sizes):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 8, generator=generator), torch.randint(0, 3, (n,), generator=generator)) for n in sizes]


def test_accumulating_two_half_batches_equals_one_full_batch(tmp_path):
    halves = data([4, 4])
    full = [(torch.cat([halves[0][0], halves[1][0]]), torch.cat([halves[0][1], halves[1][1]]))]
    accumulated, _ = fit(tmp_path / "a", halves, grad_accumulation_step=2, number_of_epochs=3, learning_rate=0.1)
    single, _ = fit(tmp_path / "b", full, grad_accumulation_step=1, number_of_epochs=3, learning_rate=0.1)
    assert accumulated.state.updates_done == single.state.updates_done == 3
    a = torch.load(accumulated.model_path, weights_only=True)["state_dict"]
    b = torch.load(single.model_path, weights_only=True)["state_dict"]
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name


def test_a_partial_accumulation_at_the_end_of_an_epoch_still_updates(tmp_path):
    result, _ = fit(tmp_path, data([4, 4, 4, 4, 4]), grad_accumulation_step=2, number_of_epochs=2,
                    learning_rate=0.1)
    assert result.state.updates_done == 2 * 3  # ceil(5 / 2) updates per epoch


def test_events_come_in_order_and_batch_progress_respects_the_interval(tmp_path):
    _, recorder = fit(tmp_path, data([2] * 7), number_of_epochs=2, log_every_n_batches=3, learning_rate=0.1)
    kinds = [e.kind for e in recorder.events]
    assert kinds[0] == "run_started"
    epoch_one = kinds[1:kinds.index("epoch_metrics") + 1]
    assert epoch_one[0] == "epoch_started" and epoch_one[-1] == "epoch_metrics"
    batches = [e.batch for e in recorder.events if e.kind == "batch_progress" and e.epoch == 1]
    assert batches == [3, 6, 7]
    metrics = [e for e in recorder.events if e.kind == "epoch_metrics"]
    assert [m.epoch for m in metrics] == [1, 2] and all("accuracy" in m.metrics for m in metrics)


def test_a_diverging_loss_is_a_clear_error(tmp_path):
    batches = data([4])
    batches = [(batches[0][0] * np.inf, batches[0][1])]
    with pytest.raises(FloatingPointError, match="lower learning_rate"):
        fit(tmp_path, batches, number_of_epochs=1, learning_rate=0.1)


def test_read_events_leaves_a_partial_line_and_skips_bad_lines_only_when_asked(tmp_path):
    from jupyter_avml.runs.events import EpochStarted, JsonlEventWriter, read_events

    path = tmp_path / "events.jsonl"
    JsonlEventWriter(path).on_event(EpochStarted("r", epoch=1, number_of_epochs=2))
    with open(path, "ab") as handle:  # a worker killed mid-write, then its resumed run appends a whole line
        handle.write(b'{"event": "epoch_sta')
    events, offset = read_events(path)
    assert [e.epoch for e in events] == [1] and offset == len(path.read_bytes()) - len(b'{"event": "epoch_sta')
    JsonlEventWriter(path).on_event(EpochStarted("r", epoch=2, number_of_epochs=2))
    with pytest.raises(ValueError):
        read_events(path, offset)
    skipped = []
    events, end = read_events(path, offset, on_bad_line=lambda line, exc: skipped.append(line))
    assert events == [] and len(skipped) == 1 and end == len(path.read_bytes())
