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

from airflow.sdk import BaseOperator, Context

from airflow_rtml.exceptions import FlinkConfigurationError
from airflow_rtml.hooks.flink import FlinkRestHook
from airflow_rtml.operators.flink import _default_deferrable
from airflow_rtml.progress import describe, threshold_for
from airflow_rtml.triggers.flink import raise_for_event
from airflow_rtml.triggers.watermark import INPUT_WATERMARK, FlinkWatermarkTrigger


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
    """The trigger's own loop on a worker (the sync path): the same snapshots, the same decisions."""
    hook.base_url  # noqa: B018 - resolve the connection synchronously, before the event loop starts
    poller = FlinkWatermarkTrigger.poller(trigger.serialize()[1])
    poller.hook = hook

    async def first() -> dict:
        wait = trigger.new_wait()
        async with aclosing(poller.snapshots()) as snapshots:
            async for snap in snapshots:
                event = wait.evaluate(snap)
                if event is not None:
                    return event
        raise RuntimeError("the poll loop ended")  # pragma: no cover - it never does

    return asyncio.run(first())


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
        )

    def execute(self, context: Context) -> dict:
        trigger = self.trigger(time.time() + self.wait_timeout.total_seconds())
        self.log.info("Waiting for stream %s to reach progress %s", trigger.stream, describe(trigger.threshold_ms))
        if self.deferrable:
            self.defer(trigger=trigger, method_name="execute_complete")
        return self.execute_complete(context, run_trigger_blocking(trigger, FlinkRestHook(self.flink_conn_id)))

    def execute_complete(self, context: Context, event: dict) -> dict:
        """Raise the wait's exception for a failed event; return the crossing."""
        raise_for_event(event)
        self.log.info("%s", event["message"])
        return {k: event.get(k) for k in ("stream", "job_id", "progress_ms", "threshold_ms", "checkpoint_id")}
