"""A producer run registers its windows' asset events in window order (issue 17): Airflow 3.3 serializes a task's
partition keys from a set, whose order is not the windows'. Checked through Airflow's own serializer."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Asset
from airflow.sdk.execution_time.context import OutletEventAccessors
from airflow.sdk.execution_time.task_runner import _serialize_outlet_events

from airflow_rtml.sensors.watermark import StreamWindowSensor

START = int(datetime(2026, 1, 1, 10, tzinfo=timezone.utc).timestamp() * 1000)
MINUTE = 60_000


def test_forty_windows_of_one_run_are_registered_in_window_order():
    asset = Asset(name="minutes", uri="rtml://t/minutes")
    sensor = StreamWindowSensor(task_id="w", job_name="s", asset=asset, window=timedelta(minutes=1))
    events = OutletEventAccessors()
    crossing = {"status": "success", "job_id": "j1", "progress_ms": START + 40 * MINUTE - 1}
    out = sensor.execute_complete({"outlet_events": events}, crossing, cursor=START)
    assert len(out["partition_keys"]) == 40 and out["partition_keys"] == sorted(out["partition_keys"])
    registered = [e["partition_key"] for e in _serialize_outlet_events(events)]
    assert registered == out["partition_keys"]
