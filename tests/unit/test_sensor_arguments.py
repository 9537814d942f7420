"""The stream sensors take Airflow's sensor arguments (issue 17); their round-1 names still work, with a warning.
What needs Flink is in tests/integration/test_sensors_are_airflow_sensors.py."""

from __future__ import annotations

import warnings
from datetime import timedelta

import pytest
from airflow.sdk import DAG, Asset
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

from airflow_rtml.exceptions import FlinkConfigurationError, FlinkWaitTimeout
from airflow_rtml.sensors.flink import FlinkJobStateSensor
from airflow_rtml.sensors.watermark import StreamWatermarkSensor, StreamWindowSensor

TIMEOUT_EVENT = {"status": "timeout", "reason": None, "job_id": "j", "stream": "s", "progress_ms": 5,
                 "threshold_ms": 9, "message": "Stream s did not reach 9 before the deadline (progress 5)"}


@pytest.mark.parametrize("make", [
    lambda **kw: StreamWatermarkSensor(task_id="w", job_name="s", **kw),
    lambda **kw: StreamWindowSensor(task_id="w", job_name="s", asset=Asset("a"), window=timedelta(minutes=1), **kw),
    lambda **kw: FlinkJobStateSensor(task_id="w", job_name="s", **kw),
])
def test_airflow_sensor_arguments(make):
    sensor = make(poke_interval=timedelta(seconds=3), timeout=20, mode="reschedule", soft_fail=True,
                  exponential_backoff=True, max_wait=60)
    assert (sensor.poke_interval, sensor.timeout, sensor.mode, sensor.soft_fail) == (3.0, 20.0, "reschedule", True)
    assert sensor.wait_timeout == timedelta(seconds=20)  # the round-1 attribute
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = make(poll_interval=0.5, timeout=timedelta(minutes=5))
    assert (old.poke_interval, old.poll_interval, old.timeout) == (0.5, 0.5, 300.0)
    assert [w.category for w in caught] == [DeprecationWarning] and "poke_interval" in str(caught[0].message)
    with pytest.raises(ValueError, match="mode"):
        make(mode="sometimes")


def test_both_names_of_the_poke_interval_conflict():
    with pytest.warns(DeprecationWarning), pytest.raises(FlinkConfigurationError, match="poke_interval= only"):
        StreamWatermarkSensor(task_id="w", job_name="s", poll_interval=2, poke_interval=3)


def test_reschedule_mode_refuses_waits_that_need_several_observations():
    with pytest.raises(FlinkConfigurationError, match="deferrable=True"):
        StreamWatermarkSensor(task_id="w", job_name="s", mode="reschedule", commit_aware=True, deferrable=False)
    with pytest.raises(FlinkConfigurationError, match="mode='poke'"):
        StreamWatermarkSensor(task_id="w", job_name="s", mode="reschedule", stall_timeout=60, deferrable=False)
    # deferred, the triggerer keeps the observations: fine
    StreamWatermarkSensor(task_id="w", job_name="s", mode="reschedule", commit_aware=True, deferrable=True)


def test_a_deferred_timeout_is_a_sensor_timeout_and_soft_fail_skips():
    sensor = StreamWatermarkSensor(task_id="w", job_name="s", deferrable=True)
    with pytest.raises(FlinkWaitTimeout, match="did not reach") as caught:
        sensor.resume_execution("execute_complete", {"event": TIMEOUT_EVENT}, {})
    assert isinstance(caught.value, AirflowSensorTimeout)
    soft = StreamWatermarkSensor(task_id="w", job_name="s", deferrable=True, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        soft.resume_execution("execute_complete", {"event": TIMEOUT_EVENT}, {})
    job_state = FlinkJobStateSensor(task_id="w", job_name="s", deferrable=True, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        job_state.resume_execution("execute_complete", {"event": {**TIMEOUT_EVENT, "state": "RUNNING"}}, {})


def test_a_missing_template_variable_says_which_and_what_to_pass():
    with DAG("manual_runs", schedule=None):  # a DAG's templates are strict: an unknown variable raises
        sensor = StreamWatermarkSensor(task_id="w", job_name="s", target="{{ data_interval_end }}")
    with pytest.raises(FlinkConfigurationError, match="data_interval_end.*run_after"):
        sensor.render_template_fields({"dag_run": None})


def test_the_default_target_without_interval_nor_run_after_names_what_to_pass():
    sensor = StreamWatermarkSensor(task_id="w", job_name="s")
    with pytest.raises(FlinkConfigurationError, match="pass target="):
        sensor.resolve_target({})
    assert sensor.resolve_target({"data_interval_end": "2026-01-01T11:00:00Z"}) == 1767265200000
