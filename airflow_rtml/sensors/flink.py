"""FlinkJobStateSensor: wait until a Flink job reaches target states (deferrable)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context

from airflow_rtml.exceptions import FlinkConfigurationError, FlinkJobNotFound
from airflow_rtml.hooks.flink import FlinkRestHook
from airflow_rtml.operators.flink import XCOM_JOB_ID, FlinkJobLink, _default_deferrable, _FlinkJobWaitMixin
from airflow_rtml.triggers.flink import normalize_states


class FlinkJobStateSensor(_FlinkJobWaitMixin, BaseOperator):
    """Wait until a Flink job is in one of ``target_states``.

    A FAILED or CANCELED job (when not a target) ends the wait at once with :class:`FlinkJobFailed` carrying
    Flink's root cause; an unknown job raises :class:`FlinkJobNotFound`; the deadline raises
    :class:`FlinkWaitTimeout`. A JobManager that is briefly unreachable does not fail the wait before the
    deadline. Sync and deferred paths raise the same exception types. Returns ``{"job_id", "state"}``.

    :param job_id: the job id (templated); or
    :param job_name: the job's name: the active job of that name, else its most recent run.
    :param target_states: e.g. ``["RUNNING"]`` or ``["FINISHED"]``.
    :param timeout: absolute deadline from the first try, kept across triggerer restarts.
    """

    template_fields: Sequence[str] = ("job_id", "job_name")
    operator_extra_links = (FlinkJobLink(),)

    def __init__(
        self,
        *,
        job_id: str | None = None,
        job_name: str | None = None,
        target_states: Sequence[str] = ("RUNNING",),
        flink_conn_id: str = FlinkRestHook.default_conn_name,
        deferrable: bool | None = None,
        poll_interval: float = 5.0,
        timeout: timedelta | None = timedelta(hours=1),
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if (job_id is None) == (job_name is None):
            raise FlinkConfigurationError(f"{self.task_id}: give exactly one of job_id= or job_name=.")
        self.job_id = job_id
        self.job_name = job_name
        self.target_states = normalize_states(target_states)
        self.flink_conn_id = flink_conn_id
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        self.wait_timeout = timeout

    def execute(self, context: Context) -> dict:
        hook = FlinkRestHook(self.flink_conn_id)
        job_id = self.job_id or self._resolve_name(hook)
        context["ti"].xcom_push(key=XCOM_JOB_ID, value=job_id)
        return self._wait(hook, job_id, self.target_states, {"job_id": job_id})

    def _resolve_name(self, hook: FlinkRestHook) -> str:
        active = hook.find_active_job(self.job_name)
        if active:
            return active.job_id
        runs = sorted(hook.find_jobs_by_name(self.job_name), key=lambda j: j.start_time_ms)
        if not runs:
            raise FlinkJobNotFound(
                f"No Flink job is named {self.job_name!r}. To fix this, check the name (the job's pipeline.name).",
                job_name=self.job_name,
            )
        return runs[-1].job_id
