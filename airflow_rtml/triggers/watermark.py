"""Watermark triggers: wait, in the triggerer, until a stream's event-time progress reaches a threshold.

A *stream* is a Flink job (by name, so the wait survives an upgrade that replaces the job id; or by id), read
through the JobManager's REST API, or a Kafka progress topic (see :mod:`airflow_rtml.triggers.kafka`). Its
*progress* is the minimum watermark over its parallel parts (:mod:`airflow_rtml.progress`). A wait for
"window ``[start, end)`` closed" waits for ``progress >= end - 1 + lateness`` (:func:`~airflow_rtml.progress.threshold_for`).

**One poll loop per stream.** The triggers are ``BaseEventTrigger`` subclasses with a
``shared_stream_key()``: in one triggerer process, every waiter on the same (connection, job, vertex, metric,
commit-awareness, poll interval) shares a single poll loop (:meth:`open_shared_stream`) whose snapshots are
fanned out to each waiter's :meth:`filter_shared_stream`. N waiters cost the REST calls of one.

**Event payload** (public API, stable): ``{"status": "success" | "failed" | "timeout", "reason": FailureReason
| None, "job_id", "stream", "progress_ms": int | None, "progress": str, "threshold_ms": int, "checkpoint_id":
int | None, "checkpoint_trigger_ms": int | None, "last_event_time_ms": int | None (the highest progress seen
before the input ended: equals ``progress_ms`` unless that is ``Long.MAX_VALUE``), "crossed_at_ms": int | None (wall clock when the crossing was
first observed), "message": str, "root_cause": str | None, "state": str | None}``.

Guarantees: fires only when the observed progress is ``>= threshold_ms`` (never early); a lower value after
a failover never un-fires it; in commit-aware mode it also waits for a checkpoint *triggered after* the
crossing was observed, so an exactly-once sink has committed the window. A FAILED/CANCELED job fails the wait
at its next poll with Flink's root cause; a RUNNING stream whose progress does not move for ``stall_timeout``
seconds fails it with ``reason="stalled"`` (never a silent hang); JobManager outages are retried until the
absolute ``deadline``, which survives triggerer restarts. Not guaranteed: read through the JobManager, the
metric is up to ``metrics.fetcher.update-interval`` (1 s on the local stack) old, so a crossing is seen that
much later; read from the TaskManagers' Prometheus reporters (connection extra ``metrics_reporter_port`` or
``metrics_reporter_urls``) it is live, and one scrape per TaskManager serves every job on the cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import aclosing
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TaskSuccessEvent, TriggerEvent

from airflow_rtml.exceptions import FlinkApiError, FlinkConfigurationError, FlinkConnectionError, FlinkJobNotFound
from airflow_rtml.hooks.flink import (
    REPORTER_INPUT_WATERMARK,
    FlinkRestHook,
    JobDetail,
    JobOverview,
    JobState,
    short_cause,
)
from airflow_rtml.progress import (
    END_OF_STREAM,
    NO_WATERMARK,
    MonotoneProgress,
    ProgressParseError,
    StallDetector,
    closed_windows,
    combine,
    describe,
    parse_watermark,
    window_of,
)
from airflow_rtml.triggers.flink import EventStatus, FailureReason, make_event

INPUT_WATERMARK = "currentInputWatermark"
log = logging.getLogger(__name__)


def sink_vertices(detail: JobDetail, plan: dict) -> list[str]:
    """Ids of the vertices nothing consumes from (the job's last stage): their input watermark is the job's
    output progress."""
    consumed = {inp["id"] for node in plan.get("nodes", []) for inp in node.get("inputs", []) or []}
    return [v.vertex_id for v in detail.vertices if v.vertex_id not in consumed]


def pick_vertices(detail: JobDetail, plan: dict, vertex: str | None) -> list[str]:
    """The vertices whose watermark is the stream's progress: ``vertex`` (an id, or a substring of the
    vertex name, e.g. an operator name), else the sink vertices."""
    if not vertex:
        return sink_vertices(detail, plan)
    matches = [v.vertex_id for v in detail.vertices if vertex == v.vertex_id or vertex in v.name]
    if not matches:
        raise FlinkConfigurationError(
            f"Job {detail.name!r} ({detail.job_id}) has no vertex matching {vertex!r}. To fix this, use a vertex "
            f"id or part of a vertex name; its vertices are: {[v.name for v in detail.vertices]}"
        )
    return matches


class SharedFetches:
    """One fetch per key and ``max_age``, shared by every poll loop of an event loop (the triggerer's): the job
    states of all streams on a cluster cost one ``GET /jobs/overview`` per poll interval, and their reporter
    watermarks one scrape per TaskManager, whatever the number of streams. Concurrent callers await the same
    in-flight fetch."""

    def __init__(self) -> None:
        # Per event loop (futures belong to one loop); a finished loop's entries go with it.
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
#: How long a TaskManager list found through ``GET /taskmanagers`` is reused (reporter discovery).
REPORTER_DISCOVERY_MAX_AGE = 30.0
_REPORTER_ERRORS: dict[str, str] = {}


async def jobs_overview(hook: FlinkRestHook, max_age: float) -> list[JobOverview]:
    """Every job's state on the hook's cluster, through :data:`SHARED`."""
    return await SHARED.get(("jobs", hook.conn_id), max_age, hook.a_list_jobs)


async def reporter_watermarks(hook: FlinkRestHook, max_age: float) -> dict | None:
    """Every task's ``currentInputWatermark`` from the cluster's TaskManager reporters, through :data:`SHARED`
    (one scrape per TaskManager and ``max_age``); ``None`` if the connection names no reporter. A reporter that
    does not answer is skipped (its tasks then count as unknown) unless none answers."""
    urls = await SHARED.get(("reporter-urls", hook.conn_id), REPORTER_DISCOVERY_MAX_AGE, hook.a_reporter_urls)
    if not urls:
        return None

    async def scrape_all() -> dict:
        results = await asyncio.gather(*(hook.a_scrape_reporter_watermarks(u) for u in urls), return_exceptions=True)
        for url in set(_REPORTER_ERRORS) - set(urls):  # TaskManagers that are gone
            del _REPORTER_ERRORS[url]
        errors = [r for r in results if isinstance(r, Exception)]
        if errors and len(errors) == len(results):
            if isinstance(errors[0], FlinkApiError) and not isinstance(errors[0], FlinkConnectionError):
                raise errors[0]  # an answer we cannot read: the message says which
            raise FlinkConnectionError(
                f"No Flink metric reporter answered ({', '.join(urls)}): {errors[0]}. To fix this, check the "
                f"connection's metrics_reporter_port / metrics_reporter_urls and that the TaskManagers run "
                "org.apache.flink.metrics.prometheus.PrometheusReporterFactory on that port."
            )
        merged: dict = {}
        for url, part in zip(urls, results):
            if isinstance(part, BaseException):
                if _REPORTER_ERRORS.get(url) != str(part):  # once per error, not once per poll
                    log.warning("Flink metric reporter %s skipped (its tasks count as unknown): %s", url, part)
                _REPORTER_ERRORS[url] = str(part)
                continue
            _REPORTER_ERRORS.pop(url, None)
            for key, subtasks in part.items():
                into = merged.setdefault(key, {})
                for index, (attempt, value) in subtasks.items():
                    if index not in into or into[index][0] <= attempt:
                        into[index] = (attempt, value)
        return merged

    return await SHARED.get(("reporters", hook.conn_id), max_age, scrape_all)


class FlinkProgressPoller:
    """The shared poll loop of one Flink stream: yields a snapshot (plain dict) every ``poll_interval``.

    Snapshot: ``{"at": epoch s, "job_id", "state", "progress_ms", "checkpoint_id", "checkpoint_trigger_ms",
    "root_cause", "error", "error_kind": None | "unreachable" | "not_found" | "api" | "config"}``.
    Requests per poll of a RUNNING job: one watermark call per picked vertex (+ checkpoints when commit-aware);
    the job's state comes from the process-wide :data:`SHARED` overview (one request per cluster per interval,
    whatever the number of streams); detail and plan once per job id; the root cause only on failure.
    An unreachable JobManager is logged once per stream, not once per waiter.
    """

    def __init__(self, *, flink_conn_id: str, job_name: str | None, job_id: str | None, vertex: str | None,
                 metric: str, commit_aware: bool, poll_interval: float):
        self.hook = FlinkRestHook(flink_conn_id)  # replaceable by a hook whose connection is already resolved
        self.job_name, self.fixed_job_id, self.vertex, self.metric = job_name, job_id, vertex, metric
        self.commit_aware, self.poll_interval = commit_aware, poll_interval
        self._job_id: str | None = job_id
        self._vertices: dict[str, list[str]] = {}
        self._parallelism: dict[str, int] = {}
        self._reread_at = 0.0
        self._last_error: str | None = None

    async def snapshots(self) -> AsyncIterator[dict]:
        async with self.hook.a_session():
            while True:
                yield await self.poll_once()
                await asyncio.sleep(self.poll_interval)

    async def poll_once(self) -> dict:
        snap: dict[str, Any] = {"at": time.time(), "job_id": self._job_id, "state": None, "progress_ms": None,
                                "checkpoint_id": None, "checkpoint_trigger_ms": None, "root_cause": None,
                                "error": None, "error_kind": None}
        try:
            await self._poll(snap)
        except FlinkJobNotFound as exc:
            snap.update(error=str(exc), error_kind="not_found")
        except FlinkConnectionError as exc:
            snap.update(error=str(exc), error_kind="unreachable")
        except FlinkApiError as exc:
            transient = exc.status_code is not None and exc.status_code >= 500
            snap.update(error=str(exc), error_kind="unreachable" if transient else "api")
        except FlinkConfigurationError as exc:
            snap.update(error=str(exc), error_kind="config")
        except ProgressParseError as exc:  # a watermark value we cannot read: say which, do not guess
            snap.update(error=str(exc), error_kind="api")
        if snap["error_kind"] == "unreachable" and snap["error"] != self._last_error:
            log.warning("Stream %s: Flink not reachable, retrying until each waiter's deadline: %s",
                        self.job_name or self.fixed_job_id, snap["error"])
        self._last_error = snap["error"]
        return snap

    async def _poll(self, snap: dict) -> None:
        jobs = await jobs_overview(self.hook, max_age=self.poll_interval * 0.9)
        if self.fixed_job_id is None and self._job_id is None:
            self._job_id = self._resolve_name(jobs)
        snap["job_id"] = self._job_id
        job = next((j for j in jobs if j.job_id == self._job_id), None)
        if job is None:
            raise FlinkJobNotFound(
                f"Flink has no job {self._job_id}. To fix this, check the job id (it changes on every submit: wait "
                "on the job's name instead) or whether the job's history expired.", job_id=self._job_id,
            )
        snap["state"] = job.state.value
        if job.state.is_failure:
            for _ in range(20):  # the overview reports FAILED before the archived exception history exists
                snap["root_cause"] = await self.hook.a_get_root_cause(self._job_id)
                if snap["root_cause"]:
                    break
                await asyncio.sleep(0.25)
        if job.state.is_terminal and self.fixed_job_id is None:
            self._job_id = None  # by name: the next poll looks for a newer job of that name (an upgrade)
            return
        if job.state is not JobState.RUNNING:
            return
        if self._job_id not in self._vertices:
            detail = await self.hook.a_get_job(self._job_id)
            plan = await self.hook.a_get_job_plan(self._job_id)
            picked = pick_vertices(detail, plan, self.vertex)
            self._vertices = {self._job_id: picked}
            self._parallelism = {v.vertex_id: v.parallelism for v in detail.vertices if v.vertex_id in picked}
        reported = None
        if self.metric == INPUT_WATERMARK:
            reported = await reporter_watermarks(self.hook, max_age=self.poll_interval * 0.9)
        parts: list[int | None] = []
        for vertex_id in self._vertices[self._job_id]:
            if reported is not None:
                parts.append(self._from_reporters(reported, vertex_id))
            elif self.metric == INPUT_WATERMARK:
                values = await self.hook.a_get_vertex_watermarks(self._job_id, vertex_id)
                per_subtask = [parse_watermark(v, origin=f"Flink metric {k!r}") for k, v in values.items()
                               if k.endswith("." + INPUT_WATERMARK)]
                parts.append(combine(per_subtask))
            else:
                agg = await self.hook.a_get_subtask_metrics(self._job_id, vertex_id, [self.metric], "min")
                parts.append(parse_watermark(agg.get(self.metric), origin=f"Flink metric {self.metric!r}"))
        snap["progress_ms"] = combine(parts)
        if self.commit_aware:
            cp = await self.hook.a_get_checkpoints(self._job_id)
            snap["checkpoint_id"], snap["checkpoint_trigger_ms"] = cp.latest_completed_id, cp.latest_completed_trigger_ms

    def _from_reporters(self, reported: dict, vertex_id: str) -> int | None:
        """A vertex's progress from the reporters: the minimum over all its subtasks, or None (unknown) unless
        every subtask of the current parallelism reported: a missing one (on a TaskManager that did not answer,
        or not yet registered after a failover) must not raise the minimum."""
        subtasks = reported.get((self._job_id, vertex_id), {})
        expected = self._parallelism.get(vertex_id, 1)
        if set(subtasks) != set(range(expected)):
            # Missing subtasks: still deploying, a TaskManager that did not answer or is new, or the job was
            # rescaled (then indices >= the known parallelism show up, or the missing ones never come).
            if time.monotonic() - self._reread_at > REPORTER_DISCOVERY_MAX_AGE / 3:
                self._reread_at = time.monotonic()
                self._vertices.pop(self._job_id, None)  # parallelism from the job's detail again, next poll
                SHARED.forget(("reporter-urls", self.hook.conn_id))
            return None
        return combine(parse_watermark(value, origin=f"Flink reporter {REPORTER_INPUT_WATERMARK} of subtask {i}")
                       for i, (_, value) in subtasks.items())

    def _resolve_name(self, all_jobs: list[JobOverview]) -> str:
        jobs = [j for j in all_jobs if j.name == self.job_name]
        if not jobs:
            raise FlinkJobNotFound(
                f"No Flink job is named {self.job_name!r}. To fix this, check the name (the job's pipeline.name) "
                "or submit the job before waiting on its progress.", job_name=self.job_name,
            )
        active = [j for j in jobs if not j.state.is_terminal]
        return max(active or jobs, key=lambda j: j.start_time_ms).job_id


class ProgressWait:
    """One waiter's view of a stream's snapshots: decides when (and how) the wait ends. Pure, clock injected."""

    def __init__(self, *, stream: str, threshold_ms: int, commit_aware: bool, stall_timeout: float | None,
                 deadline: float | None, by_name: bool, now: float):
        self.stream, self.threshold_ms, self.commit_aware = stream, threshold_ms, commit_aware
        self.deadline, self.by_name = deadline, by_name
        self.progress = MonotoneProgress()
        self.stall = StallDetector(stall_timeout, now) if stall_timeout else None
        self.crossed_at_ms: float | None = None
        self.last_event_time = MonotoneProgress()  # progress before the input ended (Long.MAX_VALUE)

    def _event(self, status: EventStatus, snap: dict, message: str, reason: FailureReason | None = None) -> dict:
        return make_event(
            status, snap.get("job_id") or "", message, snap.get("state"), reason, snap.get("root_cause"),
            stream=self.stream, progress_ms=self.progress.value, progress=describe(self.progress.value),
            threshold_ms=self.threshold_ms, checkpoint_id=snap.get("checkpoint_id"),
            checkpoint_trigger_ms=snap.get("checkpoint_trigger_ms"),
            crossed_at_ms=int(self.crossed_at_ms) if self.crossed_at_ms is not None else None,
            last_event_time_ms=self.last_event_time.value,
        )

    def evaluate(self, snap: dict) -> dict | None:
        """The terminal event this snapshot causes, or None while the wait goes on."""
        now = snap["at"]
        kind = snap.get("error_kind")
        if kind in ("not_found", "api", "config"):
            reason = FailureReason.JOB_NOT_FOUND if kind == "not_found" else FailureReason.API_ERROR
            return self._event(EventStatus.FAILED, snap, snap["error"], reason)
        state = JobState(snap["state"]) if snap.get("state") else None
        if state is not None and state.is_failure:
            return self._event(
                EventStatus.FAILED, snap,
                f"Stream {self.stream}: Flink job {snap['job_id']} is {state.value} while waiting for progress "
                f">= {describe(self.threshold_ms)}. Root cause:\n{short_cause(snap.get('root_cause'))}",
                FailureReason.JOB_FAILED,
            )
        self.progress.observe(snap.get("progress_ms"))
        if snap.get("progress_ms") not in (None, NO_WATERMARK, END_OF_STREAM):
            self.last_event_time.observe(snap["progress_ms"])
        reached = self.progress.value is not None and self.progress.value >= self.threshold_ms
        if reached:
            if self.crossed_at_ms is None:
                self.crossed_at_ms = now * 1000
            committed = (snap.get("checkpoint_trigger_ms") or 0) > self.crossed_at_ms
            if not self.commit_aware or committed:
                what = f" and checkpoint {snap.get('checkpoint_id')} committed it" if self.commit_aware else ""
                return self._event(EventStatus.SUCCESS, snap,
                                   f"Stream {self.stream} reached {describe(self.progress.value)} "
                                   f"(>= {describe(self.threshold_ms)}){what}")
        elif state is JobState.RUNNING and self.stall and self.stall.observe(snap.get("progress_ms"), now):
            return self._event(
                EventStatus.FAILED, snap,
                f"Stream {self.stream} is stalled: progress {describe(self.stall.last_progress)} has not moved "
                f"for {self.stall.stalled_for:.0f}s (target {describe(self.threshold_ms)}). To fix this, check "
                "for an idle source or a stuck partition (Flink's source idleness / watermark alignment).",
                FailureReason.STALLED,
            )
        if state is JobState.FINISHED and not self.by_name and not reached:
            return self._event(
                EventStatus.FAILED, snap,
                f"Stream {self.stream}: Flink job {snap['job_id']} FINISHED at progress "
                f"{describe(self.progress.value)}, before {describe(self.threshold_ms)}",
                FailureReason.UNEXPECTED_STATE,
            )
        if self.deadline is not None and now >= self.deadline:
            last = f"; last error: {snap['error']}" if snap.get("error") else ""
            return self._event(
                EventStatus.TIMEOUT, snap,
                f"Stream {self.stream} did not reach {describe(self.threshold_ms)} before the deadline "
                f"(progress {describe(self.progress.value)}){last}",
            )
        return None  # an "unreachable" snapshot is transient: the next one retries; the deadline bounds the wait


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


def wait_result(event: dict) -> dict:
    """What a successful wait returns (the sensor's XCom): the crossing, in plain JSON."""
    return {k: event.get(k) for k in ("stream", "job_id", "progress_ms", "threshold_ms", "checkpoint_id",
                                      "last_event_time_ms")}


class FlinkWatermarkTrigger(SharedStreamTrigger):
    """Fire once a Flink job's event-time progress is ``>= threshold_ms`` (see the module docstring).

    :param threshold_ms: progress to reach, epoch ms (a window ``[s, e)`` closes at ``e - 1 + lateness``).
    :param job_name: the job's name (``pipeline.name``); the wait follows the job across upgrades. Or
    :param job_id: one job run; its FINISHING before the threshold fails the wait.
    :param vertex: a vertex id or part of a vertex name whose input watermark is the progress (default: the
        sink vertices, i.e. the job's output progress).
    :param metric: ``currentInputWatermark`` (default) or another watermark metric of the vertex's operators,
        e.g. ``"<operator>.currentOutputWatermark"`` (aggregated with ``min`` over subtasks).
    :param commit_aware: also wait for a checkpoint triggered after the crossing was observed.
    :param stall_timeout: seconds without progress movement (job RUNNING) that fail the wait as stalled.
    :param flink_conn_id: a ``flink_rest`` connection.
    :param poll_interval: seconds between polls of the shared loop.
    :param deadline: absolute epoch seconds; None = no limit.
    :param stream: a label for messages (default: the job name or id).
    :param end_task_on_success: a deferred task's success ends the task right in the triggerer
        (``TaskSuccessEvent`` with :func:`wait_result` as its return value) instead of resuming it on a worker
        (~0.5 s sooner downstream); failures still resume it, to raise the specific exception.
    """

    def __init__(
        self,
        *,
        threshold_ms: int,
        job_name: str | None = None,
        job_id: str | None = None,
        vertex: str | None = None,
        metric: str = INPUT_WATERMARK,
        commit_aware: bool = False,
        stall_timeout: float | None = None,
        flink_conn_id: str = FlinkRestHook.default_conn_name,
        poll_interval: float = 1.0,
        deadline: float | None = None,
        stream: str | None = None,
        end_task_on_success: bool = False,
    ):
        super().__init__()
        if (job_name is None) == (job_id is None):
            raise FlinkConfigurationError("FlinkWatermarkTrigger needs exactly one of job_name= or job_id=.")
        self.threshold_ms = int(threshold_ms)
        self.job_name, self.job_id, self.vertex, self.metric = job_name, job_id, vertex, metric
        self.commit_aware = bool(commit_aware)
        self.stall_timeout = float(stall_timeout) if stall_timeout else None
        self.flink_conn_id = flink_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = float(deadline) if deadline is not None else None
        self.stream = stream or job_name or job_id
        self.end_task_on_success = bool(end_task_on_success)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"threshold_ms": self.threshold_ms, "job_name": self.job_name, "job_id": self.job_id,
             "vertex": self.vertex, "metric": self.metric, "commit_aware": self.commit_aware,
             "stall_timeout": self.stall_timeout, "flink_conn_id": self.flink_conn_id,
             "poll_interval": self.poll_interval, "deadline": self.deadline, "stream": self.stream,
             "end_task_on_success": self.end_task_on_success},
        )

    def shared_stream_key(self) -> Hashable:
        return ("airflow_rtml.flink_progress", self.flink_conn_id, self.job_name, self.job_id, self.vertex,
                self.metric, self.commit_aware, self.poll_interval)

    @staticmethod
    def poller(kwargs: dict[str, Any]) -> FlinkProgressPoller:
        return FlinkProgressPoller(
            flink_conn_id=kwargs["flink_conn_id"], job_name=kwargs["job_name"], job_id=kwargs["job_id"],
            vertex=kwargs["vertex"], metric=kwargs["metric"], commit_aware=kwargs.get("commit_aware", False),
            poll_interval=kwargs["poll_interval"],
        )

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[dict]:
        async with aclosing(cls.poller(kwargs).snapshots()) as snapshots:
            async for snap in snapshots:
                yield snap

    def new_wait(self) -> ProgressWait:
        return ProgressWait(stream=self.stream, threshold_ms=self.threshold_ms, commit_aware=self.commit_aware,
                            stall_timeout=self.stall_timeout, deadline=self.deadline,
                            by_name=self.job_name is not None, now=time.time())

    async def filter_shared_stream(self, shared_stream: AsyncIterator[dict]) -> AsyncIterator[TriggerEvent]:
        wait = self.new_wait()
        async for snap in shared_stream:
            event = wait.evaluate(snap)
            if event is None:
                continue
            self.log.info("%s", event["message"])
            if self.end_task_on_success and event["status"] == EventStatus.SUCCESS.value:
                yield TaskSuccessEvent(xcoms={"return_value": wait_result(event)})
            else:
                yield TriggerEvent(event)
            return



