"""A wait by job name on the real cluster before its job exists (issue 11, "no hot failure loops"): it waits for
the job to appear and follows it once submitted — never firing before the job's own progress passes the
threshold — or, when none appears within ``job_missing_timeout``, fails with ``FlinkJobNotFound`` naming it."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest
from event_time import start_event_time_job
from support import first_event, ti_context

from airflow_rtml.exceptions import FlinkJobNotFound
from airflow_rtml.sensors.watermark import StreamWatermarkSensor
from airflow_rtml.triggers.watermark import FlinkWatermarkTrigger

END = 1_767_265_200_000  # 2026-01-01T11:00:00Z



def test_a_wait_by_name_follows_a_job_submitted_after_it_started(stack, hook):
    name = f"rtml-late-{uuid.uuid4().hex[:8]}"
    out: dict = {}
    trigger = FlinkWatermarkTrigger(threshold_ms=END - 1, job_name=name, poll_interval=0.5,
                                    deadline=time.time() + 240, job_missing_timeout=200)
    waiter = threading.Thread(target=lambda: out.update(event=asyncio.run(first_event(trigger))), daemon=True)
    waiter.start()
    time.sleep(4)  # ~8 polls that find no job of the name
    assert waiter.is_alive(), f"the wait ended while its job did not exist yet: {out}"

    job = start_event_time_job(stack, name=name)
    try:
        job.produce(END - 3_600_000, END - 2)
        assert job.wait_progress(hook, END - 2) == END - 2
        time.sleep(2)
        assert waiter.is_alive(), f"fired before the job's progress reached the threshold: {out}"
        job.produce(END - 1)
        waiter.join(60)
        assert not waiter.is_alive(), "the wait did not fire after the crossing"
        event = out["event"]
        assert event["status"] == "success" and event["job_id"] == job.job_id, event
        assert event["progress_ms"] == END - 1, event
    finally:
        hook.cancel_job(job.job_id)


def test_no_job_of_the_name_within_the_timeout_raises_job_not_found(stack, hook):
    name = f"rtml-never-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    with pytest.raises(FlinkJobNotFound, match=r"within 3s \(job_missing_timeout\)"):
        StreamWatermarkSensor(task_id="s", job_name=name, target=END, deferrable=False, poke_interval=0.5,
                              timeout=60, job_missing_timeout=3).execute(ti_context())
    took = time.monotonic() - t0
    assert 3 <= took < 15, took
    t0 = time.monotonic()
    with pytest.raises(FlinkJobNotFound):  # 0: the round-1 behaviour, at once
        StreamWatermarkSensor(task_id="s", job_name=name, target=END, deferrable=False, poke_interval=0.5,
                              timeout=60, job_missing_timeout=0).execute(ti_context())
    assert time.monotonic() - t0 < 10
