"""docs/experiments.md: per-window data-quality rules that gate training on a closed, committed hour.

Scheduled once per closed hour by a window asset (``StreamWindowSensor`` with ``commit_aware=True`` in the
producer DAG, not shown), like the demo's training DAG. The archive table ``mychain.samples`` stands for yours.
"""

from datetime import datetime

from airflow.sdk import DAG, Asset, PartitionedAssetTimetable, task
from airflow_rtml.offline.archive import ArchiveTable
from airflow_rtml.operators.quality import WindowQualityCheckOperator
from airflow_rtml.quality import MeanBetween, NullRatio, RowCount, ValueRange, VolumeVsBaseline

SAMPLE_HOURS = Asset(name="mychain_sample_hours", uri="rtml://mychain/sample-hours")
SAMPLES = ArchiveTable("mychain", "samples", "/warehouse/mychain.db/samples",
                       (("user", "string"), ("label", "int"), ("ts_ms", "bigint")))

with DAG("train_on_checked_hours", schedule=PartitionedAssetTimetable(assets=SAMPLE_HOURS),
         start_date=datetime(2026, 1, 1), catchup=False):
    checked = WindowQualityCheckOperator(
        task_id="dqc_samples",
        table=SAMPLES,                       # the hour = the run's partition_key; committed partitions only
        rules=[
            RowCount(min_rows=1),
            VolumeVsBaseline(min_ratio=0.5, windows=24),                # against the median of the last 24 hours
            NullRatio(column="user", max_ratio=0.01, severity="warn"),  # a warning only notifies
            ValueRange(column="label", min=0, max=1),
            MeanBetween(column="label", min=0.02, max=0.5, name="label_join_rate"),
        ],
        notifiers=[],                        # e.g. SlackNotifier(...) from the Slack provider
    )

    @task
    def train(partition_key=None):
        print(f"training on the checked hour {partition_key}")  # skipped when a blocking rule failed

    checked >> train()
