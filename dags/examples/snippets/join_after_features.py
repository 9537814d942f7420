"""docs/per-window-scheduling.md: stream → stream. Start the sample-join job only once the feature job's
progress is past the join's start position, then check that the join never runs ahead of the features."""

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param
from airflow_rtml.operators.flink import FlinkSubmitJobOperator
from airflow_rtml.operators.streams import StreamSkewCheckOperator
from airflow_rtml.sensors.watermark import StreamWatermarkSensor

with DAG("join_after_features", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         params={"start_position": Param("2026-01-01T00:00:00Z", type="string")}):
    features_ready = StreamWatermarkSensor(task_id="features_at_start", job_name="features",
                                           target="{{ params.start_position }}", deferrable=True)
    start_join = FlinkSubmitJobOperator(task_id="start_sample_join", job_name="sample-join", sql="jobs/join.sql")
    no_crossing = StreamSkewCheckOperator(task_id="join_not_ahead_of_features", upstream_job_name="features",
                                          downstream_job_name="sample-join", max_skew=timedelta(0))
    features_ready >> start_join >> no_crossing
