"""Example: batch → stream, the live job starts from the Kafka position the batch step handed over.

``backfill`` is the batch step: it processes history up to an event-time position and returns that position
(epoch ms). ``start_live_job`` then submits a streaming Flink SQL job (through the SQL Gateway) whose Kafka
source starts there: ``'scan.startup.mode' = 'timestamp'`` with ``'scan.startup.timestamp-millis'`` templated
from the batch task's XCom. Airflow renders the template when the submit task runs, so the job starts from
the position this run computed.

What the position means (Kafka's ``offsetsForTimes``): in each partition, the job starts at the first record
whose **Kafka record timestamp** is ``>=`` the position; a record exactly at the position is read. So

* producers must set the record timestamp to the event time (the Kafka default is the send time);
* it is an offset, not a filter: a record with an earlier timestamp written *after* that offset (a late
  record) is read too. Add ``WHERE ts >= <position>`` to the job if it needs a strict event-time cut;
* a partition with no record at or after the position starts at its end (only new records are read).

Names come from the run's params (trigger with a conf to use your own topics and job name); the Kafka
bootstrap servers from the ``kafka_default`` connection. Re-running the submit task adopts the running job
of that name instead of starting a second one.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_rtml.operators.flink import FlinkSubmitJobOperator

CONNECTOR_JAR = os.environ.get("RTML_FLINK_KAFKA_CONNECTOR_JAR", "/opt/flink/connectors/flink-sql-connector-kafka.jar")

LIVE_JOB_SQL = """
CREATE TEMPORARY TABLE events (id STRING, ts BIGINT) WITH (
    'connector' = 'kafka',
    'topic' = '{{ params.source_topic }}',
    'properties.bootstrap.servers' = '{{ conn.kafka_default.extra_dejson["bootstrap.servers"] }}',
    'properties.group.id' = '{{ params.job_name }}',
    'format' = 'json',
    'scan.startup.mode' = 'timestamp',
    'scan.startup.timestamp-millis' = '{{ ti.xcom_pull(task_ids="backfill") }}'
);
CREATE TEMPORARY TABLE live_events (id STRING, ts BIGINT) WITH (
    'connector' = 'kafka',
    'topic' = '{{ params.sink_topic }}',
    'properties.bootstrap.servers' = '{{ conn.kafka_default.extra_dejson["bootstrap.servers"] }}',
    'format' = 'json',
    'sink.delivery-guarantee' = 'at-least-once'
);
INSERT INTO live_events SELECT id, ts FROM events;
"""

with DAG(
    dag_id="batch_to_stream_from_timestamp",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "source_topic": Param("rtml.example.events", type="string"),
        "sink_topic": Param("rtml.example.live-events", type="string"),
        "job_name": Param("rtml-example-live-events", type="string"),
        "backfill_until_ms": Param(None, type=["null", "integer"],
                                   description="Event time the back-fill covers (epoch ms, exclusive); "
                                               "default: the start of the run's hour."),
    },
    doc_md=__doc__,
    tags=["airflow-rtml", "example"],
):

    @task
    def backfill(params: dict | None = None, dag_run=None) -> int:
        """The batch step: back-fill history before the hand-over position; return the position (epoch ms)."""
        until = params["backfill_until_ms"]
        if until is None:
            until = int(dag_run.run_after.replace(minute=0, second=0, microsecond=0).timestamp() * 1000)
        # ... process the records with event time < until (files, a warehouse table, the topic's history) ...
        return until

    start_live_job = FlinkSubmitJobOperator(
        task_id="start_live_job",
        job_name="{{ params.job_name }}",
        sql=LIVE_JOB_SQL,
        sql_jars=[CONNECTOR_JAR],
        deferrable=True,
        poll_interval=1,
    )

    backfill() >> start_live_job
