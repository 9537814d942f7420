"""Trigger event payloads: plain JSON dicts with a ``status`` and, on failure, a ``reason`` (public API, stable).

Pure: no Airflow import. The reasons are the project's one error vocabulary
(:class:`~airflow_rtml.exceptions.FailureReason`); :func:`~airflow_rtml.exceptions.exception_for` turns a
failure event back into the exception the sync path raises.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from airflow_rtml.exceptions import FailureReason

__all__ = ["EventStatus", "FailureReason", "make_event"]


class EventStatus(str, Enum):
    """How a wait ended."""

    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"


def make_event(
    status: EventStatus, job_id: str, message: str, state: str | None = None,
    reason: FailureReason | None = None, root_cause: str | None = None, **extra: Any,
) -> dict:
    """A trigger event payload of plain JSON types (enums as their string values)."""
    return {"status": status.value, "job_id": job_id, "state": state,
            "reason": reason.value if reason else None, "message": message, "root_cause": root_cause, **extra}
