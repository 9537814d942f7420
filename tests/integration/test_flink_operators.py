"""Flink lifecycle operators and the job-state trigger against the real local cluster.

The operators' execute() is called directly with a minimal task-instance stand-in (it only records XComs);
Flink is real. The deferral inside the real Airflow triggerer is covered by tests/system.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from support import cancel_jobs_named, ti_context

from airflow_rtml.exceptions import FlinkJobFailed, FlinkJobNotFound, FlinkSavepointFailed
from airflow_rtml.hooks.flink import JobState
from airflow_rtml.operators.flink import FlinkStopJobOperator, FlinkSubmitJobOperator
from airflow_rtml.sensors.flink import FlinkJobStateSensor
from airflow_rtml.triggers.flink import FlinkJobStateTrigger

JOB = str(Path(__file__).parent / "jobs" / "streaming_sql_job.py")


def _submit_op(name: str, **kw) -> FlinkSubmitJobOperator:
    # The script gets the name as argv[1] too, so its pipeline.name matches the operator's job_name.
    return FlinkSubmitJobOperator(task_id="submit", job_name=name, python=JOB, args=[name], deferrable=False,
                                  poll_interval=0.5, **kw)


def test_submit_then_rerun_adopts_exactly_one_job_then_stop_with_savepoint(hook):
    name = f"rtml-op-{uuid.uuid4().hex[:8]}"
    try:
        t0 = time.monotonic()
        first = _submit_op(name).execute(ti_context())
        submit_s = time.monotonic() - t0
        assert first["state"] == "RUNNING" and not first["adopted"]

        t0 = time.monotonic()
        again = _submit_op(name).execute(ti_context())
        adopt_s = time.monotonic() - t0
        assert again["adopted"] and again["job_id"] == first["job_id"]
        assert [j.job_id for j in hook.find_jobs_by_name(name) if not j.state.is_terminal] == [first["job_id"]]

        with pytest.raises(FlinkJobFailed, match="if_running='fail'"):
            _submit_op(name, if_running="fail").execute(ti_context())

        while hook.get_checkpoints(first["job_id"]).completed < 1:
            time.sleep(0.5)
        t0 = time.monotonic()
        path = FlinkStopJobOperator(task_id="stop", job_name=name).execute(ti_context("stop"))
        stop_s = time.monotonic() - t0
        assert Path(path.removeprefix("file:")).exists()
        assert hook.get_job_state(first["job_id"]) == JobState.FINISHED
        print(f"latency: submit→RUNNING {submit_s:.1f}s, adopt {adopt_s:.2f}s, stop-with-savepoint {stop_s:.1f}s")
    finally:
        cancel_jobs_named(hook, name)


def test_upgrade_stops_with_savepoint_and_restores_the_new_job_from_it(hook):
    name = f"rtml-upgrade-{uuid.uuid4().hex[:8]}"
    try:
        old = _submit_op(name).execute(ti_context())
        while hook.get_checkpoints(old["job_id"]).completed < 1:
            time.sleep(0.5)
        new = _submit_op(name, if_running="upgrade", if_unchanged="restart").execute(ti_context())
        assert new["job_id"] != old["job_id"] and new["savepoint_path"]
        assert hook.get_job_state(old["job_id"]) == JobState.FINISHED
        info = hook.get_checkpoints(new["job_id"])
        assert info.restored_is_savepoint and info.restored_from == new["savepoint_path"]
        assert [j.job_id for j in hook.find_jobs_by_name(name) if not j.state.is_terminal] == [new["job_id"]]
    finally:
        cancel_jobs_named(hook, name)


def test_cancel_mode_and_stop_of_an_unknown_name(hook):
    name = f"rtml-cancel-{uuid.uuid4().hex[:8]}"
    try:
        job = _submit_op(name).execute(ti_context())
        assert FlinkStopJobOperator(task_id="c", job_id=job["job_id"], mode="cancel").execute(ti_context()) is None
        assert hook.get_job_state(job["job_id"]) == JobState.CANCELED
        with pytest.raises(FlinkJobNotFound, match=name):
            FlinkStopJobOperator(task_id="s", job_name=name).execute(ti_context())
        with pytest.raises(FlinkSavepointFailed, match="is CANCELED"):
            FlinkStopJobOperator(task_id="s", job_id=job["job_id"]).execute(ti_context())
    finally:
        cancel_jobs_named(hook, name)


def test_a_job_that_fails_after_submission_raises_its_root_cause_sync(hook):
    name = f"rtml-fail-{uuid.uuid4().hex[:8]}"
    op = FlinkSubmitJobOperator(task_id="submit", job_name=name, python=JOB, args=[name, "fail"],
                                wait_for="finished", deferrable=False, poll_interval=0.5)
    with pytest.raises(FlinkJobFailed, match="rtml-test-boom") as err:
        op.execute(ti_context())
    assert err.value.state == "FAILED"
    with pytest.raises(FlinkJobFailed, match="rtml-test-boom"):
        FlinkJobStateSensor(task_id="s", job_name=name, deferrable=False, poll_interval=0.5).execute(ti_context())


async def _first_event(trigger: FlinkJobStateTrigger) -> dict:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("trigger ended without an event")


def test_trigger_reaches_the_same_outcomes_against_the_real_cluster(hook):
    name = f"rtml-trig-{uuid.uuid4().hex[:8]}"
    try:
        job = _submit_op(name, wait_for="running").execute(ti_context())
        ok = asyncio.run(_first_event(FlinkJobStateTrigger(job["job_id"], ["RUNNING"], poll_interval=0.5)))
        assert ok["status"] == "success" and ok["state"] == "RUNNING"
        late = asyncio.run(_first_event(
            FlinkJobStateTrigger(job["job_id"], ["FINISHED"], poll_interval=0.5, deadline=time.time() + 2)))
        assert late["status"] == "timeout"
        missing = asyncio.run(_first_event(FlinkJobStateTrigger(uuid.uuid4().hex, ["RUNNING"])))
        assert missing["reason"] == "job_not_found"
    finally:
        cancel_jobs_named(hook, name)

    failing = FlinkSubmitJobOperator(task_id="submit", job_name=name + "-f", python=JOB, args=[name + "-f", "fail"],
                                     wait_for="running", deferrable=False, poll_interval=0.5,
                                     wait_timeout=timedelta(minutes=2))
    job_id = failing._submit(hook, None)
    failed = asyncio.run(_first_event(FlinkJobStateTrigger(job_id, ["FINISHED"], poll_interval=0.5,
                                                           deadline=time.time() + 120)))
    assert failed["status"] == "failed" and failed["state"] == "FAILED"
    assert "rtml-test-boom" in failed["root_cause"]
