"""StreamWatermarkSensor: a batch step waits until its input stream has completed a stretch of event time.

The stream → batch dependency for clock-scheduled DAGs: an hourly training task downstream of
``StreamWatermarkSensor(job_name="samples")`` starts when the sample stream's watermark says the run's hour is
complete (``progress >= data_interval_end - 1 + lateness``), and — with ``commit_aware=True`` — a checkpoint
has committed it, not when the clock says so.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import Asset, BaseOperator, Context

from airflow_rtml.exceptions import FlinkConfigurationError, StreamEnded
from airflow_rtml.hooks.flink import FlinkRestHook
from airflow_rtml.operators.flink import _default_deferrable
from airflow_rtml.progress import END_OF_STREAM, Window, closed_windows, describe, threshold_for, window_of
from airflow_rtml.triggers.flink import raise_for_event
from airflow_rtml.triggers.watermark import INPUT_WATERMARK, FlinkWatermarkTrigger, decide, wait_result


def to_epoch_ms(value: Any) -> int:
    """An event-time instant as epoch ms: a datetime (naive = UTC), an ISO-8601 string, or an int of ms."""
    if isinstance(value, bool):
        raise FlinkConfigurationError(f"target must be a time, got {value!r}.")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise FlinkConfigurationError(
                f"target {value!r} is not a time. To fix this, pass a datetime, an ISO-8601 string "
                "(e.g. '{{ data_interval_end }}') or epoch milliseconds."
            ) from exc
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp() * 1000)
    raise FlinkConfigurationError(f"target must be a datetime, ISO-8601 string or epoch ms, got {type(value)}.")


def run_trigger_blocking(trigger: FlinkWatermarkTrigger, hook: FlinkRestHook) -> dict:
    """The trigger's own loop on a worker (the sync path): the same reader, the same decisions (:func:`decide`)."""
    hook.base_url  # noqa: B018 - resolve the connection synchronously, before the event loop starts
    reader = FlinkWatermarkTrigger.poller(trigger.serialize()[1], hook=hook)

    async def first() -> dict:
        async with aclosing(reader.observations()) as observations, \
                aclosing(decide(trigger.new_wait(), observations, trigger.log)) as events:
            async for event in events:
                return event
        raise RuntimeError("the poll loop ended")  # pragma: no cover - it never does

    return asyncio.run(first())


def first_look(trigger: FlinkWatermarkTrigger, hook: FlinkRestHook) -> dict | None:
    """One poll on the worker before deferring: the wait's event if that poll already decides it (reached,
    failed), else None. A deferral whose trigger fires at once costs a round trip and, in Airflow 3.3.2, can race
    the executor's report of the deferring process."""
    probe = FlinkWatermarkTrigger(**{**trigger.serialize()[1], "deadline": time.time(), "end_task_on_success": False})
    event = run_trigger_blocking(probe, hook)
    return None if event["status"] == "timeout" else event


