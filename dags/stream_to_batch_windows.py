"""Example: stream → batch, once per closed event-time window (partitioned assets).

``stream_windows_producer`` watches a Flink job's event-time progress and emits each closed window as a
partition of the ``rtml_example_events_per_minute`` asset; ``process_closed_window`` is scheduled by that
asset's partitions and runs exactly once per window, with the window start as its ``partition_key``.

The stream is the Flink job named by the Airflow Variable ``rtml_example_stream`` (default
``rtml-example-events``); windows are 1 minute long so the example moves quickly.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, PartitionedAssetTimetable, task

from airflow_rtml.sensors.watermark import StreamWindowSensor, window_from_partition_key

WINDOW = timedelta(minutes=1)
EVENTS_PER_MINUTE = Asset(name="rtml_example_events_per_minute", uri="rtml://example/events-per-minute")

with DAG(
    dag_id="stream_windows_producer",
    schedule="@continuous",
    max_active_runs=1,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["airflow-rtml", "example"],
):
    StreamWindowSensor(
        task_id="wait_for_closed_windows",
        job_name="{{ var.value.get('rtml_example_stream', 'rtml-example-events') }}",
        asset=EVENTS_PER_MINUTE,
        window=WINDOW,
        deferrable=True,
        poke_interval=1,
        timeout=timedelta(hours=1),
    )

with DAG(
    dag_id="process_closed_window",
    schedule=PartitionedAssetTimetable(assets=EVENTS_PER_MINUTE),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md="Runs once per closed one-minute window of the example stream; `partition_key` = window start.",
    tags=["airflow-rtml", "example"],
):

    @task
    def read_window(partition_key: str | None = None) -> dict:
        """The batch step: here it only reports which event-time window it would read."""
        window = window_from_partition_key(partition_key, WINDOW)
        return window.to_dict()

    read_window()
