"""Batch → stream from a Kafka timestamp, in the real local Airflow: the example DAG
``batch_to_stream_from_timestamp`` runs its batch task, whose XCom (an event-time position, epoch ms) Airflow
renders into the submit task's SQL; the streaming Flink job it starts must read exactly the records from that
position on, which the test checks on the job's real output topic.

Kafka's ``offsetsForTimes`` decides where each partition starts: at the first record whose record timestamp is
``>=`` the position (so the record exactly at the position is read, and a late record written after it too),
or at the partition's end when no record is at or after it.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from confluent_kafka import Producer
from event_time import BOOTSTRAP, create_topic
from support import cancel_jobs_named, wait_for

from airflow_rtml.demo.training import read_topic
from airflow_rtml.hooks.flink import JobState

DAG_ID = "batch_to_stream_from_timestamp"
MINUTE = 60_000



def _produce(producer: Producer, topic: str, partition: int, records: dict[str, int]) -> None:
    """Write ``{id: timestamp}`` in this order; the event time is the Kafka record timestamp too."""
    for rid, ts in records.items():
        producer.produce(topic, json.dumps({"id": rid, "ts": ts}).encode(), partition=partition, timestamp=ts)
    assert producer.flush(10) == 0


def _output_with(topic: str, ids: set[str]) -> list[dict] | None:
    """The output topic's records once it holds all of ``ids``."""
    rows = read_topic(BOOTSTRAP, topic)
    return rows if ids <= {r["id"] for r in rows} else None


def _run_state(client: httpx.Client, run_id: str) -> str | None:
    state = client.get(f"/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"]
    return state if state in ("success", "failed") else None


@pytest.mark.timeout(300)
def test_streaming_job_starts_at_the_kafka_timestamp_the_batch_task_computed(stack, hook):
    name = f"rtml-b2s-{uuid.uuid4().hex[:8]}"
    source, sink = f"{name}-events", f"{name}-live"
    create_topic(source, partitions=2)
    create_topic(sink)
    # The hand-over position: whole seconds in the recent past (Kafka rejects timestamps > 1 h in the future).
    position = (int(time.time()) - 600) * 1000
    # Already in the topic when the job starts, each partition in the order written:
    history = {
        0: {"p0-before-2m": position - 2 * MINUTE, "p0-before-1ms": position - 1,
            "p0-at": position, "p0-after-1ms": position + 1,
            "p0-late": position - MINUTE // 2,  # written after the start offset: read (it is late, not before)
            "p0-after-1m": position + MINUTE},
        1: {"p1-before-1m": position - MINUTE, "p1-before-1ms": position - 1},  # nothing at or after: start at end
    }
    live = {0: {"p0-live": position + 2 * MINUTE}, 1: {"p1-live": position + 2 * MINUTE}}
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 0})
    for partition, records in history.items():
        _produce(producer, source, partition, records)

    client = httpx.Client(base_url=f"{stack.cfg.airflow_url}/api/v2", timeout=30)
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    try:
        wait_for(f"DAG {DAG_ID} to be parsed", lambda: client.get(f"/dags/{DAG_ID}").status_code == 200, 120, 2)
        assert client.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200
        conf = {"source_topic": source, "sink_topic": sink, "job_name": name, "backfill_until_ms": position}
        resp = client.post(f"/dags/{DAG_ID}/dagRuns", json={"dag_run_id": run_id, "logical_date": None, "conf": conf})
        assert resp.status_code == 200, resp.text
        state = wait_for(f"run {run_id} to finish", lambda: _run_state(client, run_id), 180, 2)
        tis = client.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        assert state == "success", [(t["task_id"], t["state"]) for t in tis]

        # Airflow rendered the batch task's XCom into the SQL the submit task ran.
        xcom = client.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/backfill/xcomEntries/return_value").json()
        assert xcom["value"] == position
        submit = client.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/start_live_job").json()
        rendered_sql = submit["rendered_fields"]["sql"]
        assert f"'scan.startup.timestamp-millis' = '{position}'" in rendered_sql, rendered_sql
        assert "{{" not in rendered_sql and f"'topic' = '{source}'" in rendered_sql

        jobs = [j for j in hook.find_jobs_by_name(name) if not j.state.is_terminal]
        assert [j.state for j in jobs] == [JobState.RUNNING]

        # Records written while the job runs are read in every partition, after what it started with.
        for partition, records in live.items():
            _produce(producer, source, partition, records)
        markers = {rid for records in live.values() for rid in records}
        out = wait_for("the live records on the job's output topic", lambda: _output_with(sink, markers), 90)
        # Each source partition keeps its order into the one-partition output topic: once a partition's live
        # record is out, so is everything the job read before it.
        expected = {"p0-at": position, "p0-after-1ms": position + 1, "p0-late": position - MINUTE // 2,
                    "p0-after-1m": position + MINUTE, "p0-live": position + 2 * MINUTE,
                    "p1-live": position + 2 * MINUTE}
        assert sorted((r["id"], r["ts"]) for r in out) == sorted(expected.items())  # each once, no other
    finally:
        cancel_jobs_named(hook, name)
        client.close()
