"""A process-wide coalescing cache: one fetch per key and ``max_age``, shared by every poll loop of an event loop.

In the triggerer this makes the job states of all streams on a cluster cost one ``GET /jobs/overview`` per poll
interval, and their reporter watermarks one scrape per TaskManager, whatever the number of streams or waiters.
Concurrent callers await the same in-flight fetch; a caller that is cancelled does not cancel the others.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

__all__ = ["SHARED", "SharedFetches"]


class SharedFetches:
    """One fetch per key and ``max_age`` per event loop (futures belong to one loop; a finished loop's entries go
    with it)."""

    def __init__(self) -> None:
        self._per_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    async def get(self, key: Hashable, max_age: float, fetch: Callable[[], Awaitable[Any]]) -> Any:
        loop = asyncio.get_running_loop()
        fresh, inflight = self._per_loop.setdefault(loop, ({}, {}))
        if key in fresh and time.monotonic() - fresh[key][0] < max_age:
            return fresh[key][1]
        if key in inflight:
            try:
                return await asyncio.shield(inflight[key])
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():
                    raise
                # The caller that was fetching was cancelled (its stream ended), not this one: fetch here.
                return await self.get(key, max_age, fetch)
        future = inflight[key] = loop.create_future()
        try:
            value = await fetch()
            fresh[key] = (time.monotonic(), value)
            future.set_result(value)
            return value
        except asyncio.CancelledError:
            future.cancel()  # the others fetch again themselves (above)
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del inflight[key]

    def forget(self, key: Hashable) -> None:
        """Drop a cached value of the running event loop (the next :meth:`get` fetches again)."""
        entry = self._per_loop.get(asyncio.get_running_loop())
        if entry is not None:
            entry[0].pop(key, None)


SHARED = SharedFetches()
