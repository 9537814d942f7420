"""Stream → stream guard: a streaming job must not run ahead of the streams it joins.

A sample-join job whose event-time progress is beyond its feature stream's reads features from the future
(feature crossing, label leakage). :class:`StreamSkewCheckOperator` compares the two jobs' progress once and
reports — or fails on — a downstream stream ahead of its upstream by more than ``max_skew``. Run it after the
downstream job's submit task, and on a schedule (e.g. every few minutes) as a watchdog.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context

from airflow_rtml.exceptions import FlinkConfigurationError, RtmlError
from airflow_rtml.hooks.flink import FlinkRestHook
from airflow_rtml.progress import NO_WATERMARK, describe
from airflow_rtml.streams.flink import read_progress


class StreamSkewExceeded(RtmlError):
    """A downstream stream's progress is ahead of its upstream's by more than the allowed skew."""

    def __init__(self, message: str, skew_ms: int):
        super().__init__(message)
        self.skew_ms = skew_ms


def skew_ms(upstream_ms: int | None, downstream_ms: int | None) -> int | None:
    """How far downstream progress runs ahead of upstream progress (negative: behind); None if unknown."""
    if upstream_ms is None or downstream_ms is None or NO_WATERMARK in (upstream_ms, downstream_ms):
        return None
    return downstream_ms - upstream_ms


class StreamSkewCheckOperator(BaseOperator):
    """Compare a downstream job's event-time progress with its upstream job's, once.

    Returns ``{"upstream_ms", "downstream_ms", "skew_ms", "ok"}``. With ``fail=True`` a skew beyond
    ``max_skew`` raises :class:`StreamSkewExceeded`; otherwise it is logged as a warning. Unknown progress (a
    job not RUNNING, no watermark yet) is reported as such and is not a violation. A check, not a hold: nothing
    is stopped or throttled, and a skew that arises between two runs of the check goes unseen until the next.

    Templated fields: ``upstream_job_name``, ``downstream_job_name``.

    :param upstream_job_name: the job the downstream reads from (e.g. the feature job).
    :param downstream_job_name: the job that must not run ahead (e.g. the sample-join job).
    :param max_skew: allowed lead of downstream over upstream progress (not negative).
    :param fail: raise :class:`StreamSkewExceeded` for a skew beyond ``max_skew``; False logs a warning and
        returns ``ok=False``.
    :param upstream_vertex: a vertex id or part of a vertex name whose input watermark is the upstream job's
        progress (default: its sink vertices).
    :param downstream_vertex: the same for the downstream job.
    :param flink_conn_id: a ``flink_rest`` connection; both jobs run on that cluster.
    """

    template_fields: Sequence[str] = ("upstream_job_name", "downstream_job_name")

    def __init__(
        self,
        *,
        upstream_job_name: str,
        downstream_job_name: str,
        max_skew: timedelta = timedelta(0),
        fail: bool = True,
        upstream_vertex: str | None = None,
        downstream_vertex: str | None = None,
        flink_conn_id: str = FlinkRestHook.default_conn_name,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if max_skew < timedelta(0):
            raise FlinkConfigurationError(f"{self.task_id}: max_skew must not be negative.")
        self.upstream_job_name, self.downstream_job_name = upstream_job_name, downstream_job_name
        self.max_skew, self.fail = max_skew, fail
        self.upstream_vertex, self.downstream_vertex = upstream_vertex, downstream_vertex
        self.flink_conn_id = flink_conn_id

    def _progress(self, hook: FlinkRestHook, job_name: str, vertex: str | None) -> int | None:
        return read_progress(hook, job_name=job_name, vertex=vertex).progress_ms

    def execute(self, context: Context) -> dict:
        hook = FlinkRestHook(self.flink_conn_id)
        hook.base_url  # noqa: B018 - resolve the connection before the event loop starts
        up = self._progress(hook, self.upstream_job_name, self.upstream_vertex)
        down = self._progress(hook, self.downstream_job_name, self.downstream_vertex)
        skew = skew_ms(up, down)
        limit = int(self.max_skew.total_seconds() * 1000)
        ok = skew is None or skew <= limit
        msg = (f"{self.downstream_job_name} at {describe(down)} vs upstream {self.upstream_job_name} at "
               f"{describe(up)}: skew {'unknown' if skew is None else f'{skew} ms'} (allowed {limit} ms)")
        if not ok and self.fail:
            raise StreamSkewExceeded(
                f"Feature-crossing risk: {msg}. To fix this, hold the downstream job (stop it with a savepoint) "
                "until its upstream catches up, or check the upstream for a stall.", skew_ms=skew,
            )
        (self.log.info if ok else self.log.warning)("%s", msg)
        return {"upstream_ms": up, "downstream_ms": down, "skew_ms": skew, "ok": ok}
