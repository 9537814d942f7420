"""FlinkJobStateSensor: wait until a Flink job reaches target states (an Airflow sensor; deferrable)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TypedDict

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue

from airflow_rtml.exceptions import TRANSIENT, FlinkConfigurationError, FlinkJobNotFound, FlinkWaitTimeout, RtmlError, error_kind
from airflow_rtml.hooks.flink import FlinkRestHook
from airflow_rtml.links import XCOM_JOB_ID, FlinkJobLink
from airflow_rtml.operators.flink import _default_deferrable, _FlinkJobWaitMixin
from airflow_rtml.progress import EventStatus
from airflow_rtml.sensors.base import _UNSET, FlinkSensorTimeout, RtmlSensorMixin, deprecated_alias
from airflow_rtml.triggers.flink import evaluate_job_state, normalize_states, raise_for_event

__all__ = ["FlinkJobStateSensor", "JobStateResult"]


class JobStateResult(TypedDict):
    """What :class:`FlinkJobStateSensor` returns (XCom ``return_value``) on every path."""

    job_id: str
    state: str


class FlinkJobStateSensor(RtmlSensorMixin, _FlinkJobWaitMixin, BaseSensorOperator):
    """Wait until a Flink job is in one of ``target_states``.

    A FAILED or CANCELED job (when not a target) ends the wait at once with :class:`FlinkJobFailed` carrying
    Flink's root cause; an unknown job raises :class:`FlinkJobNotFound`; the timeout raises
    :class:`~airflow_rtml.sensors.base.FlinkSensorTimeout` (a ``FlinkWaitTimeout``; skipped with
    ``soft_fail=True``). A JobManager that is briefly unreachable does not fail the wait before the timeout.
    Sync and deferred paths raise the same exception types and return a :class:`JobStateResult` dict.
    ``RUNNING`` counts once every task of the job runs. Templated fields: ``job_id``, ``job_name``.

    :param job_id: the job to watch, by id (give exactly one of ``job_id``, ``job_name``).
    :param job_name: the job's name: the active job of that name, else its most recent run; no job of that
        name raises ``FlinkJobNotFound``.
    :param target_states: states that end the wait successfully, e.g. ``["RUNNING"]`` or ``["FINISHED"]``
        (case-insensitive; an unknown state name raises ``ValueError``).
    :param flink_conn_id: a ``flink_rest`` connection (the JobManager's REST API).
    :param deferrable: wait in the triggerer (default from ``[operators] default_deferrable``); it first looks
        on the worker for up to 10 s (most jobs get there by then).
    :param poke_interval: seconds (or timedelta) between state reads, on the worker and in the triggerer;
        default 5.
    :param timeout: seconds (or timedelta) from the first try, then ``FlinkSensorTimeout``; default 1 hour;
        None: ``[sensors] default_timeout``. Absolute in the triggerer, kept across triggerer restarts.
    :param poll_interval: deprecated name of ``poke_interval`` (a ``DeprecationWarning``; giving both with
        different values raises ``FlinkConfigurationError``).
    :param mode: ``"poke"`` (default: keeps the worker slot between reads) or ``"reschedule"`` (gives it back
        between reads); the worker path only: ``deferrable=True`` waits in the triggerer whatever the mode.
    :param soft_fail: a timeout skips the task instead of failing it, on the worker and in the triggerer; a
        FAILED/CANCELED or unknown job still fails it. Mutually exclusive with ``never_fail``.
    :param exponential_backoff: worker path only: read ever less often (Airflow's backoff from
        ``poke_interval``, capped by ``max_wait``); the triggerer reads every ``poke_interval``.
    :param max_wait: worker path only: the longest interval between reads with ``exponential_backoff``
        (seconds or timedelta).
    :param silent_fail: worker path only (Airflow's meaning): an exception a read raises other than a timeout
        (e.g. ``FlinkJobFailed``) is logged and the sensor reads on, so a FAILED job ends the task only at the
        timeout. Transient errors are retried without it.
    :param never_fail: worker path only (Airflow's meaning): any exception a read raises (a FAILED job too)
        skips the task instead of failing it; in the triggerer it acts like ``soft_fail``. Mutually exclusive
        with ``soft_fail``.
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
        poke_interval: timedelta | float = 5.0,
        timeout: timedelta | float | None = timedelta(hours=1),
        poll_interval: Any = _UNSET,
        **kwargs: Any,
    ):
        task_id = kwargs.get("task_id", "?")
        poke_interval = deprecated_alias(task_id, "poll_interval", "poke_interval", poll_interval, poke_interval, 5.0)
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        if (job_id is None) == (job_name is None):
            raise FlinkConfigurationError(f"{self.task_id}: give exactly one of job_id= or job_name=.")
        self.job_id = job_id
        self.job_name = job_name
        self.target_states = normalize_states(target_states)
        self.flink_conn_id = flink_conn_id
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self._resolved_job_id: str | None = None

    def execute(self, context: Context) -> JobStateResult:
        hook = FlinkRestHook(self.flink_conn_id)
        job_id = self._resolved_job_id = self.job_id or self._resolve_name(hook)
        context["ti"].xcom_push(key=XCOM_JOB_ID, value=job_id)
        if self.deferrable:
            try:
                return self._wait(hook, job_id, self.target_states, {"job_id": job_id})  # type: ignore[return-value]
            except FlinkWaitTimeout as exc:  # the look before deferring reached the deadline
                if isinstance(exc, FlinkSensorTimeout):
                    raise
                raise self._timeout_error(str(exc)) from exc
        event = self._run_sensor(context)
        return {"job_id": job_id, "state": event["state"]}

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One read of the job's state; done with the success event as its value."""
        hook = FlinkRestHook(self.flink_conn_id)
        job_id = self._resolved_job_id or self.job_id or self._resolve_name(hook)
        try:
            detail = hook.get_job(job_id)
            cause = hook.get_root_cause(job_id) if detail.state.is_failure else None
        except RtmlError as exc:
            if error_kind(exc) != TRANSIENT:
                raise
            self.log.warning("Flink not readable, will retry until the timeout: %s", exc)
            return False
        event = evaluate_job_state(job_id, detail.state, self.target_states, cause, detail.tasks_running)
        if event is None:
            return False
        raise_for_event(event)
        return PokeReturnValue(is_done=True, xcom_value=event)

    def execute_complete(self, context: Context, event: dict, result: dict | None = None) -> JobStateResult:
        """Resume after the trigger: raises the same exceptions as the worker path."""
        if event["status"] == EventStatus.TIMEOUT.value:
            raise self._timeout_error(event.get("message", "the wait timed out"))
        return super().execute_complete(context, event, result)  # type: ignore[return-value]

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