class StreamWatermarkSensor(BaseOperator):
    """Wait until a Flink job's event-time progress has passed ``target`` (deferrable).

    Returns (XCom) ``{"stream", "job_id", "progress_ms", "threshold_ms", "checkpoint_id"}``. Raises
    :class:`~airflow_rtml.exceptions.FlinkJobFailed` (job FAILED/CANCELED, with Flink's root cause),
    :class:`~airflow_rtml.exceptions.StreamStalled` (no progress for ``stall_timeout``),
    :class:`~airflow_rtml.exceptions.FlinkJobNotFound`, :class:`~airflow_rtml.exceptions.FlinkWaitTimeout`
    — the same in the sync and deferred paths. Many sensors on one job share one poll loop in the triggerer.

    :param job_name: the Flink job's name (followed across upgrades); or
    :param job_id: one job run.
    :param target: event time that must be complete (templated; default ``{{ data_interval_end }}``): waits for
        ``progress >= target - 1 + lateness``, i.e. the window ending at ``target`` is closed.
    :param lateness: allowed lateness of the consumer (keeps the window open that much longer).
    :param commit_aware: also wait for a checkpoint after the crossing (exactly-once sinks made it visible).
    :param vertex: vertex id or part of its name whose input watermark is the progress (default: the sinks).
    :param metric: the watermark metric (default ``currentInputWatermark``).
    :param stall_timeout: fail as stalled when a RUNNING job's progress does not move this long.
    :param timeout: absolute deadline from the first try (kept across triggerer restarts).
    :param poll_interval: seconds between polls.
    :param deferrable: wait in the triggerer (default from ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("target", "job_name", "job_id", "vertex")
    #: a deferred success ends the task in the triggerer (no resume on a worker); StreamWindowSensor resumes.
    end_in_triggerer = True

    def __init__(
        self,
        *,
        job_name: str | None = None,
        job_id: str | None = None,
        target: Any = "{{ data_interval_end }}",
        lateness: timedelta = timedelta(0),
        commit_aware: bool = False,
        vertex: str | None = None,
        metric: str = INPUT_WATERMARK,
        stall_timeout: timedelta | None = None,
        timeout: timedelta = timedelta(hours=6),
        poll_interval: float = 1.0,
        flink_conn_id: str = FlinkRestHook.default_conn_name,
        deferrable: bool | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if (job_name is None) == (job_id is None):
            raise FlinkConfigurationError(f"{self.task_id}: give exactly one of job_name= or job_id=.")
        if lateness < timedelta(0):
            raise FlinkConfigurationError(f"{self.task_id}: lateness must not be negative.")
        self.job_name, self.job_id, self.target = job_name, job_id, target
        self.lateness, self.commit_aware, self.vertex, self.metric = lateness, commit_aware, vertex, metric
        self.stall_timeout, self.wait_timeout, self.poll_interval = stall_timeout, timeout, poll_interval
        self.flink_conn_id = flink_conn_id
        self.deferrable = _default_deferrable() if deferrable is None else deferrable

    def trigger(self, deadline: float) -> FlinkWatermarkTrigger:
        target_ms = to_epoch_ms(self.target)
        return FlinkWatermarkTrigger(
            threshold_ms=threshold_for(target_ms, int(self.lateness.total_seconds() * 1000)),
            job_name=self.job_name or None, job_id=self.job_id or None, vertex=self.vertex, metric=self.metric,
            commit_aware=self.commit_aware,
            stall_timeout=self.stall_timeout.total_seconds() if self.stall_timeout else None,
            flink_conn_id=self.flink_conn_id, poll_interval=self.poll_interval, deadline=deadline,
            end_task_on_success=self.deferrable and self.end_in_triggerer,
        )

    def execute(self, context: Context) -> dict:
        trigger = self.trigger(time.time() + self.wait_timeout.total_seconds())
        self.log.info("Waiting for stream %s to reach progress %s", trigger.stream, describe(trigger.threshold_ms))
        hook = FlinkRestHook(self.flink_conn_id)
        if self.deferrable:
            event = first_look(trigger, hook)
            if event is not None:  # already decided: no deferral whose trigger would fire at once
                return self.execute_complete(context, event)
            self.defer(trigger=trigger, method_name="execute_complete")
        return self.execute_complete(context, run_trigger_blocking(trigger, hook))

    def execute_complete(self, context: Context, event: dict) -> dict:
        """Raise the wait's exception for a failed event; return the crossing."""
        raise_for_event(event)
        self.log.info("%s", event["message"])
        return wait_result(event)


