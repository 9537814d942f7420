"""docs/sensors.md: a watermark wait with Airflow's sensor arguments, on a DAG that is only triggered by hand.

A manual run has no data interval in Airflow 3: the default target is then the run's ``run_after``."""

from datetime import datetime, timedelta

from airflow.sdk import DAG
from airflow_rtml.sensors.watermark import StreamWatermarkSensor

with DAG("manual_or_scheduled", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    StreamWatermarkSensor(
        task_id="caught_up",
        job_name="training-samples",
        poke_interval=5,            # seconds, or a timedelta
        timeout=timedelta(hours=1), # or 3600
        soft_fail=True,             # skip, not fail, when the stream does not get there in time
        deferrable=True,
    )
