"""Watermark triggers: wait, in the triggerer, until a stream's event-time progress reaches a threshold.

A *stream* is a Flink job (by name, so the wait survives an upgrade that replaces the job id; or by id), read
through the JobManager's REST API, or a Kafka progress topic (see :mod:`airflow_rtml.triggers.kafka`). Its
*progress* is the minimum watermark over its parallel parts (:mod:`airflow_rtml.progress`). A wait for
"window ``[start, end)`` closed" waits for ``progress >= end - 1 + lateness`` (:func:`~airflow_rtml.progress.threshold_for`).

**One poll loop per stream.** The triggers are ``BaseEventTrigger`` subclasses with a
``shared_stream_key()``: in one triggerer process, every waiter on the same (connection, job, vertex, metric,
commit-awareness, poll interval) shares a single poll loop (:meth:`open_shared_stream`) whose snapshots are
fanned out to each waiter's :meth:`filter_shared_stream`. N waiters cost the REST calls of one. A waiter looks
at a snapshot at once only when it concerns it (its threshold crossed, a failure, the job's end, a stall due);
it parks meanwhile and looks at the rest later, in order (:mod:`airflow_rtml.streams.wakeups`), so N waiters
cost the triggerer little more than N idle tasks.

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

import math
import time
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import aclosing
from typing import Any

from airflow.triggers.base import TaskSuccessEvent, TriggerEvent

from airflow_rtml.exceptions import FlinkConfigurationError
from airflow_rtml.hooks.flink import FlinkRestHook, check_flink_id
from airflow_rtml.progress import (
    END_OF_STREAM,
    EventStatus,
    NO_WATERMARK,
    MonotoneProgress,
    Observation,
    ProgressWait,
    closed_windows,
    threshold_for,
    to_epoch_ms,
    window_of,
)
from airflow_rtml.streams.flink import (  # noqa: F401 - re-exported: their round-1 import path
    INPUT_WATERMARK,
    REPORTER_DISCOVERY_MAX_AGE,
    FlinkStreamReader,
    jobs_overview,
    pick_vertices,
    reporter_watermarks,
    sink_vertices,
)
from airflow_rtml.streams.shared import SHARED, SharedFetches  # noqa: F401 - re-exported
from airflow_rtml.streams.wakeups import WakeHub, decide_parked
from airflow_rtml.triggers.base import (
    FIRST_LOOK_GRACE_S,
    PROGRESS_LOG_EVERY_S,
    ProgressLog,
    SharedStreamTrigger,
    until_deadline,
)

#: The round-1 name of :class:`~airflow_rtml.streams.flink.FlinkStreamReader`.
FlinkProgressPoller = FlinkStreamReader


def decide(wait: ProgressWait, observations: AsyncIterator[Observation], log, shared_key: Hashable | None = None,
           to_event: Callable[[dict], Any] | None = None) -> AsyncIterator[Any]:
    """Let ``wait`` decide over ``observations`` until it ends: yields exactly one terminal event payload (success,
    failure or timeout; ``to_event`` of it if given), the timeout at the wait's own deadline even while a poll is
    still in flight, and logs progress lines meanwhile. The deferred path (triggers) and the worker path (sensors)
    both run this. With the ``shared_key`` of a shared Flink stream, the wait parks between the observations that
    concern it: the same decisions, fewer wake-ups (:func:`~airflow_rtml.streams.wakeups.decide_parked`)."""
    progress_log = ProgressLog(log, wait.stream, wait.threshold_ms)
    if shared_key is not None:
        return decide_parked(wait, observations, shared_key, progress_log=progress_log,
                             first_look_grace_s=FIRST_LOOK_GRACE_S, to_event=to_event or _same)
    return _decide(wait, observations, progress_log, to_event or _same)


def _same(event: dict) -> dict:
    return event


def _strict_template_env():
    """A DAG's default template environment (undefined variables raise; Airflow's ``ds``/``ts`` filters)."""
    try:
        from airflow.sdk.definitions._internal.templater import FILTERS, create_template_env
    except ImportError:  # pragma: no cover - another Airflow layout: the same, without Airflow's filters
        import jinja2.sandbox

        return jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined, cache_size=0)
    env = create_template_env()
    env.filters.update(FILTERS)
    return env


def _seconds_or_none(name: str, value: Any) -> float | None:
    """``value`` as finite, non-negative seconds (None and 0 stay None); anything else raises a
    :class:`FlinkConfigurationError` naming ``name``."""
    if value is None or value == 0:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds < 0:
        raise FlinkConfigurationError(f"{name} must be a finite number of seconds >= 0 (or None), got {value!r}.")
    return seconds


def _templated(value: Any) -> bool:
    return isinstance(value, str) and any(mark in value for mark in ("{{", "{%"))


async def _decide(wait: ProgressWait, observations: AsyncIterator[Observation], progress_log: ProgressLog,
                  to_event: Callable[[dict], Any]) -> AsyncIterator[Any]:
    async with aclosing(until_deadline(observations, wait.deadline)) as timed:
        async for obs in timed:
            event = wait.timeout_event(now=time.time()) if obs is None else wait.evaluate(obs)
            if event is not None:
                yield to_event(event)
                return
            progress_log.observe(wait, obs)


def stream_key(kwargs: dict[str, Any]) -> tuple:
    """The shared stream key of a Flink stream trigger's (serialized) kwargs: every trigger with the same key
    shares one poll loop, and its waits share that loop's :class:`~airflow_rtml.streams.wakeups.WakeHub`."""
    return WakeHub.same_key((
        "airflow_rtml.flink_progress", kwargs["flink_conn_id"], kwargs["job_name"], kwargs["job_id"], kwargs["vertex"],
        kwargs["metric"], bool(kwargs.get("commit_aware", False)), float(kwargs["poll_interval"])))


