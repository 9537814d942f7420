"""The demo's training: one run per closed (and checkpoint-committed) event-time hour of training samples.

``rtml_demo_sample_hours`` turns each closed hour of the sample-feature join job into a partition of the
``rtml_demo_training_sample_hours`` asset; ``rtml_demo_train_hourly`` runs once per partition: it registers the
hour's partition of the archived training samples in the Hive metastore (the job writes them, Flink commits the
partition by the watermark), waits for it with Airflow's own ``NamedHivePartitionSensor``, checks the committed
hour's data quality (``WindowQualityCheckOperator``: a failed blocking rule, such as a label-join rate far below
the source's CTR, skips this hour's training and names the rule), reads exactly that partition (its cost never
grows with history), measures the current model on it before learning (progressive validation), updates the
incremental CTR model, stores the artifact and registers a model version (an ``rtml_demo_model`` asset event
whose extra carries version, hour, metrics and artifact path), promoting it only if it beats the current one.
The hour after a blocked one trains from the version before it.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.apache.hive.sensors.named_hive_partition import NamedHivePartitionSensor
from airflow.sdk import DAG, Asset, PartitionedAssetTimetable, Variable, task

from airflow_rtml.demo.chain import Chain
from airflow_rtml.models import PromotionRule
from airflow_rtml.operators.hive import ArchivePartitionOperator
from airflow_rtml.operators.quality import WindowQualityCheckOperator
from airflow_rtml.quality import (
    FeatureCrossing, MeanBetween, NullRatio, RowCount, SqlCheck, ValueRange, VolumeVsBaseline,
)
from airflow_rtml.sensors.watermark import StreamWindowSensor, window_from_partition_key

HOUR = timedelta(hours=1)
WAREHOUSE = os.environ.get("RTML_WAREHOUSE", "/tmp/rtml-warehouse")
TRAINING = Chain(prefix="{{ var.json.rtml_demo.prefix }}",
                 job_prefix="{{ var.json.rtml_demo.job_prefix }}").archive_tables(WAREHOUSE)["training_samples"]
SAMPLE_HOURS = Asset(name="rtml_demo_training_sample_hours", uri="rtml://demo/training-sample-hours")
MODEL = Asset(name="rtml_demo_model", uri="rtml://demo/model")  # an event per model version
PROMOTED = Asset(name="rtml_demo_model_promoted", uri="rtml://demo/model-promoted")  # an event per promotion
# The promotion rule is declared with the chain's training node (airflow_rtml/demo/chain.py).
PROMOTION = PromotionRule.from_params(
    Chain().definition(Path(__file__).parent / "jobs" / "demo").node("training").params)

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
        from airflow_rtml.demo.training import HOUR_MS, hour_rows, previous_version, train_hour
        from airflow_rtml.offline.archive import hour_values, read_partition, read_window_report

        cfg = Variable.get("rtml_demo", deserialize_json=True)
        chain = Chain(prefix=cfg["prefix"], job_prefix=cfg["job_prefix"])
        hour = window_from_partition_key(partition_key, HOUR)
        version = (hour.start_ms - cfg["start_ms"]) // HOUR_MS + 1
        models_dir = Path(os.environ.get("RTML_DEMO_DIR", "/tmp/rtml-demo")) / cfg["job_prefix"] / "models"
        table = chain.archive_tables(WAREHOUSE)["training_samples"]

        def blocked(v: int) -> bool:  # version v's hour was blocked by a data-quality rule (its DQC report says so)
            report = read_window_report(table, hour_values(cfg["start_ms"] + (v - 1) * HOUR_MS))
            return bool(report and report["blocked"])

        previous = previous_version(version, models_dir, blocked)  # raises (a retry) until the hour before is done
        rows = hour_rows(read_partition(table, hour_values(hour.start_ms)).to_pylist(), hour.start_ms, hour.end_ms)
        entry = train_hour(rows, version=version, models_dir=models_dir, hour_start_ms=hour.start_ms,
                           previous_version=previous, rule=PROMOTION)
        outlet_events[MODEL].extra.update({**entry, "hour": partition_key, "chain": cfg["job_prefix"]})
        return entry

    # Per-window DQC on the committed hour: a failed blocking rule skips this hour's training, naming the rule.
    dqc = WindowQualityCheckOperator(
        task_id="dqc_training_samples", table=TRAINING, retries=2, retry_delay=timedelta(seconds=5),
        rules=[
            RowCount(min_rows=1),
            VolumeVsBaseline(min_ratio=0.5, windows=24),  # against the median of the last 24 hours
            ValueRange(column="label", min=0, max=1),
            NullRatio(column="user", max_ratio=0.0, severity="warn"),  # a warning only notifies
            MeanBetween(column="label", min=0.07, max=0.2, name="label_join_rate"),  # the source's CTR is ~0.10
            # no sample joined with a feature version from its own future (feature crossing = leakage)
            *(FeatureCrossing(version_column=c, time_column="ts_ms") for c in (
                "user_version_ms", "item_version_ms", "user_offline_version_ms", "item_offline_version_ms")),
            SqlCheck(name="known_buckets", max=0.0,  # your own rule in SQL, over the hour's rows as table `rows`
                     sql="SELECT avg(CASE WHEN bucket IN ('control', 'treatment') THEN 0 ELSE 1 END) FROM rows"),
        ],
    )
    @task(outlets=[PROMOTED])
    def announce_promotion(entry: dict, outlet_events=None) -> dict:
        """A promotion is an event of ``rtml_demo_model_promoted`` (serving or notification DAGs schedule on it).
        Skipped when this version was not promoted, or is no longer current (a re-run of an older hour)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_rtml.models import ModelRegistry

        current = ModelRegistry(Path(entry["artifact"]).parent / "registry.json").current()
        if not entry["promoted"] or current is None or current.version != entry["version"]:
            raise AirflowSkipException(f"model version {entry['version']} is not the promoted current version "
                                       f"(current: {current and current.version}; rule: {PROMOTION.describe()})")
        outlet_events[PROMOTED].extra = {"version": entry["version"], "artifact": entry["artifact"],
                                         "holdout": entry["holdout"], "hour_start_ms": entry["hour_start_ms"],
                                         "chain": Variable.get("rtml_demo", deserialize_json=True)["job_prefix"]}
        return outlet_events[PROMOTED].extra

    trained = train_on_hour()
    register >> partition_ready >> dqc >> trained
    announce_promotion(trained)


