"""What every stream trigger shares: one ``run()`` over the shared-stream pair, a wait that ends at its own
deadline (not when the shared poll loop next answers), and progress lines in the task's log while deferred."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TypeVar

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_rtml.progress import END_OF_STREAM, NO_WATERMARK, Observation, ProgressWait, describe

T = TypeVar("T")

#: While deferred, a wait logs one progress line this often (seconds of wall clock).
PROGRESS_LOG_EVERY_S = 60.0
#: A wait that starts at (or after) its deadline still awaits its first observation this long: it takes its one
#: look (the sensors' look before deferring is such a wait; so is a wait resumed after its deadline).
FIRST_LOOK_GRACE_S = 5.0


async def until_deadline(source: AsyncIterator[T], deadline: float | None) -> AsyncIterator[T | None]:
    """The items of ``source``; then ``None`` once, when the absolute ``deadline`` (epoch s) passes while the
    next item is still awaited (a poll that hangs on retries must not carry a wait past its deadline). A wait
    that starts when its deadline has already passed awaits its first item up to :data:`FIRST_LOOK_GRACE_S`.

    The next item is awaited in the caller's own task under a timeout (a timer per item, no task per item:
    10,000 waits stay cheap); at the deadline the pending read is cancelled, which ends ``source``.
    """
    iterator = aiter(source)
    first = deadline is not None and deadline <= time.time()
    loop = asyncio.get_running_loop()
    while True:
        try:
            if deadline is None:
                item = await anext(iterator)
            else:
                remaining = FIRST_LOOK_GRACE_S if first else max(0.0, deadline - time.time())
                async with asyncio.timeout_at(loop.time() + remaining):
                    item = await anext(iterator)
        except TimeoutError:
            yield None
            return
        except StopAsyncIteration:
            return
        first = False
        yield item


class ProgressLog:
    """A progress line at the wait's first observation that does not end it (so a deferred task's log says at once
    what it waits for and where the stream is), then one per :data:`PROGRESS_LOG_EVERY_S`: progress, threshold,
    distance and a rate-based ETA (event-time ms per wall-clock second, measured over the wait so far)."""

    def __init__(self, log, stream: str, threshold_ms: int, every_s: float = PROGRESS_LOG_EVERY_S):
        self.log, self.stream, self.threshold_ms, self.every_s = log, stream, threshold_ms, every_s
        self._next = time.monotonic()  # the first observation is logged
        self._first: tuple[float, int] | None = None

    def observe(self, wait: ProgressWait, obs: Observation) -> None:
        value = wait.progress.value
        if self._first is None and value not in (None, NO_WATERMARK, END_OF_STREAM):
            self._first = (obs.at, value)
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.every_s
        if value in (None, NO_WATERMARK):
            self.log.info("Waiting for stream %s to reach %s: progress %s%s", self.stream,
                          describe(self.threshold_ms), describe(value), f" ({obs.error})" if obs.error else "")
            return
        distance_s = max(0, self.threshold_ms - value) / 1000
        eta = "unknown"
        if self._first and obs.at > self._first[0] and value > self._first[1]:
            rate = (value - self._first[1]) / 1000 / (obs.at - self._first[0])  # event-time s per wall s
            eta = f"~{distance_s / rate:.0f}s at the current rate" if distance_s else "now"
        self.log.info("Waiting for stream %s to reach %s: progress %s, %.1fs of event time to go, ETA %s",
                      self.stream, describe(self.threshold_ms), describe(value), distance_s, eta)


class SharedStreamTrigger(BaseEventTrigger):
    """Base of the stream triggers: :meth:`run`, used when the triggerer does not share the stream, runs the same
    :meth:`open_shared_stream` / :meth:`filter_shared_stream` pair for this trigger alone and closes both."""

    #: A wait ends with its first event; an AssetWatcher trigger keeps yielding.
    single_event = True

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async with aclosing(self.open_shared_stream(self.serialize()[1])) as stream, \
                aclosing(self.filter_shared_stream(stream)) as events:
            async for event in events:
                yield event
                if self.single_event:
                    return
