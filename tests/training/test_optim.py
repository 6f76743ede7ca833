"""Optimizers, schedules, accumulation and loss weights of the engine (no data, tiny tensors)."""

from __future__ import annotations

import math

import pytest
import torch

from jupyter_avml.config import AutoMLImageConfig
from jupyter_avml.training.classification import class_weights
from jupyter_avml.training.optim import build_optimizer, build_scheduler, lr_factor


def cfg(**kw):
    return AutoMLImageConfig(task="image-classification", training_data="x.jsonl", model_name="resnet18", **kw)


def test_warmup_cosine_rises_linearly_then_follows_the_cosine():
    config = cfg(number_of_epochs=10, warmup_cosine_lr_warmup_epochs=2, warmup_cosine_lr_cycles=0.45)
    per_epoch = 5
    assert lr_factor(config, 0, per_epoch) == 0.0
    assert lr_factor(config, 5, per_epoch) == pytest.approx(0.5)
    assert lr_factor(config, 10, per_epoch) == pytest.approx(1.0)
    # halfway through the cosine part: progress 0.5 -> 0.5 * (1 + cos(pi * 0.45))
    assert lr_factor(config, 30, per_epoch) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.45)))
    assert lr_factor(config, 50, per_epoch) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9)))
    values = [lr_factor(config, u, per_epoch) for u in range(10, 51)]
    assert values == sorted(values, reverse=True)  # never rises again after the warm-up


def test_step_schedule_counts_epochs_not_updates():
    config = cfg(lr_scheduler="step", step_lr_gamma=0.5, step_lr_step_size=2, number_of_epochs=6)
    factors = [lr_factor(config, u, 3) for u in range(18)]
    assert factors == [1.0] * 6 + [0.5] * 6 + [0.25] * 6


def test_scheduler_drives_the_optimizer_learning_rate():
    config = cfg(learning_rate=0.1, number_of_epochs=2, warmup_cosine_lr_warmup_epochs=1)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer([param], config)
    scheduler = build_scheduler(optimizer, config, updates_per_epoch=4)
    seen = []
    for _ in range(8):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[:5] == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1])


@pytest.mark.parametrize("name, cls, expected", [
    ("sgd", torch.optim.SGD, dict(momentum=0.8, nesterov=True, weight_decay=0.01)),
    ("adam", torch.optim.Adam, dict(betas=(0.85, 0.99), amsgrad=True, weight_decay=0.01)),
    ("adamw", torch.optim.AdamW, dict(betas=(0.85, 0.99), amsgrad=True, weight_decay=0.01)),
])
def test_optimizer_settings_are_passed_through(name, cls, expected):
    config = cfg(optimizer=name, learning_rate=0.02, momentum=0.8, nesterov=1, beta1=0.85, beta2=0.99, amsgrad=1,
                 weight_decay=0.01)
    frozen, trained = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    frozen.requires_grad_(False)
    optimizer = build_optimizer([frozen, trained], config)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.02 and group["params"] == [trained]
    for key, value in expected.items():
        assert group[key] == value, key


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_cpu_parameters_get_the_fused_step_and_it_matches_the_loop(name):
    """torch fuses only GPU steps by itself; ours are fused on a CPU too, to the loop's result."""
    from jupyter_avml.training.optim import fused_kwargs

    config = cfg(optimizer=name, learning_rate=0.1, momentum=0.9, weight_decay=0.01)
    start = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    fused_param, loop_param = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    fused = build_optimizer([fused_param], config)
    assert fused.param_groups[0]["fused"] is True
    loop = build_optimizer([loop_param], config)
    loop.param_groups[0]["fused"] = False  # torch's own choice on a CPU: the loop over the tensors
    for step in range(3):
        for param, optimizer in ((fused_param, fused), (loop_param, loop)):
            param.grad = torch.full_like(param, 0.5 + step)
            optimizer.step()
    torch.testing.assert_close(fused_param, loop_param)
    assert fused_kwargs([torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))]) == {"fused": True}
    assert fused_kwargs([torch.nn.Parameter(torch.zeros(1, device="meta"))]) == {}


def test_sgd_without_momentum_cannot_be_nesterov():
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg(momentum=0.0, nesterov=1))
    assert optimizer.param_groups[0]["nesterov"] is False


def test_class_weights_for_both_classification_tasks():
    targets = torch.tensor([0, 0, 0, 1])  # 4 samples, 3 classes (class 2 absent)
    assert class_weights(targets, 3, False, 0) is None
    full = class_weights(targets, 3, False, 2)
    assert full.tolist() == pytest.approx([4 / (3 * 3), 4 / (3 * 1), 0.0])
    assert class_weights(targets, 3, False, 1).tolist() == pytest.approx([math.sqrt(v) for v in full.tolist()])
    multi = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    assert class_weights(multi, 2, True, 2).tolist() == pytest.approx([1 / 3, 3.0])
