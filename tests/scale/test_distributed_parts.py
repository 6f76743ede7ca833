"""The parts of DDP training, each alone: the data split across ranks, the rank context over gloo with two
processes (one update equals a single process's update on the same global batch), and the launcher's
supervision of rank processes (a rank that dies ends the others and is named)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from jupyter_avml.training.distributed import GlobalBatchShards, sharded_loader


class Indices(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


@pytest.mark.parametrize("n, batch, world", [(40, 8, 2), (37, 8, 2), (35, 8, 2), (50, 12, 3)])
def test_the_ranks_share_out_exactly_the_global_batches_of_one_process(n, batch, world):
    """Same seeded order, draw for draw, as ``DataLoader(shuffle=True, generator=...)`` in one process."""
    for epoch in range(2):
        single = [b.tolist() for b in torch.utils.data.DataLoader(
            Indices(n), batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(11 + epoch))]
        shards = [[b.tolist() for b in sharded_loader(Indices(n), batch, generator=torch.Generator().manual_seed(
            11 + epoch), drop_last=False, rank=rank, world=world)] for rank in range(world)]
        usable = [b for b in single if len(b) >= 2 * world]  # a short last batch is skipped on every rank
        assert all(len(s) == len(usable) for s in shards)
        for k, global_batch in enumerate(usable):
            parts = [shards[rank][k] for rank in range(world)]
            assert sorted(sum(parts, [])) == sorted(global_batch)
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
        sampler = torch.utils.data.BatchSampler(range(n), batch, False)
        assert len(GlobalBatchShards(sampler, 0, world)) == len(usable)


STEP_SCRIPT = r"""
import os, sys, torch
from jupyter_avml.training.distributed import RankContext
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
context = RankContext.join(rank, world, "cpu", timeout_s=60)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
net = context.wrap(model)
optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
g = torch.Generator().manual_seed(1)
x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
mine = list(range(16))[rank::world]
loss = torch.nn.functional.cross_entropy(net(x[mine]), y[mine])
loss.backward()
optimizer.step()
mean = context.mean_loss(float(loss) * len(mine), len(mine))
stop = context.any(rank == 1)
decision = context.share(("early_terminated", "policy") if rank == 0 else None)
if rank == 0:
    torch.save({"params": [p.detach() for p in context.bare(net).parameters()], "mean": mean, "stop": stop,
                "decision": decision}, sys.argv[1])
else:
    assert stop and decision == ("early_terminated", "policy")
context.leave()
"""


@pytest.mark.slow  # two processes importing torch: seconds on an idle machine, more on a shared one
def test_one_ddp_update_over_gloo_equals_one_process_on_the_global_batch(tmp_path):
    from jupyter_avml.training.ddp_launch import free_port

    script = tmp_path / "step.py"
    script.write_text(STEP_SCRIPT)
    out = tmp_path / "rank0.pt"
    port = str(free_port())
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    ranks = [subprocess.Popen([sys.executable, str(script), str(out)], env={**env, "RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in range(2)]
    try:
        outputs = [r.communicate(timeout=120)[0].decode() for r in ranks]
    finally:
        for r in ranks:
            r.kill()
    assert [r.returncode for r in ranks] == [0, 0], outputs
    got = torch.load(out)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    for mine, single in zip(got["params"], model.parameters(), strict=True):
        torch.testing.assert_close(mine, single.detach(), rtol=1e-5, atol=1e-6)
    assert got["mean"] == pytest.approx(float(loss.detach()), rel=1e-6)
    assert got["stop"] is True and got["decision"] == ("early_terminated", "policy")


def test_a_rank_that_dies_ends_the_others_and_is_named(tmp_path):
    from jupyter_avml.training.ddp_launch import _Rank, supervise

    sleeper = [sys.executable, "-c", "import time; print('rank up', flush=True); time.sleep(60)"]
    ranks = []
    for rank in range(3):
        log = tmp_path / f"rank{rank}.log"
        with open(log, "wb") as out:
            ranks.append(_Rank(rank, subprocess.Popen(sleeper, stdout=out, stderr=subprocess.STDOUT), log))
    ticks = []
    started = time.monotonic()

    def tick():
        ticks.append(time.monotonic())
        if len(ticks) == 3:
            time.sleep(0.5)  # the rank has printed its first line
            os.kill(ranks[1].process.pid, signal.SIGKILL)

    error = supervise(ranks, on_tick=tick, stop_requested=lambda: False)
    assert error.startswith(f"DDP rank 1 of 3 (pid {ranks[1].process.pid}) killed by signal 9 (SIGKILL)")
    assert "rank up" in error
    assert all(r.process.poll() is not None for r in ranks)  # the others were ended
    assert time.monotonic() - started < 30


def test_a_rank_that_raised_is_named_with_its_own_error_and_a_late_failure_is_only_logged(tmp_path):
    from jupyter_avml.training.ddp_launch import _Rank, supervise

    raising = ("import sys, time; time.sleep(0.5); print('Traceback (most recent call last):'); "
               "print('jupyter_avml.errors.TrainingDivergedError: training loss is nan at epoch 1, batch 2'); "
               "print('[W rank] destroy_process_group'); sys.exit(1)")
    waiting = "import time; time.sleep(30)"

    def start(scripts):
        ranks = []
        for rank, script in enumerate(scripts):
            log = tmp_path / f"{len(scripts)}-{rank}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen([sys.executable, "-c", script], stdout=out, stderr=subprocess.STDOUT)
            ranks.append(_Rank(rank, process, log))
        return ranks

    ranks = start([waiting, raising])
    error = supervise(ranks, on_tick=lambda: None, stop_requested=lambda: False)
    assert error == (f"jupyter_avml.errors.TrainingDivergedError: training loss is nan at epoch 1, batch 2 "
                     f"(DDP rank 1 of 2 (pid {ranks[1].process.pid}) exited with code 1)")
    assert ranks[0].process.returncode is not None

    # rank 0 finished the run; a rank failing afterwards (leaving the group) does not fail it
    ranks = start(["pass", raising])
    assert supervise(ranks, on_tick=lambda: None, stop_requested=lambda: False) is None
