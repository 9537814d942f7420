"""The demo's training: one run per closed (and checkpoint-committed) event-time hour of training samples.

``rtml_demo_sample_hours`` turns each closed hour of the sample-feature join job into a partition of the
``rtml_demo_training_sample_hours`` asset; ``rtml_demo_train_hourly`` runs once per partition: it reads exactly
that hour, measures the current model on it before learning (progressive validation), updates the incremental
CTR model, stores the artifact and registers a model version (an ``rtml_demo_model`` asset event whose extra
carries version, hour, metrics and artifact path), promoting it only if it beats the current one.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Asset, PartitionedAssetTimetable, Variable, task

from airflow_rtml.sensors.watermark import StreamWindowSensor, window_from_partition_key

HOUR = timedelta(hours=1)
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

    @task(outlets=[MODEL], retries=5, retry_delay=timedelta(seconds=10))
    def train_on_hour(partition_key: str | None = None, outlet_events=None) -> dict:
        """Train the model version of this hour (needs the previous hour's version: retried until it exists)."""
        from airflow_rtml.demo.chain import Chain
        from airflow_rtml.demo.training import HOUR_MS, hour_rows, read_topic, train_hour

        cfg = Variable.get("rtml_demo", deserialize_json=True)
        chain = Chain(prefix=cfg["prefix"], job_prefix=cfg["job_prefix"])
        hour = window_from_partition_key(partition_key, HOUR)
        version = (hour.start_ms - cfg["start_ms"]) // HOUR_MS + 1
        models_dir = Path(os.environ.get("RTML_DEMO_DIR", "/tmp/rtml-demo")) / cfg["job_prefix"] / "models"
        if version > 1 and not (models_dir / f"model-v{version - 1:04d}.pkl").exists():
            raise RuntimeError(f"model version {version - 1} (the previous hour) is not trained yet; retrying")
        rows = hour_rows(read_topic(cfg["bootstrap"], chain.topics["training_samples"]), hour.start_ms, hour.end_ms)
        entry = train_hour(rows, version=version, models_dir=models_dir, hour_start_ms=hour.start_ms)
        outlet_events[MODEL].extra.update({**entry, "hour": partition_key, "chain": cfg["job_prefix"]})
        return entry

    train_on_hour()
