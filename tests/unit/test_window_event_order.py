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


def test_each_windows_asset_event_carries_its_own_window_only():
    """Each registered event's extra names the one window it stands for (a consumer run reads its own window, not
    the run's list), and its ``last_window_end_ms`` is that window's end (the next run's cursor)."""
    asset = Asset(name="minutes", uri="rtml://t/minutes")
    sensor = StreamWindowSensor(task_id="w", job_name="s", asset=asset, window=timedelta(minutes=1))
    events = OutletEventAccessors()
    crossing = {"status": "success", "job_id": "j1", "progress_ms": START + 3 * MINUTE - 1, "checkpoint_id": 7}
    sensor.execute_complete({"outlet_events": events}, crossing, cursor=START)
    registered = list(_serialize_outlet_events(events))
    assert [e["partition_key"] for e in registered] == ["2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z",
                                                        "2026-01-01T10:02:00Z"]
    for i, event in enumerate(registered):
        extra = event["extra"]
        start, end = START + i * MINUTE, START + (i + 1) * MINUTE
        assert extra["window"]["start_ms"] == extra["window_start_ms"] == start
        assert extra["window_end_ms"] == extra["last_window_end_ms"] == end
        assert [w["start_ms"] for w in extra["windows"]] == [start]
        assert (extra["stream"], extra["job_id"], extra["checkpoint_id"]) == ("s", "j1", 7)


def test_the_producer_is_not_a_consumer_of_its_own_asset():
    """The window asset is the sensor's outlet only: an inlet too drew the producer as its own consumer (a self-loop
    in Airflow's lineage graph). Inlets the author gives are kept."""
    asset = Asset(name="minutes", uri="rtml://t/minutes")
    sensor = StreamWindowSensor(task_id="w", job_name="s", asset=asset, window=timedelta(minutes=1))
    assert sensor.outlets == [asset] and sensor.inlets == []
    other = Asset(name="other", uri="rtml://t/other")
    assert StreamWindowSensor(task_id="w2", job_name="s", asset=asset, window=timedelta(minutes=1),
                              inlets=[other]).inlets == [other]
