"""The demo chain's streaming jobs: ensure the five Flink jobs run (adopt-or-submit), in dependency order.

Triggered by ``rtml demo``; the chain's names come from the Airflow Variable ``rtml_demo`` it sets.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Variable, task

from airflow_rtml.chain.dags import stream_tasks
from airflow_rtml.demo.chain import Chain, submit_operator
from airflow_rtml.operators.streams import StreamSkewCheckOperator
from airflow_rtml.sensors.watermark import StreamWatermarkSensor

JOBS_DIR = Path(__file__).parent / "jobs" / "demo"
# Names are rendered at run time from the Variable, so one DAG serves every demo run.
CHAIN = Chain(prefix="{{ var.json.rtml_demo.prefix }}", job_prefix="{{ var.json.rtml_demo.job_prefix }}",
              bootstrap="{{ var.json.rtml_demo.bootstrap }}")
PLAN = CHAIN.plan(JOBS_DIR)  # the chain as code (airflow_rtml/demo/chain.py): its nodes, names and edges
WAREHOUSE = os.environ.get("RTML_WAREHOUSE", "/tmp/rtml-warehouse")


with DAG(
    dag_id="rtml_demo_streams",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    doc_md=__doc__ + """
* `create_topics` — the chain's Kafka topics (idempotent).
* `ensure_label_join_job` — impressions ⋈ clicks within the attribution window → labelled samples;
  malformed records → dead-letter topic, late impressions → late topic.
* `ensure_features_job` — per-user / per-item windowed CTR → versioned feature tables.
* `features_reached_start` — **stream → stream**: the sample-feature join starts only once the feature stream
  is RUNNING with progress past the chain's start, so it never reads features that are not there yet.
* `publish_empty_offline_version` — **batch → stream**: the offline-feature version valid from the chain's start
  (empty: no hour has completed yet); later versions come from `rtml_demo_offline_features`, in hour order.
* `ensure_sample_features_job` — event-time temporal join: each sample with the real-time and the offline
  features as of its time.
* `sample_join_not_ahead_of_features` — skew guard (feature crossing).
* `ensure_evaluation_job` — CTR per bucket per hour.
* `ensure_archive_job` — impressions, clicks and samples into hourly Hive partitions (Parquet, by event time,
  committed by the watermark); the sample-feature job archives the training samples the same way.
""",
    tags=["airflow-rtml", "demo"],
):

    @task
    def create_topics() -> list[str]:
        from airflow_rtml.demo.chain import ensure_topics

        cfg = Variable.get("rtml_demo", deserialize_json=True)
        return ensure_topics(cfg["bootstrap"], list(Chain(prefix=cfg["prefix"]).topics.values()))

    @task
    def publish_empty_offline_version() -> int:
        """Batch → stream, hour 0: no hour's offline features exist before the chain's start; publish the empty
        version valid from it, so the live join can emit its first hour (with no offline feature)."""
        from airflow_rtml.demo.chain import VERSION_MARKER
        from airflow_rtml.offline.publish import publish_version

        cfg = Variable.get("rtml_demo", deserialize_json=True)
        chain = Chain(prefix=cfg["prefix"], job_prefix=cfg["job_prefix"], bootstrap=cfg["bootstrap"])
        tables = chain.archive_tables(WAREHOUSE)
        for kind in ("user", "item"):
            publish_version(tables[f"offline_{kind}_features"], None, topic=chain.topics[f"offline_{kind}_features"],
                            key=kind, version_ms=cfg["start_ms"], previous_version_ms=None,
                            bootstrap=chain.bootstrap, marker=VERSION_MARKER)
        return cfg["start_ms"]

    features_ready = StreamWatermarkSensor(
        task_id="features_reached_start", job_name=CHAIN.jobs["features"],
        target="{{ var.json.rtml_demo.start_ms }}", deferrable=True, poke_interval=1,
        timeout=timedelta(minutes=30),
    )
    skew = StreamSkewCheckOperator(
        task_id="sample_join_not_ahead_of_features", upstream_job_name=CHAIN.jobs["features"],
        downstream_job_name=CHAIN.jobs["sample_features"], max_skew=timedelta(0),
    )
    # One adopt-or-submit task per stream node, ordered by the chain's stream -> stream edges (label_join first).
    jobs = stream_tasks(PLAN, lambda node: submit_operator(CHAIN, PLAN, node, JOBS_DIR, WAREHOUSE))
    topics = create_topics()
    topics >> list(jobs.values())
    jobs["features"] >> features_ready >> jobs["sample_features"] >> skew
    topics >> publish_empty_offline_version() >> jobs["sample_features"]
