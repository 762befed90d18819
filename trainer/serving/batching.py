"""Dynamic batching: concurrent scoring requests merged into one model call.

TF Serving's batching, with its parameter names: requests queue up; a worker
takes what is queued, waits at most `batch_timeout_micros` for more while the
batch is below `max_batch_size` images, and calls the model once for all of
them in a thread (the event loop never blocks). `max_enqueued_images` bounds
the queue: a request that would overflow it is refused at once
(`QueueFullError`, answered 503 + Retry-After), so overload never grows an
unbounded backlog. A timeout of 0 (the default) takes whatever is queued when
the worker frees up: on the 2-core build machine that was the fastest setting
(BENCHMARKS.md), since requests pile up while the previous batch runs anyway.

One bad image never fails its neighbours: when the merged call is rejected,
each request is scored on its own with `scoring.score_with_retry`, which pins
the failure on the image (None) and keeps the rest.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
import dataclasses

import tensorflow as tf

from trainer.inference import scoring

Scores = list[float | None]


class QueueFullError(RuntimeError):
    """The batching queue holds `max_enqueued_images` already: try again shortly."""


@dataclasses.dataclass
class _Pending:
    jpegs: Sequence[bytes]
    future: asyncio.Future


class DynamicBatcher:
    """Merges `score(jpegs)` calls from concurrent requests into batched model calls.

    Args:
        score: the model: JPEG bytes in, p_fake per image out; raises
            tf.errors.InvalidArgumentError for a batch it cannot decode.
        max_batch_size: images per model call (a larger request is cut).
        batch_timeout_micros: how long a non-full batch waits for more requests.
        max_enqueued_images: queued images beyond which requests are refused.
        num_batch_threads: model calls that may run at once.
        on_batch: called with each model call's size (metrics).
    """

    def __init__(
        self,
        score: Callable[[Sequence[bytes]], Sequence[float]],
        *,
        max_batch_size: int = 32,
        batch_timeout_micros: int = 0,
        max_enqueued_images: int = 1024,
        num_batch_threads: int = 1,
        on_batch: Callable[[int], None] | None = None,
    ):
        if max_batch_size < 1 or batch_timeout_micros < 0 or num_batch_threads < 1:
            raise ValueError(
                "Need max_batch_size >= 1, batch_timeout_micros >= 0 and num_batch_threads >= 1; "
                f"got {max_batch_size}, {batch_timeout_micros}, {num_batch_threads}."
            )
        self._score = score
        self.max_batch_size = max_batch_size
        self.timeout = batch_timeout_micros / 1e6
        self.max_enqueued_images = max_enqueued_images
        self._threads = num_batch_threads
        self._on_batch = on_batch or (lambda size: None)
        self._queue: collections.deque[_Pending] = collections.deque()
        self._queued_images = 0
        self._wakeup: asyncio.Event | None = None
        self._workers: list[asyncio.Task] = []

    def start(self) -> None:
        """Starts the workers on the running event loop."""
        self._wakeup = asyncio.Event()
        self._workers = [asyncio.create_task(self._work()) for _ in range(self._threads)]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(QueueFullError("the server is shutting down"))
        self._queue.clear()

    async def submit(self, jpegs: Sequence[bytes]) -> Scores:
        """p_fake per JPEG (None for one the model cannot decode), batched with others."""
        if not jpegs:
            return []
        if self._queued_images + len(jpegs) > self.max_enqueued_images and self._queue:
            raise QueueFullError(
                f"{self._queued_images} images are queued for the model already "
                f"(--max_enqueued_images={self.max_enqueued_images})"
            )
        pending = _Pending(list(jpegs), asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._queued_images += len(jpegs)
        self._wakeup.set()
        return await pending.future

    def _take(self) -> list[_Pending]:
        """Queued requests up to max_batch_size images (at least one request)."""
        taken, size = [], 0
        while self._queue and (
            not taken or size + len(self._queue[0].jpegs) <= self.max_batch_size
        ):
            pending = self._queue.popleft()
            self._queued_images -= len(pending.jpegs)
            taken.append(pending)
            size += len(pending.jpegs)
        return taken

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = self._take()
            deadline = loop.time() + self.timeout
            while self.timeout and sum(len(p.jpegs) for p in batch) < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if not self._queue:
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), remaining)
                    except TimeoutError:
                        break
                more = self._take_up_to(self.max_batch_size - sum(len(p.jpegs) for p in batch))
                if not more and self._queue:
                    break  # The next request does not fit: run what we have.
                batch += more
            await self._run(batch)

    def _take_up_to(self, room: int) -> list[_Pending]:
        taken = []
        while self._queue and len(self._queue[0].jpegs) <= room:
            pending = self._queue.popleft()
            self._queued_images -= len(pending.jpegs)
            room -= len(pending.jpegs)
            taken.append(pending)
        return taken

    async def _run(self, batch: list[_Pending]) -> None:
        live = [pending for pending in batch if not pending.future.cancelled()]
        if not live:
            return
        try:
            results = await asyncio.to_thread(self.score_requests, [p.jpegs for p in live])
        except Exception as error:  # noqa: BLE001  Handed to the requests; the worker lives on.
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        for pending, scores in zip(live, results):
            if not pending.future.done():
                pending.future.set_result(scores)

    def score_requests(self, requests: Sequence[Sequence[bytes]]) -> list[Scores]:
        """Scores several requests' images in model calls of at most max_batch_size images."""
        flat = [jpeg for jpegs in requests for jpeg in jpegs]
        try:
            scores: Scores = []
            for start in range(0, len(flat), self.max_batch_size):
                chunk = flat[start : start + self.max_batch_size]
                self._on_batch(len(chunk))
                scores += [float(p) for p in self._score(chunk)]
        except tf.errors.InvalidArgumentError:
            return [scoring.score_with_retry(self._score, jpegs) for jpegs in requests]
        results, start = [], 0
        for jpegs in requests:
            results.append(scores[start : start + len(jpegs)])
            start += len(jpegs)
        return results


class DirectScorer:
    """The same interface without batching (`--enable_batching=false`): one model call
    per request, in a thread, at most `max_concurrent` at once."""

    def __init__(
        self,
        score: Callable[[Sequence[bytes]], Sequence[float]],
        *,
        max_batch_size: int = 32,
        max_enqueued_images: int = 1024,
        on_batch: Callable[[int], None] | None = None,
    ):
        self._batcher = DynamicBatcher(score, max_batch_size=max_batch_size, on_batch=on_batch)
        self.max_enqueued_images = max_enqueued_images
        self._in_flight = 0

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def submit(self, jpegs: Sequence[bytes]) -> Scores:
        if not jpegs:
            return []
        if self._in_flight + len(jpegs) > self.max_enqueued_images and self._in_flight:
            raise QueueFullError(
                f"{self._in_flight} images are being scored already "
                f"(--max_enqueued_images={self.max_enqueued_images})"
            )
        self._in_flight += len(jpegs)
        try:
            (scores,) = await asyncio.to_thread(self._batcher.score_requests, [list(jpegs)])
        finally:
            self._in_flight -= len(jpegs)
        return scores