def window_partition_key(window: Window) -> str:
    """The partition key of a window: its start, ISO-8601 UTC with seconds (``2026-01-01T10:00:00Z``)."""
    return datetime.fromtimestamp(window.start_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_from_partition_key(key: str, size: timedelta) -> Window:
    """The window a partition key names (the inverse of :func:`window_partition_key`)."""
    start = to_epoch_ms(key)
    return Window(start, start + int(size.total_seconds() * 1000))


class StreamWindowSensor(StreamWatermarkSensor):
    """Wait until the stream's next event-time window(s) close; emit each as a partition of ``asset``.

    The stream → batch dependency in Airflow's data-aware terms: run this in a producer DAG with
    ``schedule="@continuous"`` (one run at a time), and schedule the consumer with
    ``PartitionedAssetTimetable(assets=asset)``: it runs **once per closed window**, its ``partition_key``
    being the window start (:func:`window_partition_key`; :func:`window_from_partition_key` turns it back).

    Exactly once: the cursor is the last window this sensor emitted for this stream, read from the asset's
    latest events (the event ``extra`` carries ``stream`` and ``last_window_end_ms``); events are registered
    only when the task succeeds, so a retried or cleared run emits the same keys, never a gap. The first run for
    a stream starts at the window that holds the stream's progress when it first reports one.

    An input that ends (watermark ``Long.MAX_VALUE``, e.g. a drained stop) closes the window of its last event
    time and no later one; the run after that raises :class:`~airflow_rtml.exceptions.StreamEnded` instead of
    emitting windows without end.

    :param asset: the Asset that stands for the stream's closed windows (set as inlet and outlet).
    :param window: window size (tumbling, aligned to the epoch plus ``offset``, as in Flink).
    :param offset: window offset.
    :param max_windows: most windows emitted by one run (a stream far ahead catches up over several runs).
    :param start: event time of the first window to emit for a new stream (templated); default: the window
        holding the stream's progress when it first reports one.
    Other parameters as :class:`StreamWatermarkSensor` (``target`` is not used).
    """

    end_in_triggerer = False  # it must resume: emitting the partitions happens in execute_complete

    template_fields: Sequence[str] = (*StreamWatermarkSensor.template_fields, "start")

    def __init__(self, *, asset: Asset, window: timedelta, offset: timedelta = timedelta(0),
                 max_windows: int = 100, start: Any = None, **kwargs: Any):
        kwargs.setdefault("inlets", [asset])
        kwargs.setdefault("outlets", [asset])
        super().__init__(target=None, **kwargs)
        if window <= timedelta(0):
            raise FlinkConfigurationError(f"{self.task_id}: window must be positive.")
        self.asset, self.window, self.offset, self.max_windows = asset, window, offset, max_windows
        self.start = start

    @property
    def _size_ms(self) -> int:
        return int(self.window.total_seconds() * 1000)

    @property
    def _stream(self) -> str:
        return self.job_name or self.job_id

    def _cursor(self, context: Context) -> int | None:
        """End of the last window emitted for this stream, from the asset's latest events."""
        for event in context["inlet_events"][self.asset].ascending(False).limit(50):
            extra = event.extra or {}
            if extra.get("stream") == self._stream and "last_window_end_ms" in extra:
                return int(extra["last_window_end_ms"])
        return None

    def execute(self, context: Context) -> dict:
        cursor = self._cursor(context)
        deadline = time.time() + self.wait_timeout.total_seconds()
        offset_ms = int(self.offset.total_seconds() * 1000)
        if cursor is None and self.start not in (None, ""):
            cursor = window_of(to_epoch_ms(self.start), self._size_ms, offset_ms).start_ms
        if cursor is None:
            # First run for this stream: start at the window holding its first known progress.
            self.target = 0
            first = run_trigger_blocking(self.trigger(deadline), FlinkRestHook(self.flink_conn_id))
            raise_for_event(first)
            cursor = window_of(self._event_time(first), self._size_ms, offset_ms).start_ms
        self.target = cursor + self._size_ms
        self.log.info("Stream %s: waiting for window %s to close", self._stream,
                      window_partition_key(Window(cursor, cursor + self._size_ms)))
        trigger = self.trigger(deadline)
        hook = FlinkRestHook(self.flink_conn_id)
        if self.deferrable:
            event = first_look(trigger, hook)
            if event is not None:
                return self.execute_complete(context, event, cursor)
            self.defer(trigger=trigger, method_name="execute_complete", kwargs={"cursor": cursor})
        return self.execute_complete(context, run_trigger_blocking(trigger, hook), cursor)

    def _event_time(self, event: dict) -> int:
        """The event time a wait's event reached: its progress, or before an ended input its last event time."""
        if event["progress_ms"] != END_OF_STREAM:
            return event["progress_ms"]
        if event.get("last_event_time_ms") is None:
            raise StreamEnded(
                f"Stream {self._stream}'s input had ended (watermark Long.MAX_VALUE) before this wait saw an event "
                "time, so which windows it closed is unknown. To fix this, start the stream again (a new job of the "
                "same name is picked up) or emit its last windows by hand; pause this producer DAG meanwhile.",
                self._stream,
            )
        return event["last_event_time_ms"]

    def execute_complete(self, context: Context, event: dict, cursor: int | None = None) -> dict:
        """Emit every window the crossing closed (after ``cursor``) as a partition of the asset."""
        raise_for_event(event)
        offset_ms, lateness_ms = int(self.offset.total_seconds() * 1000), int(self.lateness.total_seconds() * 1000)
        closes = event["progress_ms"]
        ended = closes == END_OF_STREAM
        if ended:  # an ended input closes the window of its last event time, no later one
            closes = window_of(self._event_time(event), self._size_ms, offset_ms).end_ms - 1 + lateness_ms
        windows = closed_windows(closes, self._size_ms, after_end_ms=cursor, offset_ms=offset_ms,
                                 lateness_ms=lateness_ms, limit=self.max_windows)
        if not windows and not ended:
            raise FlinkConfigurationError(
                f"Stream {self._stream}: the wait ended at progress {describe(closes)}, which closes no window after "
                f"{describe(cursor)}. This is a bug in airflow-rtml: please report it with this message."
            )
        if not windows:
            raise StreamEnded(
                f"Stream {self._stream}'s input has ended (watermark Long.MAX_VALUE) and its last window, ending "
                f"{describe(cursor)}, was already emitted: no further window will close. To fix this, pause this "
                "producer DAG, or start the stream again (a new job of the same name is picked up).",
                self._stream, event.get("last_event_time_ms"),
            )
        keys = [window_partition_key(w) for w in windows]
        outlet = context["outlet_events"][self.asset]
        outlet.add_partitions(keys)
        outlet.extra.update({
            "stream": self._stream, "job_id": event.get("job_id"), "window_size_ms": self._size_ms,
            "windows": [w.to_dict() for w in windows], "last_window_end_ms": windows[-1].end_ms,
            "progress_ms": event["progress_ms"], "checkpoint_id": event.get("checkpoint_id"),
            "crossed_at_ms": event.get("crossed_at_ms"),
        })
        self.log.info("Stream %s closed %d window(s): %s", self._stream, len(keys), keys)
        return {"stream": self._stream, "partition_keys": keys, "progress_ms": event["progress_ms"]}
