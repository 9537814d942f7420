"""The demo's offline features: 24-hour and 7-day per-user and per-item counts and CTR, one Hive partition per hour.

Scheduled on ``rtml_demo_archive`` (one run per archived hour). **Batch → batch**: Airflow's own
``NamedHivePartitionSensor`` gates the Spark job on the hour's archived samples partition; the job
(``dags/jobs/demo/offline_features.py``, submitted with the Spark provider's ``SparkSubmitOperator``) reads only
the trailing window's partitions and writes partition H of ``offline_user_features`` / ``offline_item_features``
(``version_ms`` = end of H + the attribution window: when H's labels are final); ``register_offline_partitions``
registers them in the metastore (once) and emits ``rtml_demo_offline_features``. **Batch → stream**:
``publish_offline_versions`` publishes the partition to the upsert topics the live sample-feature join reads
``FOR SYSTEM_TIME AS OF`` each sample's time, in hour order (hour H waits for H-1), so a sample at t sees the
version of the last hour whose labels were final before t, never a later one.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.apache.hive.sensors.named_hive_partition import NamedHivePartitionSensor
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Asset, PartitionedAssetTimetable, Variable, task

from airflow_rtml.demo.chain import Chain
from airflow_rtml.offline.spark import spark_conf
from airflow_rtml.operators.hive import ArchivePartitionOperator

ARCHIVE = Asset(name="rtml_demo_archive", uri="rtml://demo/archive")
OFFLINE_FEATURES = Asset(name="rtml_demo_offline_features", uri="rtml://demo/offline-features")
CHAIN = Chain(prefix="{{ var.json.rtml_demo.prefix }}", job_prefix="{{ var.json.rtml_demo.job_prefix }}")
TABLES = CHAIN.archive_tables(os.environ.get("RTML_WAREHOUSE", "/tmp/rtml-warehouse"))
JOB = Path(__file__).parent / "jobs" / "demo" / "offline_features.py"


def _spark_env() -> dict[str, str]:
    from airflow_rtml.offline.spark import spark_env

    try:
        return spark_env()
    except RuntimeError:  # parsed outside the local stack: the task fails with the same message at run time
        return {}


with DAG(
    dag_id="rtml_demo_offline_features",
    schedule=PartitionedAssetTimetable(assets=ARCHIVE),
    max_active_runs=1,  # hour H's 7-day window needs hour H-1 archived; runs go in order
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["airflow-rtml", "demo"],
):
    inputs_ready = NamedHivePartitionSensor(
        task_id="samples_partition_registered",
        partition_names=[TABLES["samples"].run_partition_ref()],
        metastore_conn_id="metastore_default", poke_interval=2, timeout=600, mode="poke",
    )
    features = SparkSubmitOperator(
        task_id="compute_offline_features",
        application=str(JOB),
        application_args=[CHAIN.hive_db, "{{ dag_run.partition_key }}", "{{ var.json.rtml_demo.start_ms }}",
                          TABLES["offline_user_features"].location, TABLES["offline_item_features"].location,
                          str(Chain().attribution_minutes * 60_000)],
        conn_id="spark_default", conf=spark_conf(), env_vars=_spark_env(), name="rtml-demo-offline-features",
        retries=1, retry_delay=timedelta(seconds=10),
    )
    register = ArchivePartitionOperator(
        task_id="register_offline_partitions",
        tables=[TABLES["offline_user_features"], TABLES["offline_item_features"]],
        commit_timeout=timedelta(seconds=5), outlets=[OFFLINE_FEATURES],
    )

    @task(retries=30, retry_delay=timedelta(seconds=5))
    def publish_offline_versions(partition_key: str | None = None) -> dict:
        """Publish hour H's offline features as version end(H) + attribution (after version H-1: retried)."""
        from airflow_rtml.demo.chain import VERSION_MARKER
        from airflow_rtml.offline.archive import HOUR_MS, hour_values
        from airflow_rtml.offline.publish import publish_version
        from airflow_rtml.sensors.watermark import window_from_partition_key

        cfg = Variable.get("rtml_demo", deserialize_json=True)
        chain = Chain(prefix=cfg["prefix"], job_prefix=cfg["job_prefix"], bootstrap=cfg["bootstrap"])
        tables = chain.archive_tables(os.environ.get("RTML_WAREHOUSE", "/tmp/rtml-warehouse"))
        hour = window_from_partition_key(partition_key, timedelta(hours=1))
        version = hour.end_ms + chain.attribution_minutes * 60_000
        previous = cfg["start_ms"] if hour.start_ms == cfg["start_ms"] else version - HOUR_MS
        out = {}
        for kind in ("user", "item"):
            out[kind] = publish_version(
                tables[f"offline_{kind}_features"], hour_values(hour.start_ms),
                topic=chain.topics[f"offline_{kind}_features"], key=kind, version_ms=version,
                previous_version_ms=previous, bootstrap=chain.bootstrap, marker=VERSION_MARKER,
                columns=[kind, "imps_7d", "ctr_7d", "ctr_24h"])
        return {"version_ms": version, "rows": out}

    inputs_ready >> features >> register >> publish_offline_versions()
