"""docs/flink-jobs.md: the Flink job operators and sensor, with the arguments most DAGs set.

A PyFlink job (``features-v2``, upgraded through a savepoint when it already runs) and a SQL job through the
SQL Gateway. The job files are yours: ``/opt/jobs/features.py`` and ``jobs/ctr_per_bucket.sql`` stand for them.
The tasks are independent examples: chain them as your jobs need."""

import os
from datetime import datetime

from airflow.sdk import DAG
from airflow_rtml.operators.flink import FlinkStopJobOperator, FlinkSubmitJobOperator
from airflow_rtml.sensors.flink import FlinkJobStateSensor

# Set by the local stack (rtml local up) and by docker/; the default is docker/'s path. Flink needs the jar on the
# SQL Gateway's machine, not on the DAG processor's.
KAFKA_CONNECTOR_JAR = os.environ.get("RTML_FLINK_KAFKA_CONNECTOR_JAR",
                                     "/opt/flink/connectors/flink-sql-connector-kafka.jar")

with DAG("flink_jobs", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    submit = FlinkSubmitJobOperator(
        task_id="submit_features_job",
        job_name="features-v2",            # the job's identity: a re-run adopts the running job of this name
        python="/opt/jobs/features.py",    # or jar="/path/job.jar", entry_class="com.example.Main", or sql=...
        args=["features-v2"],
        if_running="upgrade",              # "adopt" (default) | "upgrade" (stop-with-savepoint, restart) | "fail"
        savepoint_path=None,               # or a savepoint to start from, e.g. "{{ ti.xcom_pull('backfill') }}"
        wait_for="running",                # or "finished" for bounded jobs
        deferrable=True,                   # wait in the triggerer, not in a worker slot
    )
    wait = FlinkJobStateSensor(task_id="wait_done", job_name="features-v2", target_states=["FINISHED"],
                               deferrable=True)
    stop = FlinkStopJobOperator(task_id="stop", job_name="features-v2", drain=False, deferrable=True)  # -> savepoint

    sql_job = FlinkSubmitJobOperator(
        task_id="submit_ctr_job",
        job_name="ctr-per-bucket",
        sql="jobs/ctr_per_bucket.sql",     # a path ending in .sql is rendered as a template; or the SQL text
        sql_jars=[KAFKA_CONNECTOR_JAR],    # ADD JAR'd into the session (connectors, UDFs)
    )
