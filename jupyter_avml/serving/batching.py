"""Micro-batching: concurrent requests predicted together, one batch at a time, off the event loop.

A request that arrives while the model is busy waits in a queue; when the model frees up, every queued request
with the same inference settings (up to ``max_batch_size`` images) goes in the next batch. So one client pays
no waiting at all, and N concurrent clients share forward passes instead of queueing for N of them (on a CPU a
batch of 8 costs much less than 8 batches of 1).

The batch also waits up to ``max_wait_s`` for requests that have arrived but whose bodies are still being read
(``arriving``): they would otherwise just miss it. And it waits up to ``max_wait_s`` for as many requests as the
previous batch held: clients answered together send their next requests together, a few milliseconds apart, and
without the wait the first of them would go alone and split the others into smaller batches. A request alone
(after a batch of one) never waits; after a burst ends, one batch waits ``max_wait_s`` in vain, then none does.

Batches run on one worker thread: the event loop keeps accepting, reading and answering requests meanwhile,
and the model (not thread-safe, and already using every core through its own threads) sees one batch at a time.
Each job's items are first ``prepare``-d there (image decoding: one hand-over between threads per batch, not
two per request); a job whose preparation fails gets its own error and the batch goes on without it. A batch
that fails is retried request by request, so that one request's failure is only its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("jupyter_avml.serving")

#: ``run_batch(key, items) -> results``: one result per item, in order; runs on the worker thread.
RunBatch = Callable[[Hashable, Sequence[Any]], Sequence[Any]]
#: ``prepare(item) -> item``: what an item becomes before it is batched (on the worker thread); may raise.
Prepare = Callable[[Any], Any]


@dataclass
class _Job:
    key: Hashable
    items: list[Any]
    future: asyncio.Future
    prepared: bool = False


@dataclass
class BatchStats:
    """What the batcher did (``/metadata`` shows it; the benchmark reads it)."""

    batches: int = 0
    images: int = 0
    requests: int = 0
    largest_batch: int = 0


class MicroBatcher:
    """Gathers concurrent jobs into batches (see the module docstring). Create it inside a running loop."""

    def __init__(self, run_batch: RunBatch, *, prepare: Prepare | None = None, max_batch_size: int = 8,
                 max_wait_s: float = 0.01):
        self.run_batch = run_batch
        self.prepare = prepare
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self.stats = BatchStats()
        self._queue: deque[_Job] = deque()
        self._arriving = 0
        self._last_requests = 0  # requests in the previous batch: the company the next one may expect
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avml-predict")
        self._loop_task: asyncio.Task | None = None

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Mark a request as on its way (its body being read or decoded) for the duration of the block."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            self._wake.set()

    async def submit(self, key: Hashable, items: Sequence[Any]) -> list[Any]:
        """The results of ``items`` (predicted with the settings ``key`` names), once their batch has run.

        Cancelling the caller (a request timeout) drops the job if its batch has not started yet.
        """
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._run_forever())
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(key, list(items), future))
        self._wake.set()
        return await future

    async def run_alone(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the worker thread, between batches (e.g. loading a model)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def _run_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._drop_cancelled():
                await self._gather_company()
                batch = self._take_batch()
                if batch:
                    await self._run(batch)

    def _drop_cancelled(self) -> bool:
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()
        return bool(self._queue)

    async def _gather_company(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        key = self._queue[0].key
        while self._queued_like(key) < self.max_batch_size and \
                (self._arriving > 0 or self._requests_like(key) < self._last_requests):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    def _queued_like(self, key: Hashable) -> int:
        return sum(len(job.items) for job in self._queue if job.key == key and not job.future.done())

    def _requests_like(self, key: Hashable) -> int:
        return sum(1 for job in self._queue if job.key == key and not job.future.done())

    def _take_batch(self) -> list[_Job]:
        """The first job and the queued jobs with its key that fit in ``max_batch_size`` images (a job is never
        split: one larger than the batch size is a batch of its own, chunked by the predictor)."""
        first = self._queue.popleft()
        batch, size = [first], len(first.items)
        kept: deque[_Job] = deque()
        while self._queue:
            job = self._queue.popleft()
            if job.future.done():
                continue
            if job.key == first.key and size + len(job.items) <= self.max_batch_size:
                batch.append(job)
                size += len(job.items)
            else:
                kept.append(job)
        self._queue = kept
        batch = [job for job in batch if not job.future.done()]
        self._last_requests = len(batch)
        return batch

    async def _run(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        try:
            failed, results = await loop.run_in_executor(self._executor, self._work, batch)
        except Exception as exc:  # noqa: BLE001 - handed to the requests that caused it
            if len(batch) > 1:
                for job in batch:  # alone, so that each request gets its own outcome
                    await self._run([job])
                return
            _settle(batch[0].future, error=exc)
            return
        done = [job for job in batch if id(job) not in failed]
        for job in batch:
            if id(job) in failed:
                _settle(job.future, error=failed[id(job)])
        images = sum(len(job.items) for job in done)
        if done:
            self.stats.batches += 1
            self.stats.images += images
            self.stats.requests += len(done)
            self.stats.largest_batch = max(self.stats.largest_batch, images)
        start = 0
        for job in done:
            _settle(job.future, result=list(results[start:start + len(job.items)]))
            start += len(job.items)

    def _work(self, batch: list[_Job]) -> tuple[dict[int, BaseException], Sequence[Any]]:
        """On the worker thread: prepare each job (its failure is its own), then run the batch."""
        failed: dict[int, BaseException] = {}
        for job in batch:
            if self.prepare is None or job.prepared:
                continue
            try:
                job.items = [self.prepare(item) for item in job.items]
                job.prepared = True
            except Exception as exc:  # noqa: BLE001 - this job's answer
                failed[id(job)] = exc
        items = [item for job in batch if id(job) not in failed for item in job.items]
        return failed, (self.run_batch(batch[0].key, items) if items else [])

    async def close(self) -> None:
        """Stop taking batches; the requests still queued get an error."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
        while self._queue:
            _settle(self._queue.popleft().future, error=RuntimeError("the service is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)


def _settle(future: asyncio.Future, *, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