with DAG(
    dag_id="rtml_demo_serve_model",
    # One run per promotion. The training runs per hour, so its events carry the hour as partition key, and only a
    # partition-aware schedule is triggered by them.
    schedule=PartitionedAssetTimetable(assets=PROMOTED),
    max_active_runs=1,  # one deployment at a time: two could both read serving.json and the older write last
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md="Downstream of promotions only: points the demo's serving file at each newly promoted model version "
           "(a stand-in for a deployment).",
    tags=["airflow-rtml", "demo"],
):

    @task
    def deploy(triggering_asset_events=None) -> dict:
        """Write ``serving.json`` next to the models: the newest promoted version (a re-delivered older event
        never moves serving back)."""
        import json
        import os

        from airflow.sdk.exceptions import AirflowSkipException

        events = [e.extra for evs in (triggering_asset_events or {}).values() for e in evs
                  if isinstance(e.extra, dict) and "version" in e.extra and "artifact" in e.extra]
        if not events:
            raise AirflowSkipException("no promotion event with a version triggered this run: nothing to deploy")
        newest = max(events, key=lambda x: x["version"])
        serving = Path(newest["artifact"]).parent / "serving.json"
        if serving.exists() and json.loads(serving.read_text())["version"] >= newest["version"]:
            return json.loads(serving.read_text())
        tmp = serving.with_name(f".serving.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(newest, indent=2, sort_keys=True))
        os.replace(tmp, serving)  # a reader never sees half of it
        return newest

    deploy()
