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
from enum import Enum
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_rtml.exceptions import (
    FlinkApiError,
    FlinkConnectionError,
    FlinkJobFailed,
    FlinkJobNotFound,
    FlinkWaitTimeout,
)
from airflow_rtml.hooks.flink import FlinkRestHook, JobState, short_cause


class EventStatus(str, Enum):
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"


class FailureReason(str, Enum):
    JOB_FAILED = "job_failed"  # FAILED / CANCELED while waiting for something else
    UNEXPECTED_STATE = "unexpected_state"  # another terminal state (e.g. FINISHED while waiting for RUNNING)
    JOB_NOT_FOUND = "job_not_found"
    API_ERROR = "api_error"  # a non-retryable REST error (4xx)


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


def make_event(
    status: EventStatus, job_id: str, message: str, state: str | None = None,
    reason: FailureReason | None = None, root_cause: str | None = None,
) -> dict:
    """A trigger event payload of plain JSON types (enums as their string values)."""
    return {"status": status.value, "job_id": job_id, "state": state,
            "reason": reason.value if reason else None, "message": message, "root_cause": root_cause}


def evaluate_job_state(job_id: str, state: JobState, targets: list[str], root_cause: str | None = None) -> dict | None:
    """The terminal event for ``state``, or None while the wait goes on."""
    if state.value in targets:
        return make_event(EventStatus.SUCCESS, job_id, f"Flink job {job_id} is {state.value}", state.value)
    if state.is_terminal:
        reason = FailureReason.JOB_FAILED if state.is_failure else FailureReason.UNEXPECTED_STATE
        msg = f"Flink job {job_id} is {state.value} while waiting for {'/'.join(targets)}"
        if state.is_failure:
            msg += f". Root cause:\n{short_cause(root_cause)}"
        return make_event(EventStatus.FAILED, job_id, msg, state.value, reason, root_cause)
    return None


def raise_for_event(event: dict) -> dict:
    """Return a success event unchanged; raise the matching exception for any other event."""
    status = EventStatus(event["status"])
    if status is EventStatus.SUCCESS:
        return event
    job_id, message = event.get("job_id", ""), event.get("message", "")
    if status is EventStatus.TIMEOUT:
        raise FlinkWaitTimeout(message)
    reason = FailureReason(event["reason"])
    if reason is FailureReason.JOB_NOT_FOUND:
        raise FlinkJobNotFound(message, job_id=job_id)
    if reason is FailureReason.API_ERROR:
        raise FlinkApiError(message)
    raise FlinkJobFailed(message, job_id=job_id, state=event.get("state") or "", root_cause=event.get("root_cause"))


class FlinkJobStateTrigger(BaseTrigger):
    """Poll a Flink job until it reaches one of ``target_states``; yield exactly one terminal event.

    Never blocks the event loop (httpx.AsyncClient). Transient REST errors (JobManager restarting,
    5xx, 429) are logged and retried until the absolute ``deadline``, which is serialized: a restarted
    triggerer keeps the original timeout. A FAILED/CANCELED job ends the wait at once with Flink's root cause.

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
        super().__init__()
        self.job_id = job_id
        self.target_states = normalize_states(target_states)
        self.flink_conn_id = flink_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = float(deadline) if deadline is not None else None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "target_states": self.target_states,
                "flink_conn_id": self.flink_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = FlinkRestHook(self.flink_conn_id)
        last_error = None
        while True:
            try:
                detail = await hook.a_get_job(self.job_id)
                cause = await hook.a_get_root_cause(self.job_id) if detail.state.is_failure else None
                event = evaluate_job_state(self.job_id, detail.state, self.target_states, cause)
                if event is not None:
                    yield TriggerEvent(event)
                    return
                last_error = None
            except FlinkJobNotFound as exc:
                yield TriggerEvent(make_event(EventStatus.FAILED, self.job_id, str(exc),
                                              reason=FailureReason.JOB_NOT_FOUND))
                return
            except FlinkConnectionError as exc:
                last_error = str(exc)
                self.log.warning("Flink not reachable, will retry until the deadline: %s", exc)
            except FlinkApiError as exc:
                if exc.status_code is not None and exc.status_code >= 500:
                    last_error = str(exc)
                    self.log.warning("Flink answered %s, will retry until the deadline", exc.status_code)
                else:
                    yield TriggerEvent(make_event(EventStatus.FAILED, self.job_id, str(exc),
                                                  reason=FailureReason.API_ERROR))
                    return
            if self.deadline is not None and time.time() >= self.deadline:
                yield TriggerEvent(make_event(
                    EventStatus.TIMEOUT, self.job_id,
                    f"Flink job {self.job_id} did not reach {'/'.join(self.target_states)} before the deadline"
                    + (f"; last error: {last_error}" if last_error else ""),
                ))
                return
            await asyncio.sleep(self.poll_interval)
