"""MicroBatcher with a stand-in model: who is batched with whom, and what a failure or a timeout does."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from jupyter_avml.serving.batching import MicroBatcher


class StandIn:
    """A 'model' that records its batches and answers item * 10 (failing on items named 'bad')."""

    def __init__(self, seconds: float = 0.0):
        self.batches: list[tuple] = []
        self.threads: set[str] = set()
        self.seconds = seconds

    def __call__(self, key, items):
        self.threads.add(threading.current_thread().name)
        self.batches.append((key, list(items)))
        time.sleep(self.seconds)
        if "bad" in items:
            raise ValueError("bad item")
        return [item * 10 for item in items]


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 20))


def test_a_request_alone_runs_at_once_on_the_worker_thread():
    model = StandIn()

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=8, max_wait_s=5.0)
        started = time.perf_counter()
        result = await batcher.submit((), [1, 2])
        elapsed = time.perf_counter() - started
        await batcher.close()
        return result, elapsed

    result, elapsed = run(scenario())
    assert result == [10, 20]
    assert elapsed < 1.0, "nothing else was arriving: no wait for company"
    assert model.threads == {"avml-predict_0"}


def test_requests_queued_while_the_model_works_form_the_next_batch_by_settings():
    model = StandIn(seconds=0.2)

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=4, max_wait_s=0.0)
        first = asyncio.create_task(batcher.submit((), [0]))
        await asyncio.sleep(0.05)  # the first batch is running
        others = [asyncio.create_task(batcher.submit(key, [i])) for i, key in
                  enumerate([(), (("t", 1),), (), (), (), ()], start=1)]
        results = await asyncio.gather(first, *others)
        stats = batcher.stats
        await batcher.close()
        return results, stats

    results, stats = run(scenario())
    assert results == [[0], [10], [20], [30], [40], [50], [60]]
    assert model.batches == [((), [0]), ((), [1, 3, 4, 5]), ((("t", 1),), [2]), ((), [6])]
    assert (stats.batches, stats.images, stats.largest_batch) == (4, 7, 4)


def test_a_batch_waits_for_requests_still_arriving_but_not_longer_than_max_wait():
    model = StandIn()

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=8, max_wait_s=0.5)

        async def late(item, delay):
            with batcher.arriving():
                await asyncio.sleep(delay)
            return await batcher.submit((), [item])

        arriving = batcher.arriving()
        arriving.__enter__()  # one request whose body never comes within the wait
        started = time.perf_counter()
        results = await asyncio.gather(batcher.submit((), [1]), late(2, 0.1))
        elapsed = time.perf_counter() - started
        arriving.__exit__(None, None, None)
        await batcher.close()
        return results, elapsed

    results, elapsed = run(scenario())
    assert results == [[10], [20]]
    assert model.batches == [((), [1, 2])], "the late request joined the batch"
    assert 0.45 <= elapsed < 2.0, "then the batch went without the one that never came"


def test_clients_answered_together_are_waited_for_together_but_a_lone_client_is_not():
    """After a batch of three requests, the next batch waits (up to max_wait) for three; a batch of one expects
    no company: the following lone request goes at once."""
    model = StandIn()

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=8, max_wait_s=0.5)
        await asyncio.gather(*(batcher.submit((), [i]) for i in range(3)))  # queued together: one batch of 3

        async def after(delay, item):
            await asyncio.sleep(delay)
            return await batcher.submit((), [item])

        started = time.perf_counter()
        await asyncio.gather(after(0.0, 3), after(0.05, 4), after(0.1, 5))  # the same clients, a little apart
        together = time.perf_counter() - started
        started = time.perf_counter()
        await batcher.submit((), [6])  # the burst is over: this batch waits for two that never come
        waited = time.perf_counter() - started
        started = time.perf_counter()
        await batcher.submit((), [7])  # after a batch of one, a lone request goes at once
        alone = time.perf_counter() - started
        await batcher.close()
        return together, waited, alone

    together, waited, alone = run(scenario())
    assert [items for _, items in model.batches] == [[0, 1, 2], [3, 4, 5], [6], [7]]
    assert together < 0.4, "the batch went as soon as its third request came"
    assert 0.45 <= waited < 2.0 and alone < 0.2


def test_a_failing_batch_is_retried_request_by_request():
    model = StandIn(seconds=0.1)

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=8, max_wait_s=0.0)
        first = asyncio.create_task(batcher.submit((), [0]))
        await asyncio.sleep(0.03)
        good = asyncio.create_task(batcher.submit((), [1]))
        bad = asyncio.create_task(batcher.submit((), ["bad"]))
        outcomes = await asyncio.gather(first, good, bad, return_exceptions=True)
        await batcher.close()
        return outcomes

    first, good, bad = run(scenario())
    assert first == [0] and good == [10]
    assert isinstance(bad, ValueError)
    assert model.batches[1:] == [((), [1, "bad"]), ((), [1]), ((), ["bad"])]


def test_a_request_cancelled_before_its_batch_is_dropped():
    model = StandIn(seconds=0.2)

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=8, max_wait_s=0.0)
        first = asyncio.create_task(batcher.submit((), [0]))
        await asyncio.sleep(0.05)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(batcher.submit((), [99]), 0.05)  # a request timeout
        kept = await batcher.submit((), [2])
        await first
        await batcher.close()
        return kept

    assert run(scenario()) == [20]
    assert [items for _, items in model.batches] == [[0], [2]]


def test_items_are_prepared_on_the_worker_and_a_failed_preparation_is_only_its_jobs():
    model = StandIn(seconds=0.1)

    def prepare(item):
        if item == "undecodable":
            raise ValueError("not an image")
        return int(item)

    async def scenario():
        batcher = MicroBatcher(model, prepare=prepare, max_batch_size=8, max_wait_s=0.0)
        first = asyncio.create_task(batcher.submit((), ["0"]))
        await asyncio.sleep(0.03)
        jobs = [asyncio.create_task(batcher.submit((), items)) for items in (["1", "2"], ["undecodable"], ["3"])]
        outcomes = await asyncio.gather(first, *jobs, return_exceptions=True)
        await batcher.close()
        return outcomes

    first, good, bad, other = run(scenario())
    assert (first, good, other) == ([0], [10, 20], [30])
    assert isinstance(bad, ValueError)
    assert model.batches == [((), [0]), ((), [1, 2, 3])], "prepared once, the failed job left out"
    assert model.threads == {"avml-predict_0"}