def _drain_every(poll_interval: float) -> int:
    """Observations after which a parked wait looks in any case: about once per progress line
    (:data:`~airflow_rtml.triggers.base.PROGRESS_LOG_EVERY_S`), and within half the triggerer's subscriber queue
    (``[triggerer] shared_stream_subscriber_queue_size``; a full queue fails the trigger)."""
    try:
        from airflow.sdk.configuration import conf

        queue_size = conf.getint("triggerer", "shared_stream_subscriber_queue_size", fallback=1024)
    except Exception:  # noqa: BLE001 - no configuration to read: Airflow's default
        queue_size = 1024
    return max(1, min(math.ceil(PROGRESS_LOG_EVERY_S / max(poll_interval, 1e-3)), queue_size // 2))


async def observe_shared(kwargs: dict[str, Any]) -> AsyncIterator[Observation]:
    """The shared poll loop of a Flink stream trigger: its reader's observations, published through the stream's
    :class:`~airflow_rtml.streams.wakeups.WakeHub` (the same loop for watermark and window triggers)."""
    hub = WakeHub(stream_key(kwargs), _drain_every(float(kwargs["poll_interval"])))
    async with aclosing(FlinkWatermarkTrigger.poller(kwargs).observations()) as observations, \
            aclosing(hub.publish(observations)) as published:
        async for obs in published:
            yield obs


def wait_result(event: dict) -> dict:
    """What a successful wait returns (the sensor's XCom): the crossing, in plain JSON."""
    return {k: event.get(k) for k in ("stream", "job_id", "progress_ms", "threshold_ms", "checkpoint_id",
                                      "last_event_time_ms")}


class FlinkWatermarkTrigger(SharedStreamTrigger):
    """Fire once a Flink job's event-time progress is ``>= threshold_ms`` (see the module docstring).

    :param threshold_ms: progress to reach, epoch ms (a window ``[s, e)`` closes at ``e - 1 + lateness``).
    :param job_name: the job's name (``pipeline.name``); the wait follows the job across upgrades (give
        exactly one of ``job_name``, ``job_id``).
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
    :param target: instead of ``threshold_ms``: the event time that must be complete (datetime, ISO-8601 string
        or epoch ms; threshold ``target - 1 + lateness_ms``), resolved when the wait starts. This is how a sensor
        with ``start_from_trigger=True`` hands its (templated) ``target`` over: the triggerer renders ``target``,
        ``job_name``, ``job_id`` and ``vertex`` with the task's context first.
    :param lateness_ms: allowed lateness, ms (with ``target``).
    :param timeout_s: instead of ``deadline``: seconds the wait may take, counted from the deferral (the task's
        trigger timeout, which survives triggerer restarts, less :data:`START_TIMEOUT_GRACE_S`).
    :param job_missing_timeout: seconds a wait by ``job_name`` waits for a job of that name to appear before it
        fails with ``job_not_found`` (counted from this trigger's first look; a triggerer restart starts it
        again); None or 0: fail at once. A wait by ``job_id`` fails at once.
    """

    #: The scheduler's own trigger timeout of a wait started in the triggerer is ``timeout_s`` plus this: the
    #: wait's own timeout event (which ``soft_fail`` turns into a skip) comes first.
    START_TIMEOUT_GRACE_S = 60.0

    def __init__(
        self,
        *,
        threshold_ms: int | None = None,
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
        target: Any = None,
        lateness_ms: int = 0,
        timeout_s: float | None = None,
        job_missing_timeout: float | None = None,
    ):
        super().__init__()
        if (job_name is None) == (job_id is None):
            raise FlinkConfigurationError("FlinkWatermarkTrigger needs exactly one of job_name= or job_id=.")
        if (threshold_ms is None) == (target is None):
            raise FlinkConfigurationError("FlinkWatermarkTrigger needs exactly one of threshold_ms= or target=.")
        if job_id is not None and not _templated(job_id):
            check_flink_id(job_id)
        self.threshold_ms = None if threshold_ms is None else int(threshold_ms)
        self.target, self.lateness_ms = target, int(lateness_ms)
        self.job_name, self.job_id, self.vertex, self.metric = job_name, job_id, vertex, metric
        self.commit_aware = bool(commit_aware)
        self.stall_timeout = float(stall_timeout) if stall_timeout else None
        self.flink_conn_id = flink_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = float(deadline) if deadline is not None else None
        self.timeout_s = None if timeout_s is None else float(timeout_s)
        self._stream = stream
        self.end_task_on_success = bool(end_task_on_success)
        self.job_missing_timeout = _seconds_or_none("job_missing_timeout", job_missing_timeout)

    @property
    def stream(self) -> str:
        """The label of the stream in messages: the one given, else the (rendered) job name or id."""
        return self._stream or self.job_name or self.job_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        kwargs = {"threshold_ms": self.threshold_ms, "job_name": self.job_name, "job_id": self.job_id,
                  "vertex": self.vertex, "metric": self.metric, "commit_aware": self.commit_aware,
                  "stall_timeout": self.stall_timeout, "flink_conn_id": self.flink_conn_id,
                  "poll_interval": self.poll_interval, "deadline": self.deadline,
                  "stream": self._stream if _templated(self.stream) else self.stream,
                  "end_task_on_success": self.end_task_on_success}
        if self.threshold_ms is None:  # not resolved yet: what resolves it
            kwargs.update(threshold_ms=None, target=self.target, lateness_ms=self.lateness_ms)
        if self.deadline is None and self.timeout_s is not None:
            kwargs["timeout_s"] = self.timeout_s
        if self.job_missing_timeout:  # absent for 0/None: triggers serialized before this argument stay equal
            kwargs["job_missing_timeout"] = self.job_missing_timeout
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    def render_template_fields(self, context, jinja_env=None) -> None:
        """Render the task's templated fields this trigger carries (a wait started in the triggerer); a variable
        the run does not have raises :class:`FlinkConfigurationError` naming it."""
        import jinja2

        if jinja_env is None:  # Airflow's triggerer renders with a lenient sandbox: "" for a missing variable
            jinja_env = _strict_template_env()
        try:
            super().render_template_fields(context, jinja_env)
        except jinja2.UndefinedError as exc:
            raise FlinkConfigurationError(
                f"{self.task_id}: a templated argument names a variable this run does not have ({exc}). To fix "
                "this, template a value every run has (e.g. '{{ dag_run.run_after }}') or pass a fixed value."
            ) from exc

    def resolve(self) -> None:
        """Turn ``target`` / ``timeout_s`` (a wait started in the triggerer, after rendering) into
        ``threshold_ms`` / ``deadline``; a no-op for a wait given those."""
        if self.job_id is not None:
            check_flink_id(self.job_id)
        if self.threshold_ms is None:
            self.threshold_ms = threshold_for(to_epoch_ms(self.target), self.lateness_ms)
        if self.deadline is None and self.timeout_s is not None:
            timeout_after = getattr(self, "timeout_after", None)  # the task's trigger timeout, kept in the DB
            self.deadline = timeout_after.timestamp() - self.START_TIMEOUT_GRACE_S if timeout_after \
                else time.time() + self.timeout_s

    def shared_stream_key(self) -> Hashable:
        return stream_key(self.serialize()[1])

    @staticmethod
    def poller(kwargs: dict[str, Any], hook: FlinkRestHook | None = None) -> FlinkStreamReader:
        """The stream reader for these (serialized) kwargs; ``hook`` one whose connection is already resolved."""
        return FlinkStreamReader(
            flink_conn_id=kwargs["flink_conn_id"], job_name=kwargs["job_name"], job_id=kwargs["job_id"],
            vertex=kwargs["vertex"], metric=kwargs["metric"], commit_aware=kwargs.get("commit_aware", False),
            poll_interval=kwargs["poll_interval"], hook=hook,
        )

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Observation]:
        async with aclosing(observe_shared(kwargs)) as observations:
            async for obs in observations:
                yield obs

    def new_wait(self, missing_since: float | None = None) -> ProgressWait:
        """This trigger's :class:`~airflow_rtml.progress.ProgressWait` (``missing_since``: when its job was first
        seen missing, if before this wait)."""
        self.resolve()
        return ProgressWait(stream=self.stream, threshold_ms=self.threshold_ms, commit_aware=self.commit_aware,
                            stall_timeout=self.stall_timeout, deadline=self.deadline,
                            by_name=self.job_name is not None, now=time.time(),
                            job_missing_timeout=self.job_missing_timeout, missing_since=missing_since)

    def filter_shared_stream(self, shared_stream: AsyncIterator[Observation]) -> AsyncIterator[TriggerEvent]:
        # The decision's own generator, no wrapper of ours around it (a parked wait holds only that); the class's
        # logger, not one per trigger (~1 KB each): the triggerer routes each line to the task's log by the
        # context it binds per trigger, whatever the logger.
        return decide(self.new_wait(), shared_stream, type(self).logger(), self.shared_stream_key(),
                      to_event=self._trigger_event)

    def _trigger_event(self, event: dict) -> TriggerEvent:
        type(self).logger().info("%s", event["message"])
        if self.end_task_on_success and event["status"] == EventStatus.SUCCESS.value:
            return TaskSuccessEvent(xcoms={"return_value": wait_result(event)})
        return TriggerEvent(event)


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

    :param window_size_ms: tumbling window size, ms (windows aligned to the epoch plus ``offset_ms``, as in Flink).
    :param job_name: the job's name (``pipeline.name``); followed across upgrades, and a new job of that name
        after an ended input is picked up (give exactly one of ``job_name``, ``job_id``).
    :param job_id: one job run.
    :param offset_ms: window offset, ms.
    :param lateness_ms: allowed lateness, ms: a window ``[s, e)`` closes at progress ``e - 1 + lateness_ms``.
    :param vertex: a vertex id or part of a vertex name whose input watermark is the progress (default: the
        sink vertices).
    :param metric: the watermark metric (default ``currentInputWatermark``).
    :param flink_conn_id: a ``flink_rest`` connection.
    :param poll_interval: seconds between polls of the shared loop.
    :param stream: a label for the payload and messages (default: the job name or id).
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
        if job_id is not None:
            check_flink_id(job_id)
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
        return stream_key({**self.serialize()[1], "commit_aware": False})

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Observation]:
        async with aclosing(observe_shared({**kwargs, "commit_aware": False})) as obs:
            async for one in obs:
                yield one

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

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Observation]) -> AsyncIterator[TriggerEvent]:
        cursor = await self._cursor()
        progress = MonotoneProgress()
        last_event_time: int | None = None  # the highest progress before the input ended
        ended_job: str | None = None  # the job whose input ended
        async for snap in shared_stream:
            if progress.value == END_OF_STREAM and snap.job_id not in (None, ended_job):
                # A new job of that name (restarted after the end): follow its progress; the cursor prevents repeats.
                progress, last_event_time, ended_job = MonotoneProgress(), None, None
            progress.observe(snap.progress_ms)
            if progress.value == END_OF_STREAM and ended_job is None:
                ended_job = snap.job_id
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
                yield TriggerEvent({"stream": self.stream, "job_id": snap.job_id,
                                    "window_start_ms": window.start_ms, "window_end_ms": window.end_ms,
                                    "window_start": window.to_dict()["start"], "window_end": window.to_dict()["end"],
                                    "progress_ms": progress.value,
                                    "watermark_ms": progress.value})  # old key, kept for one release
                cursor = window.end_ms
                await self._save_cursor(cursor)

