"""docs/streams.md: wait on a Kafka progress topic (for consumers that cannot reach the JobManager).

A small deferrable operator: it hands ``KafkaWatermarkTrigger`` the hour's threshold and resumes when the stream
``samples`` — the minimum over its producers ``flink:training-samples`` and ``backfill`` — has closed the hour."""

import time
from datetime import datetime

from airflow.sdk import DAG, BaseOperator, CronDataIntervalTimetable
from airflow_rtml.triggers.flink import raise_for_event
from airflow_rtml.triggers.kafka import KafkaWatermarkTrigger


class WaitForHourOnProgressTopic(BaseOperator):
    """Defer until the stream's progress on the topic closes the run's data interval."""

    def execute(self, context):
        end_ms = int(context["data_interval_end"].timestamp() * 1000)   # the window's end, epoch ms
        self.defer(
            trigger=KafkaWatermarkTrigger(topic="rtml.progress", stream="samples", threshold_ms=end_ms - 1,
                                          expected_sources=["flink:training-samples", "backfill"],  # unknown until both reported
                                          kafka_config_id="kafka_default", stall_timeout=900,
                                          deadline=time.time() + 2 * 3600),  # absolute epoch seconds: survives a restart
            method_name="execute_complete",
        )

    def execute_complete(self, context, event):
        return raise_for_event(event)   # the success event, or the matching exception (stalled, timed out, ...)


with DAG("hour_closed_on_progress_topic", schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
         start_date=datetime(2026, 1, 1), catchup=False):
    WaitForHourOnProgressTopic(task_id="samples_hour_closed")
