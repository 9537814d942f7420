"""The demo's A/B evaluation: one run per closed event-time hour of the evaluation job.

``rtml_demo_eval_hours`` emits each closed hour of the CTR-per-bucket job as a partition of
``rtml_demo_evaluation_hours``; ``rtml_demo_evaluate_hourly`` writes that hour's report: CTR per bucket with a
95 % interval and the winner (JSON), and a PNG of CTR per bucket over event time.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Asset, PartitionedAssetTimetable, Variable, task

from airflow_rtml.sensors.watermark import StreamWindowSensor, window_from_partition_key

HOUR = timedelta(hours=1)
EVAL_HOURS = Asset(name="rtml_demo_evaluation_hours", uri="rtml://demo/evaluation-hours")

with DAG(
    dag_id="rtml_demo_eval_hours",
    schedule="@continuous",
    max_active_runs=1,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["airflow-rtml", "demo"],
):
    StreamWindowSensor(
        task_id="wait_for_closed_evaluation_hours",
        job_name="{{ var.json.rtml_demo.job_prefix }}-evaluation",
        asset=EVAL_HOURS, window=HOUR, commit_aware=True, deferrable=True, poke_interval=1,
        start="{{ var.json.rtml_demo.start_ms }}",
        timeout=timedelta(hours=2),
    )

with DAG(
    dag_id="rtml_demo_evaluate_hourly",
    schedule=PartitionedAssetTimetable(assets=EVAL_HOURS),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["airflow-rtml", "demo"],
):

    @task
    def report_hour(partition_key: str | None = None) -> dict:
        from airflow_rtml.demo.chain import Chain
        from airflow_rtml.demo.evaluation import hour_report
        from airflow_rtml.demo.training import read_topic

        cfg = Variable.get("rtml_demo", deserialize_json=True)
        chain = Chain(prefix=cfg["prefix"], job_prefix=cfg["job_prefix"])
        hour = window_from_partition_key(partition_key, HOUR)
        reports_dir = Path(os.environ.get("RTML_DEMO_DIR", "/tmp/rtml-demo")) / cfg["job_prefix"] / "reports"
        return hour_report(read_topic(cfg["bootstrap"], chain.topics["evaluation"]), hour.start_ms, reports_dir)

    report_hour()
