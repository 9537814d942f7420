"""The demo's archive: the chain's streams in hourly Hive partitions, registered when the hour is complete.

``rtml_demo_archive_hours`` turns each closed *and checkpoint-committed* event-time hour of the archive job
(``dags/jobs/demo/archive.sql``: impressions, clicks, labelled samples → Parquet, ``dt``/``hour`` partitions,
Flink's partition commit driven by the watermark) into a partition of the ``rtml_demo_archive_hours`` asset.
``rtml_demo_archive_commit`` runs once per such hour: it checks Flink's success file and every file of the hour,
then registers the hour's partitions in the Hive metastore — exactly once — and emits ``rtml_demo_archive``
(partitioned by the hour), on which the offline features are scheduled. Batch steps downstream wait with
Airflow's own ``NamedHivePartitionSensor``.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, PartitionedAssetTimetable

from airflow_rtml.demo.chain import ARCHIVED_BY_ARCHIVE_JOB, Chain
from airflow_rtml.operators.hive import ArchivePartitionOperator
from airflow_rtml.sensors.watermark import StreamWindowSensor

HOUR = timedelta(hours=1)
ARCHIVE_HOURS = Asset(name="rtml_demo_archive_hours", uri="rtml://demo/archive-hours")
ARCHIVE = Asset(name="rtml_demo_archive", uri="rtml://demo/archive")
CHAIN = Chain(prefix="{{ var.json.rtml_demo.prefix }}", job_prefix="{{ var.json.rtml_demo.job_prefix }}")
TABLES = CHAIN.archive_tables(os.environ.get("RTML_WAREHOUSE", "/tmp/rtml-warehouse"))

with DAG(
    dag_id="rtml_demo_archive_hours",
    schedule="@continuous",
    max_active_runs=1,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["airflow-rtml", "demo"],
):
    StreamWindowSensor(
        task_id="wait_for_closed_archive_hours",
        job_name="{{ var.json.rtml_demo.job_prefix }}-archive",
        asset=ARCHIVE_HOURS, window=HOUR, commit_aware=True, deferrable=True, poke_interval=1,
        start="{{ var.json.rtml_demo.start_ms }}",
        timeout=timedelta(hours=2),
    )

with DAG(
    dag_id="rtml_demo_archive_commit",
    schedule=PartitionedAssetTimetable(assets=ARCHIVE_HOURS),
    max_active_runs=4,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["airflow-rtml", "demo"],
):
    ArchivePartitionOperator(
        task_id="register_archive_partitions",
        tables=[TABLES[name] for name in ARCHIVED_BY_ARCHIVE_JOB],
        outlets=[ARCHIVE], retries=2, retry_delay=timedelta(seconds=5),
    )
