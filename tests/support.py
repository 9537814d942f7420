"""Helpers shared by the integration and system tests (no fixtures here: those live in conftest.py)."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

from airflow_rtml.hooks.flink import FlinkRestHook


class TaskInstanceStub(SimpleNamespace):
    """What the operators use of a task instance when their execute() is called directly: ids and XCom pushes."""

    def xcom_push(self, key, value):
        self.xcoms[key] = value


def ti_context(task_id: str = "t") -> dict:
    """A minimal execute() context: a task instance with fresh ids (Flink, the real part, is untouched)."""
    return {"ti": TaskInstanceStub(dag_id="d", task_id=task_id, run_id=f"r-{uuid.uuid4().hex[:6]}", map_index=-1,
                                   xcoms={})}


def cancel_jobs_named(hook: FlinkRestHook, *names: str) -> None:
    """Cancel every non-terminal Flink job with one of these names (test clean-up)."""
    for name in names:
        for job in hook.find_jobs_by_name(name):
            if not job.state.is_terminal:
                hook.cancel_job(job.job_id)


def wait_for(what: str, check, timeout: float, interval: float = 1.0):
    """Call ``check`` until it returns something truthy and return that; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


async def first_event(trigger) -> dict:
    """The payload of the first event ``trigger.run()`` yields (a trigger run alone, as without a triggerer)."""
    from contextlib import aclosing

    async with aclosing(trigger.run()) as events:
        async for event in events:
            return event.payload
    raise AssertionError("the trigger ended without an event")
