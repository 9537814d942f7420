"""The README's example: train once per hour of samples, when the hour is closed in event time and committed.

A complete DAG file (the README shows it from the imports down). The Flink job ``training-samples`` is
``jobs/training_samples.sql`` beside this file: a Kafka source with a ``WATERMARK`` and hourly sample counts.
"""

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable, task
from airflow_rtml.operators.flink import FlinkSubmitJobOperator
from airflow_rtml.sensors.watermark import StreamWatermarkSensor

# CronDataIntervalTimetable: the run at 11:00 has the interval [10:00, 11:00). Airflow 3's "@hourly" gives an
# empty interval (start == end), and a manual run none at all (the sensor then waits for its run_after).
HOURLY = CronDataIntervalTimetable("0 * * * *", timezone="UTC")
# The Kafka SQL connector, on the SQL Gateway's machine: the local stack and docker/ set this variable.
KAFKA_CONNECTOR_JAR = os.environ.get("RTML_FLINK_KAFKA_CONNECTOR_JAR",
                                     "/opt/flink/connectors/flink-sql-connector-kafka.jar")

with DAG("hourly_training", schedule=HOURLY, start_date=datetime(2026, 1, 1), catchup=False):
    samples_job = FlinkSubmitJobOperator(
        task_id="samples_job",
        job_name="training-samples",         # identity: a re-run adopts the running job of this name
        sql="jobs/training_samples.sql",     # through the Flink SQL Gateway (a template); or python=/jar=
        sql_jars=[KAFKA_CONNECTOR_JAR],
        flink_conf={"execution.checkpointing.interval": "10s"},  # commit_aware needs checkpoints
        wait_for="running",
    )
    hour_complete = StreamWatermarkSensor(
        task_id="samples_hour_complete",
        job_name="training-samples",         # target (default): the run's data_interval_end, closed
        commit_aware=True,                   # ... and made visible by a completed checkpoint
        stall_timeout=timedelta(minutes=15), # an idle source fails as stalled, never hangs
        deferrable=True,                     # waits in the triggerer, not in a worker slot
    )

    @task
    def train(data_interval_start=None, data_interval_end=None):
        print(f"training on the samples of [{data_interval_start}, {data_interval_end})")
        return {"start": data_interval_start.isoformat(), "end": data_interval_end.isoformat()}

    samples_job >> hour_complete >> train()
