"""What the Streams view shows, without Airflow: the open waits grouped by stream, and each stream's progress
read through :class:`~airflow_rtml.streams.flink.FlinkStreamReader` (the triggers' reader), cached.

**Cached, shared.** :class:`ProgressCache` reads a stream at most once per ``max_age`` seconds, however many
browser tabs ask (one in-flight read per stream: concurrent requests await the same one), so the cluster sees
O(streams) requests per interval, not O(tabs). It keeps a short history per stream for the progress chart and
the ETA of each wait at the current rate.

**No secrets.** Only what an :class:`~airflow_rtml.progress.Observation` says about progress leaves here
(state, watermark, checkpoint, a redacted error); connection ids are shown, never their contents.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from airflow_rtml.progress import Observation

__all__ = ["FLINK_WATERMARK_TRIGGER", "OpenWait", "ProgressCache", "StreamKey", "board"]

FLINK_WATERMARK_TRIGGER = "airflow_rtml.triggers.watermark.FlinkWatermarkTrigger"
#: How many observations per stream the chart shows.
HISTORY = 120

StreamKey = tuple[str, str | None, str | None, str | None]  # (flink_conn_id, job_name, job_id, vertex)


@dataclass(frozen=True)
class OpenWait:
    """One deferred task waiting on a stream's progress (from its trigger's serialized kwargs)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    waiting_since: float | None
    target_ms: int | None
    stream: StreamKey

    @classmethod
    def from_trigger(cls, *, dag_id: str, run_id: str, task_id: str, map_index: int,
                     waiting_since: float | None, kwargs: dict) -> OpenWait:
        return cls(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index,
                   waiting_since=waiting_since, target_ms=kwargs.get("threshold_ms"),
                   stream=(kwargs.get("flink_conn_id") or "flink_default", kwargs.get("job_name"),
                           kwargs.get("job_id"), kwargs.get("vertex")))


def stream_label(key: StreamKey) -> str:
    return key[1] or key[2] or "?"


class ProgressCache:
    """At most one read per stream per ``max_age`` seconds, shared by every request.

    :param read: reads one stream once (e.g. ``FlinkStreamReader.poll_once``); counted in ``reads``.
    """

    def __init__(self, read: Callable[[StreamKey], Awaitable[Observation]], max_age: float = 5.0):
        self._read, self.max_age = read, max_age
        self._last: dict[StreamKey, Observation] = {}
        self._history: dict[StreamKey, deque[tuple[float, int]]] = {}
        self._inflight: dict[StreamKey, asyncio.Future] = {}
        self.reads = 0

    async def get(self, key: StreamKey) -> Observation:
        last = self._last.get(key)
        if last is not None and time.time() - last.at < self.max_age:
            return last
        if key in self._inflight:
            return await asyncio.shield(self._inflight[key])
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            self.reads += 1
            obs = await self._read(key)
            self._last[key] = obs
            if obs.progress_ms is not None:
                self._history.setdefault(key, deque(maxlen=HISTORY)).append((obs.at, obs.progress_ms))
            future.set_result(obs)
            return obs
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else awaits it
            raise
        finally:
            del self._inflight[key]

    def history(self, key: StreamKey) -> list[tuple[float, int]]:
        return list(self._history.get(key, ()))

    def rate(self, key: StreamKey) -> float | None:
        """Event-time milliseconds per wall-clock second over the history, None when not measurable."""
        points = self._history.get(key)
        if not points or len(points) < 2 or points[-1][0] <= points[0][0]:
            return None
        (t0, p0), (t1, p1) = points[0], points[-1]
        return (p1 - p0) / (t1 - t0)


async def board(waits: Iterable[OpenWait], cache: ProgressCache, now: float | None = None,
                flink_ui: Callable[[StreamKey], str | None] = lambda _key: None) -> dict:
    """The page's data: one entry per stream that an open wait is on, each with its waits."""
    now = time.time() if now is None else now
    by_stream: dict[StreamKey, list[OpenWait]] = {}
    unrendered = 0
    for wait in waits:
        if any(isinstance(part, str) and "{{" in part for part in wait.stream):
            # A wait started in the triggerer (start_from_trigger): its trigger row holds the task's arguments
            # unrendered; the triggerer renders them in memory only. Counted, not read as a stream of that name.
            unrendered += 1
            continue
        by_stream.setdefault(wait.stream, []).append(wait)
    keys = sorted(by_stream, key=lambda k: tuple(x or "" for x in k))
    observations = await asyncio.gather(*(cache.get(k) for k in keys))
    streams = []
    for key, obs in zip(keys, observations):
        rate = cache.rate(key)
        ui = flink_ui(key)
        streams.append({
            "stream": stream_label(key), "flink_conn_id": key[0], "job_name": key[1], "job_id": obs.job_id or key[2],
            "vertex": key[3], "state": obs.state, "watermark_ms": obs.progress_ms,
            "lag_ms": None if obs.progress_ms is None else int(now * 1000) - obs.progress_ms,
            "rate_ms_per_s": rate, "stalled": rate is not None and rate <= 0,
            "last_checkpoint_id": obs.checkpoint_completed_id, "observed_at": obs.at, "error": obs.error,
            "history": cache.history(key),
            "flink_ui_url": f"{ui}/#/job/running/{obs.job_id}/overview" if ui and obs.job_id else ui,
            "waits": [_wait_row(w, obs, rate, now) for w in sorted(by_stream[key], key=_wait_order)],
        })
    return {"generated_at": now, "streams": streams, "unrendered_waits": unrendered}


def _wait_order(wait: OpenWait) -> tuple:
    return wait.dag_id, wait.run_id, wait.task_id, wait.map_index


def _wait_row(wait: OpenWait, obs: Observation, rate: float | None, now: float) -> dict:
    eta_s = None
    if wait.target_ms is not None and obs.progress_ms is not None:
        remaining = wait.target_ms - obs.progress_ms
        if remaining <= 0:
            eta_s = 0.0
        elif rate is not None and rate > 0:
            eta_s = remaining / rate
    return {"dag_id": wait.dag_id, "run_id": wait.run_id, "task_id": wait.task_id, "map_index": wait.map_index,
            "target_ms": wait.target_ms, "waiting_since": wait.waiting_since,
            "waiting_s": None if wait.waiting_since is None else now - wait.waiting_since, "eta_s": eta_s}
