"""The demo's training: one run per closed (and checkpoint-committed) event-time hour of training samples.

``rtml_demo_sample_hours`` turns each closed hour of the sample-feature join job into a partition of the
``rtml_demo_training_sample_hours`` asset; ``rtml_demo_train_hourly`` runs once per partition: it registers the
hour's partition of the archived training samples in the Hive metastore (the job writes them, Flink commits the
partition by the watermark), waits for it with Airflow's own ``NamedHivePartitionSensor``, reads exactly that
partition (its cost never grows with history), measures the current model on it before learning (progressive validation), updates the incremental
CTR model, stores the artifact and registers a model version (an ``rtml_demo_model`` asset event whose extra
carries version, hour, metrics and artifact path), promoting it only if it beats the current one.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.apache.hive.sensors.named_hive_partition import NamedHivePartitionSensor
from airflow.sdk import DAG, Asset, PartitionedAssetTimetable, Variable, task

from airflow_rtml.demo.chain import Chain
from airflow_rtml.operators.hive import ArchivePartitionOperator
from airflow_rtml.sensors.watermark import StreamWindowSensor, window_from_partition_key

HOUR = timedelta(hours=1)
WAREHOUSE = os.environ.get("RTML_WAREHOUSE", "/tmp/rtml-warehouse")
TRAINING = Chain(prefix="{{ var.json.rtml_demo.prefix }}",
                 job_prefix="{{ var.json.rtml_demo.job_prefix }}").archive_tables(WAREHOUSE)["training_samples"]
SAMPLE_HOURS = Asset(name="rtml_demo_training_sample_hours", uri="rtml://demo/training-sample-hours")
MODEL = Asset(name="rtml_demo_model", uri="rtml://demo/model")

with DAG(
    dag_id="rtml_demo_sample_hours",
    schedule="@continuous",
    max_active_runs=1,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["airflow-rtml", "demo"],
):
    StreamWindowSensor(
        task_id="wait_for_closed_sample_hours",
        job_name="{{ var.json.rtml_demo.job_prefix }}-sample-features",
        asset=SAMPLE_HOURS, window=HOUR, commit_aware=True, deferrable=True, poke_interval=1,
        start="{{ var.json.rtml_demo.start_ms }}",
        timeout=timedelta(hours=2),
    )

with DAG(
    dag_id="rtml_demo_train_hourly",
    schedule=PartitionedAssetTimetable(assets=SAMPLE_HOURS),
    max_active_runs=1,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["airflow-rtml", "demo"],
):

    register = ArchivePartitionOperator(task_id="register_training_partition", tables=[TRAINING],
                                        retries=2, retry_delay=timedelta(seconds=5))
    partition_ready = NamedHivePartitionSensor(
        task_id="training_partition_registered", partition_names=[TRAINING.run_partition_ref()],
        metastore_conn_id="metastore_default", poke_interval=1, timeout=300, mode="poke",
    )

    @task(outlets=[MODEL], retries=5, retry_delay=timedelta(seconds=10))
    def train_on_hour(partition_key: str | None = None, outlet_events=None) -> dict:
        """Train the model version of this hour (needs the previous hour's version: retried until it exists)."""
        from airflow_rtml.demo.chain import Chain
        from airflow_rtml.demo.training import HOUR_MS, hour_rows, train_hour
        from airflow_rtml.offline.archive import hour_values, read_partition

        cfg = Variable.get("rtml_demo", deserialize_json=True)
        chain = Chain(prefix=cfg["prefix"], job_prefix=cfg["job_prefix"])
        hour = window_from_partition_key(partition_key, HOUR)
        version = (hour.start_ms - cfg["start_ms"]) // HOUR_MS + 1
        models_dir = Path(os.environ.get("RTML_DEMO_DIR", "/tmp/rtml-demo")) / cfg["job_prefix"] / "models"
        if version > 1 and not (models_dir / f"model-v{version - 1:04d}.pkl").exists():
            raise RuntimeError(f"model version {version - 1} (the previous hour) is not trained yet; retrying")
        table = chain.archive_tables(WAREHOUSE)["training_samples"]
        rows = hour_rows(read_partition(table, hour_values(hour.start_ms)).to_pylist(), hour.start_ms, hour.end_ms)
        entry = train_hour(rows, version=version, models_dir=models_dir, hour_start_ms=hour.start_ms)
        outlet_events[MODEL].extra.update({**entry, "hour": partition_key, "chain": cfg["job_prefix"]})
        return entry

    register >> partition_ready >> train_on_hour()
