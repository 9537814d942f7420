"""Example: the Flink job lifecycle from Airflow on a session cluster (connection ``flink_default``)."""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param

from airflow_rtml.operators.flink import FlinkStopJobOperator, FlinkSubmitJobOperator
from airflow_rtml.sensors.flink import FlinkJobStateSensor

JOB_SCRIPT = str(Path(__file__).parent / "jobs" / "generated_rows_job.py")

with DAG(
    dag_id="flink_job_lifecycle",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"name_prefix": Param("rtml-example", type="string")},
    doc_md="""
    Submits two PyFlink jobs to the Flink session cluster and manages them without holding a worker slot:

    * a **bounded** job, submitted (or adopted, if one of that name runs) and then awaited until FINISHED in
      the triggerer;
    * a **streaming** job, submitted, then stopped with a savepoint (waited for in the triggerer) whose path
      is this run's XCom;
    * a **SQL** job, submitted through the Flink SQL Gateway (connection ``flink_sql_gateway_default``), then
      cancelled.

    Re-running a task adopts the running job of the same name instead of starting a duplicate.
    """,
    tags=["airflow-rtml", "example"],
) as dag:
    submit_bounded = FlinkSubmitJobOperator(
        task_id="submit_bounded_job",
        job_name="{{ params.name_prefix }}-bounded-{{ run_id | replace(':', '-') }}",
        python=JOB_SCRIPT,
        args=["{{ params.name_prefix }}-bounded-{{ run_id | replace(':', '-') }}", "8000"],  # ~40 s
        wait_for="running",
        deferrable=True,
        poll_interval=1,
    )
    wait_finished = FlinkJobStateSensor(
        task_id="wait_bounded_job_finished",
        job_id="{{ ti.xcom_pull(task_ids='submit_bounded_job', key='job_id') }}",
        target_states=["FINISHED"],
        deferrable=True,
        poke_interval=1,
    )
    submit_streaming = FlinkSubmitJobOperator(
        task_id="submit_streaming_job",
        job_name="{{ params.name_prefix }}-streaming-{{ run_id | replace(':', '-') }}",
        python=JOB_SCRIPT,
        args=["{{ params.name_prefix }}-streaming-{{ run_id | replace(':', '-') }}"],
        deferrable=True,
        poll_interval=1,
    )
    stop_streaming = FlinkStopJobOperator(
        task_id="stop_streaming_job_with_savepoint",
        job_id="{{ ti.xcom_pull(task_ids='submit_streaming_job', key='job_id') }}",
        deferrable=True,
    )
    submit_sql = FlinkSubmitJobOperator(
        task_id="submit_sql_job",
        job_name="{{ params.name_prefix }}-sql-{{ run_id | replace(':', '-') }}",
        sql="""
        CREATE TEMPORARY TABLE gen (n BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '10');
        CREATE TEMPORARY TABLE sink (n BIGINT) WITH ('connector' = 'blackhole');
        INSERT INTO sink SELECT n FROM gen;
        """,
        deferrable=True,
        poll_interval=1,
    )
    cancel_sql = FlinkStopJobOperator(
        task_id="cancel_sql_job",
        job_id="{{ ti.xcom_pull(task_ids='submit_sql_job', key='job_id') }}",
        mode="cancel",
        deferrable=True,
    )
    submit_bounded >> wait_finished >> submit_streaming >> stop_streaming
    submit_sql >> cancel_sql
