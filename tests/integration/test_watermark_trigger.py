"""FlinkWatermarkTrigger and StreamWatermarkSensor against a real Flink job whose event time the test drives
by producing Kafka records with chosen timestamps (see event_time.py)."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from datetime import datetime, timedelta, timezone

import pytest
from event_time import start_event_time_job

from airflow_rtml.exceptions import FlinkJobFailed, StreamStalled
from airflow_rtml.progress import threshold_for
from airflow_rtml.sensors.watermark import StreamWatermarkSensor
from airflow_rtml.triggers.watermark import FlinkWatermarkTrigger

#: Both watermark sources: the JobManager's REST API, and the TaskManager's Prometheus reporter.
SOURCES = pytest.mark.parametrize("conn_id", ["flink_default", "flink_reporter"])
HOUR_END = int(datetime(2026, 1, 1, 11, tzinfo=timezone.utc).timestamp() * 1000)  # window [10:00, 11:00)


async def _afirst(trigger: FlinkWatermarkTrigger) -> dict:
    async with aclosing(trigger.run()) as events:
        async for event in events:
            return event.payload
    raise AssertionError("the trigger ended without an event")


def _first(trigger: FlinkWatermarkTrigger) -> dict:
    return asyncio.run(_afirst(trigger))


@SOURCES
def test_window_boundary_is_exact_and_nothing_fires_early(job, hook, conn_id):
    """Progress at end - 2: the wait for window [10:00, 11:00) is still waiting after several poll cycles.
    Progress at end - 1 (Flink's own firing rule): it fires."""
    threshold = threshold_for(HOUR_END)
    assert threshold == HOUR_END - 1
    job.produce(HOUR_END - 3_600_000, HOUR_END - 2)
    assert job.wait_progress(hook, HOUR_END - 2) == HOUR_END - 2

    t0 = time.monotonic()
    early = _first(FlinkWatermarkTrigger(threshold_ms=threshold, job_name=job.name, poll_interval=0.5,
                                         deadline=time.time() + 5, flink_conn_id=conn_id))
    assert early["status"] == "timeout" and early["progress_ms"] == HOUR_END - 2, early
    assert time.monotonic() - t0 >= 4.5  # ~10 poll cycles, every one of them saw end - 2 and kept waiting

    job.produce(HOUR_END - 1)
    fired = _first(FlinkWatermarkTrigger(threshold_ms=threshold, job_name=job.name, poll_interval=0.5,
                                         deadline=time.time() + 30, flink_conn_id=conn_id))
    assert fired["status"] == "success" and fired["progress_ms"] == HOUR_END - 1, fired
    assert fired["job_id"] == job.job_id and fired["stream"] == job.name


def test_commit_aware_waits_for_a_checkpoint_after_the_crossing(stack, hook):
    """With checkpoints every 6 s, the plain wait fires at the crossing; the commit-aware wait fires only
    once a checkpoint triggered after the crossing has completed."""
    job = start_event_time_job(stack, checkpoint_interval="6s")
    try:
        job.produce(HOUR_END + 5)
        assert job.wait_progress(hook, HOUR_END + 5) == HOUR_END + 5

        async def both():
            kw = {"threshold_ms": threshold_for(HOUR_END), "job_id": job.job_id, "poll_interval": 0.3,
                  "deadline": time.time() + 40}
            t0 = time.monotonic()
            plain = await _afirst(FlinkWatermarkTrigger(**kw))
            t_plain = time.monotonic() - t0
            committed = await _afirst(FlinkWatermarkTrigger(commit_aware=True, **kw))
            return plain, t_plain, committed, time.monotonic() - t0

        plain, t_plain, committed, t_committed = asyncio.run(both())
        assert plain["status"] == "success" and t_plain < 2, (plain, t_plain)
        assert committed["status"] == "success" and committed["checkpoint_id"] is not None, committed
        assert committed["checkpoint_trigger_ms"] > committed["crossed_at_ms"], committed
        print(f"commit-aware fired {t_committed:.1f}s after the plain wait's start ({t_plain:.1f}s)")
    finally:
        hook.cancel_job(job.job_id)


@SOURCES
def test_a_job_failing_mid_wait_fails_the_wait_with_its_root_cause(job, hook, conn_id):
    job.produce(HOUR_END - 10)
    assert job.wait_progress(hook, HOUR_END - 10) == HOUR_END - 10

    async def wait_while_failing():
        trigger = FlinkWatermarkTrigger(threshold_ms=threshold_for(HOUR_END), job_name=job.name, poll_interval=0.5,
                                        deadline=time.time() + 60, flink_conn_id=conn_id)
        waiter = asyncio.ensure_future(_afirst(trigger))
        await asyncio.sleep(2)
        assert not waiter.done()
        failed_at = time.monotonic()
        await asyncio.to_thread(job.produce, raw=b"{not json")  # the JSON format fails the job
        event = await waiter
        return event, time.monotonic() - failed_at

    event, took = asyncio.run(wait_while_failing())
    assert event["status"] == "failed" and event["reason"] == "job_failed" and event["state"] == "FAILED", event
    assert "JSON" in event["root_cause"] or "json" in event["root_cause"]
    print(f"failure → wait failed in {took:.1f}s")
    assert took < 15


@SOURCES
def test_an_idle_source_is_reported_as_a_stall_not_a_hang(job, hook, conn_id):
    job.produce(HOUR_END - 60_000)
    assert job.wait_progress(hook, HOUR_END - 60_000) == HOUR_END - 60_000
    event = _first(FlinkWatermarkTrigger(threshold_ms=threshold_for(HOUR_END), job_name=job.name,
                                         stall_timeout=3, poll_interval=0.5, deadline=time.time() + 60,
                                         flink_conn_id=conn_id))
    assert event["status"] == "failed" and event["reason"] == "stalled", event
    assert "stalled" in event["message"] and "2026-01-01T10:59:00.000Z" in event["message"]


def test_sensor_sync_path_raises_the_same_exceptions(job, hook):
    job.produce(HOUR_END)
    assert job.wait_progress(hook, HOUR_END) == HOUR_END
    ctx = {"ti": None}
    ok = StreamWatermarkSensor(task_id="s", job_name=job.name, target=datetime(2026, 1, 1, 11, tzinfo=timezone.utc),
                               deferrable=False, poll_interval=0.5).execute(ctx)
    assert ok["progress_ms"] == HOUR_END and ok["threshold_ms"] == HOUR_END - 1
    with pytest.raises(StreamStalled):
        StreamWatermarkSensor(task_id="s", job_name=job.name, target="2026-01-01T12:00:00Z", deferrable=False,
                              stall_timeout=timedelta(seconds=2), poll_interval=0.5).execute(ctx)
    hook.cancel_job(job.job_id)
    with pytest.raises(FlinkJobFailed, match="CANCELED"):
        StreamWatermarkSensor(task_id="s", job_id=job.job_id, target="2026-01-01T12:00:00Z", deferrable=False,
                              poll_interval=0.5).execute(ctx)


def test_skew_check_reports_a_downstream_stream_ahead_of_its_upstream(stack, hook):
    from airflow_rtml.operators.streams import StreamSkewCheckOperator, StreamSkewExceeded

    upstream, downstream = start_event_time_job(stack), start_event_time_job(stack)
    try:
        upstream.produce(HOUR_END)
        downstream.produce(HOUR_END + 90_000)
        assert upstream.wait_progress(hook, HOUR_END) == HOUR_END
        assert downstream.wait_progress(hook, HOUR_END + 90_000) == HOUR_END + 90_000
        kw = {"upstream_job_name": upstream.name, "downstream_job_name": downstream.name}
        with pytest.raises(StreamSkewExceeded, match="Feature-crossing risk") as err:
            StreamSkewCheckOperator(task_id="skew", max_skew=timedelta(minutes=1), **kw).execute({})
        assert err.value.skew_ms == 90_000
        ok = StreamSkewCheckOperator(task_id="skew", max_skew=timedelta(minutes=2), **kw).execute({})
        assert ok == {"upstream_ms": HOUR_END, "downstream_ms": HOUR_END + 90_000, "skew_ms": 90_000, "ok": True}
        report = StreamSkewCheckOperator(task_id="skew", fail=False, **kw).execute({})
        assert report["ok"] is False
    finally:
        for j in (upstream, downstream):
            hook.cancel_job(j.job_id)


def test_reporter_source_serves_every_job_from_one_scrape(stack, hook, monkeypatch):
    """Two jobs, two polls each within one poll interval in one event loop, through the reporter connection:
    their progress is right, the TaskManager was scraped once, and no per-job watermark request went to the
    JobManager."""
    from airflow_rtml.hooks.flink import FlinkRestHook
    from airflow_rtml.triggers.watermark import FlinkProgressPoller

    jobs = [start_event_time_job(stack), start_event_time_job(stack)]
    try:
        for n, j in enumerate(jobs):
            j.produce(HOUR_END + n)
            assert j.wait_progress(hook, HOUR_END + n) == HOUR_END + n
        scrapes = []
        real_scrape = FlinkRestHook.a_scrape_reporter_watermarks

        async def counting_scrape(self, url):
            scrapes.append(url)
            return await real_scrape(self, url)

        async def no_rest_watermarks(self, *args):
            raise AssertionError("the reporter source asked the JobManager for /watermarks")

        monkeypatch.setattr(FlinkRestHook, "a_scrape_reporter_watermarks", counting_scrape)
        monkeypatch.setattr(FlinkRestHook, "a_get_vertex_watermarks", no_rest_watermarks)

        async def poll_both():
            pollers = [FlinkProgressPoller(flink_conn_id="flink_reporter", job_name=j.name, job_id=None, vertex=None,
                                           metric="currentInputWatermark", commit_aware=False, poll_interval=5)
                       for j in jobs]
            for p in pollers:
                await p.poll_once()  # first poll: vertices and parallelism
            return await asyncio.gather(*(p.poll_once() for p in pollers))  # within one poll interval

        snaps = asyncio.run(poll_both())
        assert [s.progress_ms for s in snaps] == [HOUR_END, HOUR_END + 1], snaps
        assert scrapes == [f"http://127.0.0.1:{stack.cfg.ports.flink_tm_metrics}/metrics"], scrapes
    finally:
        for j in jobs:
            hook.cancel_job(j.job_id)
