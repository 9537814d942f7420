"""What the Streams view shows, without Airflow: the open waits grouped by stream, and each stream's progress
read through the triggers' own readers (:class:`~airflow_rtml.streams.flink.FlinkStreamReader` for a Flink job,
:class:`~airflow_rtml.streams.kafka.KafkaProgressConsumer` for a stream on a Kafka progress topic), cached; and
the windows a stream's window sensors emitted, with the DAG runs each scheduled.

A stream is a :data:`StreamKey`: ``("flink", flink_conn_id, job_name, job_id, vertex)`` or
``("kafka", kafka_config_id, topic, stream, expected_sources)``.

**Stalled** means the stream's progress has not moved for :data:`STALL_AFTER_S` seconds of observation (a
shorter view of it says nothing either way), with how long it has been unchanged.

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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from airflow_rtml.progress import Observation

__all__ = ["FLINK_WATERMARK_TRIGGER", "KAFKA_WATERMARK_TRIGGER", "OpenWait", "ProgressCache", "StreamKey", "board",
           "stream_label"]

FLINK_WATERMARK_TRIGGER = "airflow_rtml.triggers.watermark.FlinkWatermarkTrigger"
KAFKA_WATERMARK_TRIGGER = "airflow_rtml.triggers.kafka.KafkaWatermarkTrigger"
#: How many observations per stream the chart shows.
HISTORY = 120
#: Seconds of observed, unchanged progress after which a stream shows as stalled.
STALL_AFTER_S = 60.0
#: Flink ``Long.MAX_VALUE``: the input ended (a drained stop, a bounded source): ended, not stalled.
ENDED_MS = 2**63 - 1

StreamKey = tuple  # ("flink", conn, job_name, job_id, vertex) | ("kafka", conn, topic, stream, expected_sources)


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
                     waiting_since: float | None, kwargs: dict, classpath: str = FLINK_WATERMARK_TRIGGER) -> OpenWait:
        if classpath == KAFKA_WATERMARK_TRIGGER:
            expected = kwargs.get("expected_sources")
            stream: StreamKey = ("kafka", kwargs.get("kafka_config_id") or "kafka_default", kwargs.get("topic"),
                                 kwargs.get("stream"), tuple(sorted(expected)) if expected is not None else None)
        else:
            stream = ("flink", kwargs.get("flink_conn_id") or "flink_default", kwargs.get("job_name"),
                      kwargs.get("job_id"), kwargs.get("vertex"))
        return cls(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index,
                   waiting_since=waiting_since, target_ms=kwargs.get("threshold_ms"), stream=stream)


def stream_label(key: StreamKey) -> str:
    """The stream's name on the page: a Flink job's name (else its id), a Kafka progress stream's name."""
    return (key[3] if key[0] == "kafka" else key[2] or key[3]) or "?"


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

    def unchanged_for(self, key: StreamKey) -> float | None:
        """Seconds the progress has been observed at its current value (from the first of the latest run of
        equal readings to the last reading); None without a reading."""
        points = self._history.get(key)
        if not points:
            return None
        last_t, last_p = points[-1]
        since = last_t
        for t, p in reversed(points):
            if p != last_p:
                break
            since = t
        return last_t - since


async def board(waits: Iterable[OpenWait], cache: ProgressCache, now: float | None = None,
                flink_ui: Callable[[StreamKey], str | None] = lambda _key: None,
                windows: Mapping[str, list[dict]] | None = None) -> dict:
    """The page's data: one entry per stream that an open wait is on, each with its waits, and the windows
    emitted for it (``windows``: by stream name, newest first, each with the runs it scheduled)."""
    windows = windows or {}
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
        unchanged = cache.unchanged_for(key)
        ended = obs.progress_ms == ENDED_MS
        entry = {
            "stream": stream_label(key), "source": key[0], "conn_id": key[1], "state": obs.state,
            "watermark_ms": obs.progress_ms,
            "lag_ms": None if obs.progress_ms is None or ended else int(now * 1000) - obs.progress_ms,
            "rate_ms_per_s": rate, "ended": ended,
            "stalled": not ended and unchanged is not None and unchanged >= STALL_AFTER_S,
            "unchanged_s": unchanged, "observed_at": obs.at, "error": obs.error,
            "history": [p for p in cache.history(key) if p[1] != ENDED_MS],
            "waits": [_wait_row(w, obs, rate, now) for w in sorted(by_stream[key], key=_wait_order)],
            "windows": windows.get(stream_label(key), []),
        }
        if key[0] == "kafka":
            detail = obs.detail or {}
            entry.update(topic=key[2], expected_sources=list(key[4]) if key[4] is not None else None,
                         sources=detail.get("sources", {}), malformed=detail.get("malformed", 0))
        else:
            ui = flink_ui(key)
            entry.update(flink_conn_id=key[1], job_name=key[2], job_id=obs.job_id or key[3], vertex=key[4],
                         last_checkpoint_id=obs.checkpoint_completed_id,
                         flink_ui_url=f"{ui}/#/job/running/{obs.job_id}/overview" if ui and obs.job_id else ui)
        streams.append(entry)
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
