"""Commit-aware waits against the real local Flink cluster: a real failover between the crossing and the next
checkpoint (the TaskManager killed by PID, then brought back by the stack), and a job without checkpointing.
Issue 10, findings 2 and 12."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from event_time import BOOTSTRAP, JOB_SQL, EventTimeJob, create_topic
from support import cancel_jobs_named, first_event, ti_context, wait_for

from airflow_rtml.exceptions import FlinkCheckpointingDisabled
from airflow_rtml.operators.flink import FlinkSubmitJobOperator
from airflow_rtml.progress import threshold_for
from airflow_rtml.sensors.watermark import StreamWatermarkSensor
from airflow_rtml.triggers.flink import raise_for_event
from airflow_rtml.triggers.watermark import FlinkWatermarkTrigger

HOUR_END = int(datetime(2026, 1, 1, 11, tzinfo=timezone.utc).timestamp() * 1000)


def _submit(stack, conf: dict) -> EventTimeJob:
    name = f"rtml-ca-{uuid.uuid4().hex[:8]}"
    job = EventTimeJob(name=name, topic=f"{name}-events")
    create_topic(job.topic)
    result = FlinkSubmitJobOperator(
        task_id="submit", job_name=name, sql=JOB_SQL.format(topic=job.topic, bootstrap=BOOTSTRAP, name=name),
        sql_jars=[str(stack.cfg.kafka_connector_jar)], deferrable=False, poll_interval=0.5, flink_conf=conf,
    ).execute(ti_context())
    job.job_id = result["job_id"]
    return job


def test_commit_aware_on_a_job_without_checkpointing_fails_at_once(stack, hook):
    job = _submit(stack, {"restart-strategy.type": "none"})  # no execution.checkpointing.interval
    try:
        t0 = time.monotonic()
        event = asyncio.run(first_event(FlinkWatermarkTrigger(threshold_ms=threshold_for(HOUR_END), job_id=job.job_id,
                                                         commit_aware=True, poll_interval=0.5,
                                                         deadline=time.time() + 60)))
        took = time.monotonic() - t0
        assert event["status"] == "failed" and event["reason"] == "checkpointing_disabled", event
        assert took < 5, f"took {took:.1f}s: a job without checkpointing must fail the wait at once"
        with pytest.raises(FlinkCheckpointingDisabled, match="checkpointing disabled"):
            raise_for_event(event)
        # The sensor's worker path says the same, at once.
        sensor = StreamWatermarkSensor(task_id="w", job_id=job.job_id, target=HOUR_END, commit_aware=True,
                                       deferrable=False, poke_interval=0.5)
        with pytest.raises(FlinkCheckpointingDisabled):
            sensor.execute({})
    finally:
        hook.cancel_job(job.job_id)



def test_a_failover_between_crossing_and_checkpoint_needs_a_new_crossing_of_the_restored_attempt(stack, hook):
    """The fault: the TaskManager is killed (SIGKILL, by PID) after the crossing was observed and before any
    checkpoint after it completed. The job restarts from the checkpoint taken *before* the crossing; the records
    that made the crossing are gone from Kafka meanwhile (deleted), so the restored attempt never crosses again.

    Round 1 counted the restored attempt's first checkpoint as the commit and fired. Now the crossing is dropped
    with the attempt: the wait must not fire, although checkpoints of the restored attempt complete."""
    # 45 s between checkpoints: the steps from the pre-crossing checkpoint to the fault must fit before the next one
    # on a loaded CI machine (a checkpoint in between commits the crossing legitimately, and the scenario is void).
    job = _submit(stack, {"execution.checkpointing.interval": "45s", "restart-strategy.type": "fixed-delay",
                          "restart-strategy.fixed-delay.attempts": "10",
                          "restart-strategy.fixed-delay.delay": "1s"})
    tm = next(s for s in stack.services if getattr(s, "role", None) == "taskmanager")
    try:
        job.produce(HOUR_END - 60_000)
        assert job.wait_progress(hook, HOUR_END - 60_000) == HOUR_END - 60_000
        trigger = FlinkWatermarkTrigger(threshold_ms=threshold_for(HOUR_END), job_id=job.job_id, commit_aware=True,
                                        poll_interval=0.3, deadline=time.time() + 120)
        plain = FlinkWatermarkTrigger(threshold_ms=threshold_for(HOUR_END), job_id=job.job_id, poll_interval=0.3,
                                      deadline=time.time() + 60)

        async def scenario():
            waiting = asyncio.ensure_future(first_event(trigger))
            await asyncio.sleep(4.0)  # the reader has seen the attempt for longer than Flink's cache staleness
            # Right after a checkpoint completed (the one the job will restore from), with ~45 s to the next. The
            # wait for it must outlast one whole interval (it may start just after a checkpoint), plus a slow one.
            seen = (await asyncio.to_thread(hook.get_checkpoints, job.job_id)).latest_completed_id
            before = await asyncio.to_thread(
                wait_for, "a fresh checkpoint before the crossing",
                lambda: (c := hook.get_checkpoints(job.job_id)).latest_completed_id not in (None, seen) and c, 100, 0.2)
            await asyncio.to_thread(job.produce, HOUR_END + 5)  # the crossing
            crossed = await first_event(plain)
            assert crossed["status"] == "success", crossed
            await asyncio.sleep(1.0)  # the commit-aware wait observes the crossing (settled attempt)
            cp = await asyncio.to_thread(hook.get_checkpoints, job.job_id)
            assert cp.latest_completed_id == before.latest_completed_id, \
                "a checkpoint completed after the crossing before the fault: the test's timing did not hold"
            assert not waiting.done(), waiting.result() if waiting.done() else None
            # The records of the crossing vanish from Kafka, then the fault: the TaskManager is killed by PID.
            await asyncio.to_thread(_delete_all_records, job.topic)
            proc = stack.process_of(tm)
            proc.kill()
            # Only now is it known that no checkpoint after the crossing completed before the fault (a wait that
            # fired on one would be right, and the test's timing void, not the code wrong).
            at_kill = await asyncio.to_thread(hook.get_checkpoints, job.job_id)
            assert at_kill.latest_completed_id == before.latest_completed_id, \
                (f"checkpoint {at_kill.latest_completed_id} completed after the crossing before the fault: the "
                 "test's timing did not hold")
            proc.wait(10)
            killed_at = time.monotonic()
            await asyncio.to_thread(stack.up, False)  # the stack brings the TaskManager back
            # The job restores from the pre-crossing checkpoint and checkpoints again in its new attempt.
            restored = await asyncio.to_thread(
                wait_for, "a checkpoint of the restored attempt",
                lambda: (c := hook.get_checkpoints(job.job_id)).latest_completed_id
                and c.latest_completed_id > before.latest_completed_id and c, 150, 0.5)
            await asyncio.sleep(4.0)  # longer than the confirmation window
            return waiting, (before, restored), time.monotonic() - killed_at

        waiting, (before, restored), since = asyncio.run(_within(scenario()))
        assert restored.restored_id == before.latest_completed_id, \
            f"restored from {restored.restored_id}, expected checkpoint {before.latest_completed_id}"
        assert not waiting.done(), f"the commit-aware wait fired after the failover: {waiting.result()}"
        print(f"no fire {since:.0f}s after the TaskManager kill; restored attempt checkpointed up to "
              f"{restored.latest_completed_id}")
    finally:
        cancel_jobs_named(hook, job.name)
        stack.up(install=False)  # whatever happened, the TaskManager is back for the next test


async def _within(coro):
    """Run ``coro``; cancel its stray tasks (the wait still pending) before the loop closes."""
    try:
        waiting, restored, since = await coro
        result = (waiting, restored, since)
        if not waiting.done():
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
            return _Pending(), restored, since
        return result
    finally:
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()


class _Pending:
    """A wait that was still pending when the scenario ended (what the test asserts)."""

    def done(self) -> bool:
        return False


def _delete_all_records(topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"rtml-del-{uuid.uuid4().hex}"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = [TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                for p in meta.partitions]
    finally:
        consumer.close()
    for fut in admin.delete_records(ends).values():
        fut.result(timeout=30)