class FlinkWindowEventTrigger(SharedStreamTrigger):
    """For an ``AssetWatcher``: one event per event-time window a Flink job closes, never repeated while the
    condition stays true.

    Payload: ``{"stream", "job_id", "window_start_ms", "window_end_ms", "window_start", "window_end",
    "watermark_ms"}`` (Airflow stores it in the asset event's ``extra["payload"]``). The first window is the one
    holding the job's progress when the watcher starts; the last fired window end is kept in the asset's state
    store (Airflow 3.3), so a restarted triggerer resumes after it. An input that ends (``END_OF_STREAM``) closes
    the window of the last progress observed before it, no later one. Delivery across a triggerer crash is
    at-least-once (the cursor is saved after the event is yielded); Airflow 3.3 does not attach partition keys
    to watcher events, so for exactly-once runs per window use :class:`~airflow_rtml.sensors.watermark.StreamWindowSensor`
    with a ``PartitionedAssetTimetable``. Shares the poll loop of :class:`FlinkWatermarkTrigger` waits on the
    same job.

    :param window_size_ms: tumbling window size; ``offset_ms`` / ``lateness_ms`` as in Flink.
    Other parameters as :class:`FlinkWatermarkTrigger`.
    """

    CURSOR_KEY = "airflow_rtml.last_window_end_ms"
    single_event = False

    def __init__(
        self,
        *,
        window_size_ms: int,
        job_name: str | None = None,
        job_id: str | None = None,
        offset_ms: int = 0,
        lateness_ms: int = 0,
        vertex: str | None = None,
        metric: str = INPUT_WATERMARK,
        flink_conn_id: str = FlinkRestHook.default_conn_name,
        poll_interval: float = 1.0,
        stream: str | None = None,
    ):
        super().__init__()
        if (job_name is None) == (job_id is None):
            raise FlinkConfigurationError("FlinkWindowEventTrigger needs exactly one of job_name= or job_id=.")
        self.window_size_ms, self.offset_ms, self.lateness_ms = int(window_size_ms), int(offset_ms), int(lateness_ms)
        self.job_name, self.job_id, self.vertex, self.metric = job_name, job_id, vertex, metric
        self.flink_conn_id, self.poll_interval = flink_conn_id, float(poll_interval)
        self.stream = stream or job_name or job_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"window_size_ms": self.window_size_ms, "job_name": self.job_name, "job_id": self.job_id,
             "offset_ms": self.offset_ms, "lateness_ms": self.lateness_ms, "vertex": self.vertex,
             "metric": self.metric, "flink_conn_id": self.flink_conn_id, "poll_interval": self.poll_interval,
             "stream": self.stream},
        )

    def shared_stream_key(self) -> Hashable:
        return ("airflow_rtml.flink_progress", self.flink_conn_id, self.job_name, self.job_id, self.vertex,
                self.metric, False, self.poll_interval)

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[dict]:
        async with aclosing(FlinkWatermarkTrigger.poller({**kwargs, "commit_aware": False}).snapshots()) as snaps:
            async for snap in snaps:
                yield snap

    def _stores(self) -> list:
        """The state-store accessor of each asset this trigger feeds. Airflow runs one trigger for watchers with
        identical arguments on several assets; its store then has no single accessor (``aget`` raises)."""
        store = self.asset_state_store
        if store is None:
            return []
        per_asset = [*getattr(store, "_by_name", {}).values(), *getattr(store, "_by_uri", {}).values()]
        return per_asset or [store]

    async def _cursor(self) -> int | None:
        """Where to resume: the last window end stored for the assets (the lowest, if they differ)."""
        values = [v for st in self._stores() if (v := await st.aget(self.CURSOR_KEY)) is not None]
        return min(int(v) for v in values) if values else None

    async def _save_cursor(self, cursor: int) -> None:
        for st in self._stores():
            await st.aset(self.CURSOR_KEY, cursor)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[dict]) -> AsyncIterator[TriggerEvent]:
        cursor = await self._cursor()
        progress = MonotoneProgress()
        last_event_time: int | None = None  # the highest progress before the input ended
        ended_job: str | None = None  # the job whose input ended
        async for snap in shared_stream:
            if progress.value == END_OF_STREAM and snap.get("job_id") not in (None, ended_job):
                # A new job of that name (restarted after the end): follow its progress; the cursor prevents repeats.
                progress, last_event_time, ended_job = MonotoneProgress(), None, None
            progress.observe(snap.get("progress_ms"))
            if progress.value == END_OF_STREAM and ended_job is None:
                ended_job = snap.get("job_id")
            if progress.value is None or progress.value == NO_WATERMARK:
                continue
            closes = progress.value
            if closes == END_OF_STREAM:
                # An ended input closes the window of its last event time, no later one (without this, every
                # poll would emit 10,000 more windows, forever).
                if last_event_time is None:
                    continue
                closes = window_of(last_event_time, self.window_size_ms, self.offset_ms).end_ms - 1 + self.lateness_ms
            else:
                last_event_time = closes
            if cursor is None:
                cursor = window_of(last_event_time, self.window_size_ms, self.offset_ms).start_ms
            for window in closed_windows(closes, self.window_size_ms, after_end_ms=cursor,
                                         offset_ms=self.offset_ms, lateness_ms=self.lateness_ms):
                yield TriggerEvent({"stream": self.stream, "job_id": snap.get("job_id"),
                                    "window_start_ms": window.start_ms, "window_end_ms": window.end_ms,
                                    "window_start": window.to_dict()["start"], "window_end": window.to_dict()["end"],
                                    "watermark_ms": progress.value})
                cursor = window.end_ms
                await self._save_cursor(cursor)

