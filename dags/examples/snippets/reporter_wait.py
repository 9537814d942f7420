"""docs/streams.md: a watermark wait that reads progress from the TaskManagers' Prometheus reporters, through
the ``flink_reporter`` connection (``metrics_reporter_port=9249``), instead of the JobManager's REST metrics."""

from datetime import datetime

from airflow.sdk import DAG, CronDataIntervalTimetable
from airflow_rtml.sensors.watermark import StreamWatermarkSensor

with DAG("hour_closed_from_reporters", schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
         start_date=datetime(2026, 1, 1), catchup=False):
    StreamWatermarkSensor(task_id="hour_closed", job_name="training-samples", flink_conn_id="flink_reporter",
                          deferrable=True)
