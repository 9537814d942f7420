"""FlinkRestHook against the real local Flink cluster: submit, find by name, checkpoints, savepoints, cancel."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from airflow_rtml.exceptions import FlinkConnectionError, FlinkJobNotFound
from airflow_rtml.hooks.flink import FlinkRestHook, JobState

JOBS = Path(__file__).parent / "jobs"


@pytest.fixture
def hook(stack, monkeypatch) -> FlinkRestHook:
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_LOCAL", f"flink-rest://127.0.0.1:{stack.cfg.ports.flink_rest}")
    return FlinkRestHook("flink_local")


def _wait_state(hook: FlinkRestHook, job_id: str, states: set[JobState], timeout: float = 90) -> JobState:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = hook.get_job_state(job_id)
        if state in states:
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} is {state}, wanted one of {states} within {timeout}s")


def _submit(hook: FlinkRestHook, stack, name: str, *extra: str) -> str:
    return hook.run_python(str(JOBS / "streaming_sql_job.py"), driver_jar=stack.cfg.flink_python_jar,
                           args=[name, *extra])


def test_submit_python_job_find_by_name_checkpoint_and_stop_with_savepoint(hook, stack):
    name = f"rtml-hook-{uuid.uuid4().hex[:8]}"
    job_id = _submit(hook, stack, name)
    try:
        assert _wait_state(hook, job_id, {JobState.RUNNING}) == JobState.RUNNING
        assert hook.find_active_job(name).job_id == job_id
        detail = hook.get_job(job_id)
        assert detail.name == name and len(detail.vertices) >= 1

        deadline = time.monotonic() + 60
        while hook.get_checkpoints(job_id).completed < 1:
            assert time.monotonic() < deadline, "no checkpoint completed within 60s"
            time.sleep(1)

        trigger = uuid.uuid4().hex
        # Our own trigger id: the same id again is the same operation (a retried request is idempotent).
        assert hook.stop_with_savepoint(job_id, trigger_id=trigger) == trigger
        deadline = time.monotonic() + 60
        while (status := hook.get_savepoint_status(job_id, trigger)).in_progress:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert status.failure_cause is None, status.failure_cause
        assert status.location and Path(status.location.removeprefix("file:")).exists()
        assert _wait_state(hook, job_id, {JobState.FINISHED}) == JobState.FINISHED
        assert hook.find_active_job(name) is None
    finally:
        if not hook.get_job_state(job_id).is_terminal:
            hook.cancel_job(job_id)


def test_cancel_and_async_twins(hook, stack):
    name = f"rtml-hook-cancel-{uuid.uuid4().hex[:8]}"
    job_id = _submit(hook, stack, name)
    _wait_state(hook, job_id, {JobState.RUNNING})

    async def read():
        return await hook.a_get_job(job_id), await hook.a_list_jobs(), await hook.a_get_checkpoints(job_id)

    detail, jobs, _ = asyncio.run(read())
    assert detail.state == JobState.RUNNING and any(j.job_id == job_id for j in jobs)
    hook.cancel_job(job_id)
    assert _wait_state(hook, job_id, {JobState.CANCELED}) == JobState.CANCELED


def test_failing_job_surfaces_its_root_cause(hook, stack):
    job_id = _submit(hook, stack, f"rtml-hook-fail-{uuid.uuid4().hex[:8]}", "fail")
    assert _wait_state(hook, job_id, {JobState.FAILED}, timeout=120) == JobState.FAILED
    cause = hook.get_root_cause(job_id)
    assert cause and "rtml-test-boom" in cause


def test_unknown_job_raises_job_not_found(hook):
    missing = uuid.uuid4().hex
    with pytest.raises(FlinkJobNotFound, match=missing) as err:
        hook.get_job(missing)
    assert err.value.job_id == missing
    with pytest.raises(FlinkJobNotFound):
        asyncio.run(hook.a_get_checkpoints(missing))


def test_stop_of_a_finished_job_reports_the_failure_cause(hook, stack):
    job_id = _submit(hook, stack, f"rtml-hook-ended-{uuid.uuid4().hex[:8]}")
    _wait_state(hook, job_id, {JobState.RUNNING})
    hook.cancel_job(job_id)
    _wait_state(hook, job_id, {JobState.CANCELED})
    # Flink answers COMPLETED *with* operation.failure-cause when the job is not running.
    trigger = uuid.uuid4().hex
    hook.stop_with_savepoint(job_id, trigger_id=trigger)
    deadline = time.monotonic() + 30
    while (status := hook.get_savepoint_status(job_id, trigger)).in_progress:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert status.failure_cause, status
    assert status.location is None


def test_test_connection_against_the_real_cluster(hook):
    ok, message = hook.test_connection()
    assert ok, message
    assert "Flink 2.2.1" in message


def test_unreachable_jobmanager_raises_connection_error_naming_the_fix(monkeypatch):
    with __import__("socket").socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_NOWHERE", f"flink-rest://127.0.0.1:{port}")
    hook = FlinkRestHook("flink_nowhere", retry_limit=2, retry_delay=0.05)
    with pytest.raises(FlinkConnectionError, match="did not answer GET /jobs/overview after 2 attempt"):
        hook.list_jobs()
