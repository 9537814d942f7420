"""Waking only the waits an observation concerns: the triggerer's side of :class:`~airflow_rtml.progress.WakeIndex`.

Airflow's shared streams put every observation of a poll loop into every subscriber's queue. A subscriber that
awaits its queue is woken for each one, so N waits on a stream cost N task wake-ups per poll, nearly all of them
to note "not yet" (at 10,000 waits on a 5 s poll the wake-ups alone cost 3-6 % of a core). Here a wait that has looked
at the newest observation *parks* instead: it awaits a future that the poll loop's :class:`WakeHub` resolves only
when an observation concerns it (a crossing of its threshold, a failure, the end of its job, a stall coming due,
or its periodic look: see the index). Woken, it takes what queued up meanwhile from its queue, in order and
without waiting, and decides on every observation exactly as it would have at once: parking delays looking at
an observation that concerns nobody, it never changes a decision.

A wait parks only when it knows what its queue holds: its last observation is the hub's newest (so it is
subscribed to this loop and has seen everything up to now), and the loop is driven by another task (Airflow's
shared poll; a trigger's own ``run()`` drives its loop itself). Anything else — no hub, a wait that needs every
observation, a test's plain iterator — looks at each observation as it comes. The hub's index holds only the
waits parked on it, and one timer per hub ends those whose deadline passes (a parked wait holds no timer).
Wake-ups are paced, :data:`WAKE_PER_STEP` per event-loop iteration, and each wait's periodic look comes at a
phase of its own: thousands of waits woken by one observation never hold the loop in one stretch.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any

from airflow_rtml.progress import Observation, ProgressWait, WakeIndex

__all__ = ["WakeHub", "decide_parked"]

#: The most a wait at its deadline spends taking what its queue already holds (it never has to wait for it).
_DRAIN_LIMIT_S = 1.0
#: Parked waits woken per event-loop iteration at most: a poll that concerns thousands of waits at once (their
#: periodic looks, one crossing for many) must not keep the loop busy in one stretch, which the triggerer reports
#: as a blocked loop; the rest are woken in the next iterations, in order.
WAKE_PER_STEP = 100
_ENDED = object()  # the source ended (after the observations taken before)
_HUBS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> {shared stream key: WakeHub}
_WAKERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> _Waker


class WakeHub:
    """The parked waits of one shared poll loop (one per stream key and event loop): :meth:`publish` passes the
    loop's observations on and wakes the waits each one concerns; :meth:`park` files a wait until then. One
    timer per hub wakes the parked waits whose deadline passes (a parked wait holds no timer of its own).

    :param key: the shared stream's key (waits find the hub of their stream by it).
    :param drain_every: observations after which a parked wait looks in any case (see
        :class:`~airflow_rtml.progress.WakeIndex`): at most half the subscriber queue, so it never overflows.
    """

    def __init__(self, key: Hashable, drain_every: int):
        self.key = key
        self.index = WakeIndex(drain_every)
        #: The newest observation published (None before the first and after the loop ended).
        self.latest: Observation | None = None
        self._driver: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None  # the deadline (epoch s) the timer is set for

    @staticmethod
    def of(key: Hashable) -> WakeHub | None:
        """The running event loop's hub for the stream ``key``, if its poll loop runs."""
        hubs = _HUBS.get(asyncio.get_running_loop())
        return hubs.get(key) if hubs else None

    @staticmethod
    def same_key(key: Hashable) -> Hashable:
        """``key``, or the equal key object of the running loop's hub for it: the triggerer keeps each trigger's
        key for the trigger's life, and 10,000 waits on a stream then hold one key, not 10,000 equal copies."""
        try:
            hub = WakeHub.of(key)
        except RuntimeError:  # no running event loop
            return key
        return hub.key if hub is not None else key

    async def publish(self, observations: AsyncIterator[Observation]) -> AsyncIterator[Observation]:
        """Pass ``observations`` on, waking the parked waits each one concerns first (they run once the
        observation is in their queues: Airflow fans it out before any other task runs). When the loop ends,
        every parked wait is woken, to meet the end in its queue."""
        hubs = _HUBS.setdefault(asyncio.get_running_loop(), {})
        hubs[self.key] = self
        try:
            async for obs in observations:
                self.latest, self._driver = obs, asyncio.current_task()
                _wake(self.index.observe(obs))
                yield obs
        finally:
            self.latest = self._driver = None
            if hubs.get(self.key) is self:
                del hubs[self.key]
            if self._timer is not None:
                self._timer.cancel()
            _wake(self.index.clear())

    def can_park(self, last: Observation | None) -> bool:
        """Whether a wait whose last observation is ``last`` may park here (see the module docstring)."""
        return last is not None and last is self.latest and self._driver is not asyncio.current_task()

    def park(self, wait: ProgressWait) -> asyncio.Future:
        """A future resolved once an observation published from now on concerns ``wait``, its deadline passed or
        the loop ended; whoever awaits it calls :meth:`unpark` with it afterwards (also when cancelled)."""
        future = asyncio.get_running_loop().create_future()
        self.index.add(future, wait)
        deadline = self.index.next_deadline
        if deadline is not None and (self._timer_at is None or deadline < self._timer_at):
            self._set_timer(deadline)
        return future

    def unpark(self, future: asyncio.Future) -> None:
        """Forget a future of :meth:`park` (resolved or not)."""
        self.index.discard(future)

    def _set_timer(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = deadline
        self._timer = loop.call_at(loop.time() + max(0.0, deadline - time.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        _wake(self.index.expire(time.time()))
        deadline = self.index.next_deadline
        if deadline is not None:
            self._set_timer(deadline)  # early by the clocks' drift: it fires again


class _Waker:
    """Resolves parked waits' futures, :data:`WAKE_PER_STEP` per event-loop iteration (one per loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._pending: deque[asyncio.Future] = deque()
        self._scheduled = False

    def wake(self, futures: list) -> None:
        self._pending.extend(futures)
        if self._pending and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._step)

    def _step(self) -> None:
        for _ in range(min(WAKE_PER_STEP, len(self._pending))):
            future = self._pending.popleft()
            if not future.done():
                future.set_result(None)
        self._scheduled = bool(self._pending)
        if self._scheduled:
            self._loop.call_soon(self._step)


def _wake(futures: list) -> None:
    if futures:
        loop = asyncio.get_running_loop()
        waker = _WAKERS.get(loop)
        if waker is None:
            waker = _WAKERS[loop] = _Waker(loop)
        waker.wake(futures)


async def decide_parked(wait: ProgressWait, source: AsyncIterator[Observation], key: Hashable, *, progress_log,
                        first_look_grace_s: float, to_event: Callable[[dict], Any] = lambda event: event,
                        ) -> AsyncIterator[Any]:
    """``wait``'s decision over the shared stream ``key`` whose observations ``source`` delivers: yields exactly one
    terminal event (``to_event`` of its payload: success, failure, or timeout at the wait's own deadline), like
    :func:`~airflow_rtml.triggers.watermark.decide`, and ``progress_log.observe(wait, obs)`` for each observation
    that does not end it. Between the observations that concern the wait it parks on the stream's
    :class:`WakeHub` (see the module docstring); at the deadline it first looks at what queued up while it was
    parked (published before the deadline). A wait that starts at or after its deadline awaits its first
    observation up to ``first_look_grace_s``.

    One generator per wait, holding no timer while parked: 10,000 waits keep their memory near Airflow's own cost
    of 10,000 subscribed triggers.
    """
    iterator = aiter(source)
    deadline = wait.deadline
    first = deadline is not None and deadline <= time.time()
    may_park = deadline is None or math.isfinite(deadline)  # a NaN deadline ends at once, as until_deadline's
    loop = asyncio.get_running_loop()
    hub: WakeHub | None = None
    last: Observation | None = None
    while True:
        parked = False
        if may_park and last is not None and not wait.needs_every_observation:
            if key is not None:  # until this wait parked once: its stream's hub, if it is this loop's
                hub = WakeHub.of(key)
            if hub is not None and hub.can_park(last):
                parked, key = True, None  # the hub whose newest observation this wait took: its own, for good
                future = hub.park(wait)
                try:
                    await future
                finally:
                    hub.unpark(future)
        batch: list[Observation | None] = []
        try:
            if parked and deadline is not None and time.time() >= deadline:
                raise TimeoutError  # woken by the hub's deadline timer
            when = None
            if deadline is not None:
                when = loop.time() + (first_look_grace_s if first else max(0.0, deadline - time.time()))
            async with asyncio.timeout_at(when):  # one timer for what follows, not one per observation
                batch.append(await anext(iterator))  # after a wake-up it is queued: no wait
                while parked and hub.latest is not None and batch[-1] is not hub.latest:
                    batch.append(await anext(iterator))  # the rest of what queued up while parked
        except TimeoutError:
            if parked:
                batch += await _queued(hub, iterator, batch[-1] if batch else last)
            batch.append(None)
        except StopAsyncIteration:
            batch.append(_ENDED)
        first = False
        for obs in batch:
            if obs is _ENDED:
                return
            event = wait.timeout_event(now=time.time()) if obs is None else wait.evaluate(obs)
            if event is not None:
                yield to_event(event)
                return
            last = obs
            progress_log.observe(wait, obs)
        batch = None  # not kept while parked


async def _queued(hub: WakeHub, iterator: AsyncIterator[Observation], last: Observation) -> list:
    """What a parked wait's queue holds after ``last``, taken without waiting (bounded, in case)."""
    queued: list = []
    try:
        async with asyncio.timeout(_DRAIN_LIMIT_S):  # never yield inside a timeout: it is the task's
            while hub.latest is not None and last is not hub.latest:
                last = await anext(iterator)
                queued.append(last)
    except (TimeoutError, StopAsyncIteration):
        pass
    return queued
