"""FlinkJobStateTrigger: wait, in the triggerer, until a Flink job reaches one of the target states.

Event payload (public API, stable): ``{"status": EventStatus, "job_id": str, "state": str | None,
"reason": FailureReason | None, "message": str}``. The sync paths build the same payload with
:func:`evaluate_job_state` and turn a non-success payload into an exception with :func:`raise_for_event`,
so sync and deferred paths reach the same terminal states and raise the same exception types.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_rtml.exceptions import TRANSIENT, FailureReason, FlinkWaitTimeout, RtmlError, error_kind, exception_for
from airflow_rtml.hooks.flink import FlinkRestHook, JobState, SavepointStatus, check_flink_id
from airflow_rtml.progress import EventStatus, make_event, short_cause

__all__ = ["EventStatus", "FailureReason", "FlinkJobStateTrigger", "FlinkPollingTrigger", "FlinkSavepointTrigger",
           "evaluate_job_state", "evaluate_savepoint", "make_event", "normalize_states", "raise_for_event"]


def normalize_states(states: Iterable[str | JobState]) -> list[str]:
    """Upper-cased, validated state names; an unknown name raises ValueError listing the valid ones."""
    out = []
    for s in states:
        name = s.value if isinstance(s, JobState) else str(s).upper()
        if name not in JobState.__members__:
            raise ValueError(f"Unknown Flink job state {s!r}; valid states are {sorted(JobState.__members__)}.")
        out.append(name)
    if not out:
        raise ValueError("target_states must name at least one Flink job state.")
    return out


def evaluate_job_state(
    job_id: str, state: JobState, targets: list[str], root_cause: str | None = None, tasks_running: bool = True,
) -> dict | None:
    """The terminal event for ``state``, or None while the wait goes on.

    ``RUNNING`` counts only once every task runs (``tasks_running``): Flink reports a job RUNNING while its
    tasks are still deploying, and a savepoint requested then fails with "Not all required tasks are running".
    """
    if state.value in targets and (state is not JobState.RUNNING or tasks_running):
        return make_event(EventStatus.SUCCESS, job_id, f"Flink job {job_id} is {state.value}", state.value)
    if state.is_terminal:
        reason = FailureReason.JOB_FAILED if state.is_failure else FailureReason.UNEXPECTED_STATE
        msg = f"Flink job {job_id} is {state.value} while waiting for {'/'.join(targets)}"
        if state.is_failure:
            msg += f". Root cause:\n{short_cause(root_cause)}"
        return make_event(EventStatus.FAILED, job_id, msg, state.value, reason, root_cause)
    return None


def evaluate_savepoint(job_id: str, status: SavepointStatus, job_state: JobState | None = None) -> dict | None:
    """The terminal event of a savepoint operation, or None while it is in progress.

    Flink answers COMPLETED *with* ``operation.failure-cause`` when the job was not running: that is a failure.
    ``job_state`` (looked up only on failure) goes into the message.
    """
    if status.in_progress:
        return None
    extra = {"trigger_id": status.trigger_id, "location": status.location}
    if status.failure_cause or not status.location:
        state = job_state.value if job_state else None
        return make_event(
            EventStatus.FAILED, job_id,
            f"Savepoint of job {job_id} failed (job is {state or 'unknown'}). To fix this, check that the job is "
            f"RUNNING and that the savepoint directory is writable by Flink. Flink said:\n"
            f"{short_cause(status.failure_cause or 'no savepoint location')}",
            state, FailureReason.SAVEPOINT_FAILED, status.failure_cause, **extra,
        )
    return make_event(EventStatus.SUCCESS, job_id, f"Savepoint of job {job_id} written to {status.location}",
                      **extra)


def raise_for_event(event: dict) -> dict:
    """Return a success event unchanged; raise the matching exception for any other event (the one mapping
    :func:`~airflow_rtml.exceptions.exception_for`)."""
    status = EventStatus(event["status"])
    if status is EventStatus.SUCCESS:
        return event
    job_id, message = event.get("job_id") or "", event.get("message", "")
    if status is EventStatus.TIMEOUT:
        raise FlinkWaitTimeout(message)
    raise exception_for(event["reason"], message, job_id=job_id, stream=event.get("stream"),
                        state=event.get("state"), root_cause=event.get("root_cause"),
                        progress_ms=event.get("progress_ms"), trigger_id=event.get("trigger_id"))


class FlinkPollingTrigger(BaseTrigger):
    """Base of the Flink triggers: poll until :meth:`poll` returns an event; one terminal event, never blocking.

    Transient REST errors (JobManager restarting, 5xx, 429) are logged and retried until the absolute
    ``deadline``, which is serialized: a restarted triggerer keeps the original timeout. An unknown job and
    other 4xx answers end the wait at once. Subclasses implement :meth:`poll`, :meth:`timeout_message` and
    :meth:`_kwargs` (the serialized fields besides ``job_id``, ``flink_conn_id``, ``poll_interval``, ``deadline``).

    :param job_id: the Flink job id (32 lowercase hex; anything else raises ``FlinkConfigurationError``).
    :param flink_conn_id: a ``flink_rest`` connection.
    :param poll_interval: seconds between polls.
    :param deadline: absolute epoch seconds after which the trigger yields a timeout event; None = no limit.
    """

    def __init__(self, job_id: str, flink_conn_id: str, poll_interval: float, deadline: float | None):
        super().__init__()
        self.job_id = check_flink_id(job_id)
        self.flink_conn_id = flink_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = float(deadline) if deadline is not None else None

    def _kwargs(self) -> dict[str, Any]:
        return {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"job_id": self.job_id, **self._kwargs(), "flink_conn_id": self.flink_conn_id,
             "poll_interval": self.poll_interval, "deadline": self.deadline},
        )

    async def poll(self, hook: FlinkRestHook) -> dict | None:
        raise NotImplementedError

    def timeout_message(self) -> str:
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = FlinkRestHook(self.flink_conn_id)
        async with hook.a_session():  # one connection pool for the whole wait
            async for event in self.poll_until_done(hook):
                yield event

    def run_blocking(self, hook: FlinkRestHook) -> dict:
        """The same poll loop on a worker (the sync path of the operators): return the terminal payload.

        ``hook`` must already have its connection resolved (call ``hook.base_url`` first) so that nothing
        async touches Airflow's task-side connection lookup.
        """

        async def first() -> dict:
            async with hook.a_session():
                async for event in self.poll_until_done(hook):
                    return event.payload
            raise RuntimeError("poll_until_done ended without an event")  # pragma: no cover - it never does

        return asyncio.run(first())

    async def poll_until_done(self, hook: FlinkRestHook) -> AsyncIterator[TriggerEvent]:
        """Yield exactly one terminal event (see the class docstring)."""
        last_error = None
        while True:
            try:
                event = await self.poll(hook)
                if event is not None:
                    yield TriggerEvent(event)
                    return
                last_error = None
            except RtmlError as exc:
                kind = error_kind(exc)
                if kind != TRANSIENT:
                    yield TriggerEvent(make_event(EventStatus.FAILED, self.job_id, str(exc), reason=kind))
                    return
                if str(exc) != last_error:
                    self.log.warning("Flink not readable, will retry until the deadline: %s", exc)
                last_error = str(exc)
            if self.deadline is not None and time.time() >= self.deadline:
                yield TriggerEvent(make_event(
                    EventStatus.TIMEOUT, self.job_id,
                    self.timeout_message() + (f"; last error: {last_error}" if last_error else ""),
                ))
                return
            await asyncio.sleep(self.poll_interval)


class FlinkJobStateTrigger(FlinkPollingTrigger):
    """Poll a Flink job until it reaches one of ``target_states``; yield exactly one terminal event.

    A FAILED/CANCELED job ends the wait at once with Flink's root cause. See :class:`FlinkPollingTrigger`
    for errors and the deadline.

    :param job_id: the Flink job id.
    :param target_states: states that end the wait successfully, e.g. ``["RUNNING"]``.
    :param flink_conn_id: a ``flink_rest`` connection.
    :param poll_interval: seconds between polls.
    :param deadline: absolute epoch seconds after which the trigger yields a timeout event; None = no limit.
    """

    def __init__(
        self,
        job_id: str,
        target_states: list[str],
        flink_conn_id: str = FlinkRestHook.default_conn_name,
        poll_interval: float = 2.0,
        deadline: float | None = None,
    ):
        super().__init__(job_id, flink_conn_id, poll_interval, deadline)
        self.target_states = normalize_states(target_states)

    def _kwargs(self) -> dict[str, Any]:
        return {"target_states": self.target_states}

    async def poll(self, hook: FlinkRestHook) -> dict | None:
        detail = await hook.a_get_job(self.job_id)
        cause = await hook.a_get_root_cause(self.job_id) if detail.state.is_failure else None
        return evaluate_job_state(self.job_id, detail.state, self.target_states, cause, detail.tasks_running)

    def timeout_message(self) -> str:
        return f"Flink job {self.job_id} did not reach {'/'.join(self.target_states)} before the deadline"


class FlinkSavepointTrigger(FlinkPollingTrigger):
    """Poll a savepoint or stop-with-savepoint operation (by our trigger id) until it completes.

    Success payload adds ``trigger_id`` and ``location`` (the savepoint path); a completed operation with a
    failure cause yields ``reason="savepoint_failed"``. The operation runs in Flink whether or not this trigger
    runs: a restarted triggerer polls the same trigger id and finds the same result.

    :param job_id: the Flink job id.
    :param savepoint_trigger_id: the savepoint operation's Flink trigger id (32 hex). (Not ``trigger_id``:
        the triggerer sets that attribute on every trigger to its database id.)
    :param flink_conn_id: a ``flink_rest`` connection.
    :param poll_interval: seconds between polls of the operation.
    :param deadline: absolute epoch seconds after which the trigger yields a timeout event; None = no limit.
        The savepoint operation is not cancelled at the deadline.
    :param stop: the operation is a stop-with-savepoint: also wait until the job has ended (Flink completes
        the savepoint a moment before the job reaches FINISHED).
    """

    def __init__(
        self,
        job_id: str,
        savepoint_trigger_id: str,
        flink_conn_id: str = FlinkRestHook.default_conn_name,
        poll_interval: float = 1.0,
        deadline: float | None = None,
        stop: bool = False,
    ):
        super().__init__(job_id, flink_conn_id, poll_interval, deadline)
        self.savepoint_trigger_id = savepoint_trigger_id
        self.stop = bool(stop)

    def _kwargs(self) -> dict[str, Any]:
        return {"savepoint_trigger_id": self.savepoint_trigger_id, "stop": self.stop}

    async def poll(self, hook: FlinkRestHook) -> dict | None:
        status = await hook.a_get_savepoint_status(self.job_id, self.savepoint_trigger_id)
        if status.in_progress:
            return None
        failed = bool(status.failure_cause or not status.location)
        state = (await hook.a_get_job(self.job_id)).state if failed or self.stop else None
        if not failed and self.stop and not state.is_terminal:
            return None  # savepoint written, job still shutting down
        return evaluate_savepoint(self.job_id, status, state)

    def timeout_message(self) -> str:
        return f"Savepoint {self.savepoint_trigger_id} of Flink job {self.job_id} did not complete before the deadline"
