"""The stream sensors are Airflow sensors (issue 17): BaseSensorOperator's arguments and semantics on the worker
path, against a real Flink job whose event time the test drives (tests/event_time.py). The deferred path in the
real triggerer is tests/system/test_sensor_results.py."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowRescheduleException, AirflowSensorTimeout, AirflowSkipException
from support import ti_context

from airflow_rtml.exceptions import FlinkWaitTimeout
from airflow_rtml.sensors.flink import FlinkJobStateSensor
from airflow_rtml.sensors.watermark import StreamWatermarkSensor

HOUR_END = int(datetime(2026, 1, 1, 11, tzinfo=timezone.utc).timestamp() * 1000)
RESULT_KEYS = {"stream", "job_id", "progress_ms", "threshold_ms", "checkpoint_id", "last_event_time_ms"}


class RescheduleTi(SimpleNamespace):
    """The task instance a reschedule-mode sensor asks for its first try's start (none yet: a first try)."""

    def get_first_reschedule_date(self, context):
        return None

    def xcom_push(self, key, value):
        pass


def test_timeout_in_seconds_raises_a_sensor_timeout_and_soft_fail_skips(job, hook):
    job.produce(HOUR_END - 60_000)
    assert job.wait_progress(hook, HOUR_END - 60_000) == HOUR_END - 60_000
    started = time.monotonic()
    with pytest.raises(FlinkWaitTimeout, match="did not reach 2026-01-01T10:59:59.999Z") as caught:
        StreamWatermarkSensor(task_id="s", job_name=job.name, target=HOUR_END, deferrable=False, timeout=2,
                              poke_interval=0.5).execute(ti_context())
    assert isinstance(caught.value, AirflowSensorTimeout)  # Airflow's own semantics apply (soft_fail, below)
    assert 2 <= time.monotonic() - started < 10
    with pytest.raises(AirflowSkipException):
        StreamWatermarkSensor(task_id="s", job_name=job.name, target=HOUR_END, deferrable=False,
                              timeout=timedelta(seconds=1), poke_interval=0.5, soft_fail=True).execute(ti_context())


def test_poke_path_returns_the_documented_dict(job, hook):
    job.produce(HOUR_END)
    assert job.wait_progress(hook, HOUR_END) == HOUR_END
    result = StreamWatermarkSensor(task_id="s", job_name=job.name, target="2026-01-01T11:00:00Z",
                                   deferrable=False, poke_interval=0.2, timeout=30).execute(ti_context())
    assert type(result) is dict and set(result) == RESULT_KEYS, result
    assert result["progress_ms"] == HOUR_END and result["threshold_ms"] == HOUR_END - 1
    assert result["job_id"] == job.job_id and result["stream"] == job.name


def test_reschedule_mode_frees_the_slot_until_the_window_closes(job, hook):
    job.produce(HOUR_END - 2)
    assert job.wait_progress(hook, HOUR_END - 2) == HOUR_END - 2
    ctx = {"ti": RescheduleTi()}
    sensor = StreamWatermarkSensor(task_id="s", job_name=job.name, target=HOUR_END, deferrable=False,
                                   mode="reschedule", poke_interval=30, timeout=600)
    with pytest.raises(AirflowRescheduleException):  # one millisecond short: never early, slot given back
        sensor.execute(ctx)
    job.produce(HOUR_END - 1)
    assert job.wait_progress(hook, HOUR_END - 1) == HOUR_END - 1
    assert sensor.execute(ctx)["progress_ms"] == HOUR_END - 1


def test_a_manual_run_without_data_interval_waits_for_its_run_after(job, hook):
    """Airflow 3 gives a manually triggered run no logical date and no data interval; the default target is
    then the run's ``run_after``."""
    job.produce(HOUR_END)
    assert job.wait_progress(hook, HOUR_END) == HOUR_END
    ctx = {**ti_context(), "dag_run": SimpleNamespace(run_after=datetime(2026, 1, 1, 11, tzinfo=timezone.utc))}
    result = StreamWatermarkSensor(task_id="s", job_name=job.name, deferrable=False, poke_interval=0.2,
                                   timeout=30).execute(ctx)
    assert result["threshold_ms"] == HOUR_END - 1
    later = {**ti_context(), "dag_run": SimpleNamespace(run_after=datetime(2026, 1, 1, 12, tzinfo=timezone.utc))}
    with pytest.raises(FlinkWaitTimeout):  # the run_after an hour later is not reached: it waits, never early
        StreamWatermarkSensor(task_id="s", job_name=job.name, deferrable=False, poke_interval=0.2,
                              timeout=2).execute(later)


def test_job_state_sensor_takes_seconds_and_soft_fails_on_timeout(job, hook):
    ok = FlinkJobStateSensor(task_id="s", job_name=job.name, deferrable=False, poke_interval=0.5,
                             timeout=30).execute(ti_context())
    assert ok == {"job_id": job.job_id, "state": "RUNNING"}
    with pytest.raises(FlinkWaitTimeout):
        FlinkJobStateSensor(task_id="s", job_id=job.job_id, target_states=["FINISHED"], deferrable=False,
                            poke_interval=0.5, timeout=2).execute(ti_context())
    with pytest.raises(AirflowSkipException):
        FlinkJobStateSensor(task_id="s", job_id=job.job_id, target_states=["FINISHED"], deferrable=False,
                            poke_interval=0.5, timeout=1, soft_fail=True).execute(ti_context())


def test_a_commit_aware_wait_decides_across_pokes_of_one_process(job, hook):
    """Each poke is one read; the reader and the wait live across pokes, so a checkpoint triggered after the
    crossing commits it (the job checkpoints every second)."""
    job.produce(HOUR_END)
    assert job.wait_progress(hook, HOUR_END) == HOUR_END
    result = StreamWatermarkSensor(task_id="s", job_name=job.name, target=HOUR_END, commit_aware=True,
                                   deferrable=False, poke_interval=0.5, timeout=60).execute(ti_context())
    assert result["progress_ms"] == HOUR_END and result["checkpoint_id"] is not None, result
