"""Feature backfill: replay archived hours through the live feature job's own SQL, then prove it equals live.

Trigger it with the range as params (whole event-time hours, ``end`` exclusive)::

    airflow dags trigger feature_backfill --conf '{"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T03:00:00Z"}'

``backfill_features`` (:class:`~airflow_rtml.operators.backfill.FeatureBackfillOperator`) reads the demo chain's
archived samples of the range (every partition must be registered, or it fails listing the missing ones), has Spark
write one ordered file per Kafka partition, runs ``dags/jobs/demo/features.sql`` — the file the live job runs —
with its source and sinks swapped, in Flink, and writes the versions into hourly partitions of
``<db>.user_features`` / ``<db>.item_features`` (re-running a range replaces it). ``verify_equal_to_live`` then
compares them row for row with the live job's output topics (Chronon's mismatch / missing / extra ratios and
SMAPE) and fails unless they are equal.

The demo replays hours its live feature job has already computed — that is the point of the check — so
``allow_live_overlap`` defaults to true here; for a *new* feature, leave it false: the operator then refuses a
range the running live job has already passed.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Asset, Param, task

from airflow_rtml.demo.chain import Chain
from airflow_rtml.operators.backfill import FeatureBackfillOperator

JOBS_DIR = Path(__file__).parent / "jobs" / "demo"
CHAIN = Chain(prefix="{{ var.json.rtml_demo.prefix }}", job_prefix="{{ var.json.rtml_demo.job_prefix }}",
              bootstrap="{{ var.json.rtml_demo.bootstrap }}")
TABLES = CHAIN.archive_tables(os.environ.get("RTML_WAREHOUSE", "/tmp/rtml-warehouse"))
BACKFILLED = Asset(name="rtml_demo_backfilled_features", uri="rtml://demo/backfilled-features")

with DAG(
    dag_id="feature_backfill",
    schedule=None,
    max_active_runs=1,  # two backfills of one feature would replace each other's partitions
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    params={
        "start": Param("2026-01-01T00:00:00Z", type="string", description="first hour (inclusive), ISO-8601"),
        "end": Param("2026-01-01T01:00:00Z", type="string", description="end hour (exclusive), ISO-8601"),
        "allow_live_overlap": Param(True, type="boolean", description="replay hours the live job already did"),
    },
    tags=["airflow-rtml", "demo", "backfill"],
):
    backfill = FeatureBackfillOperator(
        task_id="backfill_features",
        sql=CHAIN.sql("features", JOBS_DIR),
        source="samples_in",
        archive=TABLES["samples"],
        start="{{ params.start }}",
        end="{{ params.end }}",
        live_job_name=CHAIN.jobs["features"],
        allow_live_overlap="{{ params.allow_live_overlap }}",
        job_name=f"{CHAIN.job_prefix}-features-backfill",
        outlets=[BACKFILLED],
        execution_timeout=timedelta(hours=2),
    )

    @task
    def verify_equal_to_live(result: dict) -> dict:
        """Row for row: the backfill's versions against the live job's topics; fails unless 0 / 0 / 0."""
        from airflow.sdk import Variable

        from airflow_rtml.exceptions import BackfillError
        from airflow_rtml.offline.archive import ArchiveTable
        from airflow_rtml.offline.equality import live_vs_backfill

        demo = Variable.get("rtml_demo", deserialize_json=True)
        chain = Chain(prefix=demo["prefix"], job_prefix=demo["job_prefix"], bootstrap=demo["bootstrap"])
        samples = chain.archive_tables(os.environ.get("RTML_WAREHOUSE", "/tmp/rtml-warehouse"))["samples"]
        reports = {}
        for sink, key in (("user_features", "user"), ("item_features", "item")):
            table = ArchiveTable(samples.db, sink, str(Path(samples.path).parent / sink), ())
            report = live_vs_backfill(chain.bootstrap, chain.topics[sink], table, [key, "version_ms"],
                                      result["start_ms"], result["end_ms"], features=["imps", "clicks", "ctr"])
            print(report.summary())
            reports[sink] = report.as_dict()
            if not report.equal:
                raise BackfillError(f"The backfill of {sink} differs from the live job's output:\n{report.summary()}")
        return reports

    verify_equal_to_live(backfill.output)
