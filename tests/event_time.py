"""A real Flink job whose event time the test controls: it reads JSON events ``{"ts": <epoch ms>, "user": …}``
from a Kafka topic, declares ``WATERMARK FOR ts AS ts`` in its DDL (progress = the highest ts seen) and
counts events per 1-minute tumbling window. Producing a record with a chosen ``ts`` moves the watermark the
windowing vertex reports, exactly."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from support import ti_context

from airflow_rtml.hooks.flink import FlinkRestHook
from airflow_rtml.operators.flink import FlinkSubmitJobOperator

BOOTSTRAP = "127.0.0.1:9092"

JOB_SQL = """
CREATE TEMPORARY TABLE events (
    ts BIGINT,
    `user` STRING,
    ts_ltz AS TO_TIMESTAMP_LTZ(ts, 3),
    WATERMARK FOR ts_ltz AS ts_ltz
) WITH (
    'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
    'properties.group.id' = '{name}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json'
);
CREATE TEMPORARY TABLE per_minute (window_start TIMESTAMP(3), n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO per_minute
SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts_ltz), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end;
"""


def create_topic(topic: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for fut in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        fut.result(timeout=30)


@dataclass
class EventTimeJob:
    """A running event-time job plus a producer for its input topic."""

    name: str
    topic: str
    job_id: str = ""
    producer: Producer = field(default_factory=lambda: Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 0}))

    def produce(self, *timestamps: int, raw: bytes | None = None) -> None:
        for ts in timestamps:
            self.producer.produce(self.topic, json.dumps({"ts": ts, "user": "u1"}).encode())
        if raw is not None:
            self.producer.produce(self.topic, raw)
        self.producer.flush(10)

    def wait_progress(self, hook: FlinkRestHook, expected: int, timeout: float = 30) -> int | None:
        """Poll the job's reported progress until it equals ``expected``; return the last value seen."""
        from airflow_rtml.streams.flink import read_progress

        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = read_progress(hook, job_id=self.job_id).progress_ms
            if last == expected:
                return last
            time.sleep(0.5)
        return last


def start_event_time_job(stack, checkpoint_interval: str = "1s", name: str | None = None) -> EventTimeJob:
    name = name or f"rtml-et-{uuid.uuid4().hex[:8]}"
    job = EventTimeJob(name=name, topic=f"{name}-events")
    create_topic(job.topic)
    result = FlinkSubmitJobOperator(
        task_id="submit", job_name=name, sql=JOB_SQL.format(topic=job.topic, bootstrap=BOOTSTRAP, name=name),
        sql_jars=[str(stack.cfg.kafka_connector_jar)], deferrable=False, poll_interval=0.5,
        flink_conf={"execution.checkpointing.interval": checkpoint_interval, "restart-strategy.type": "none"},
    ).execute(ti_context())
    job.job_id = result["job_id"]
    return job
