"""A wait by job name whose job is not there yet (issue 11, "no hot failure loops"): it waits up to
``job_missing_timeout`` for the job to appear, then fails with ``job_not_found``; never early, and a wait by id or
a 404 of a job that was found fails at once as before. The real-cluster side is in
tests/integration/test_missing_job_on_cluster.py; the @continuous example DAG over a missing job in tests/system."""

from __future__ import annotations

import asyncio
import importlib
from datetime import timedelta

import pytest

from airflow_rtml.exceptions import FailureReason, FlinkConfigurationError
from airflow_rtml.progress import Observation, ProgressWait
from airflow_rtml.sensors.watermark import StreamWatermarkSensor, StreamWindowSensor
from airflow_rtml.triggers.watermark import FlinkWatermarkTrigger

T = 1_767_265_200_000


def missing(at: float) -> Observation:
    """What the Flink stream reader observes while no job of the name is listed."""
    return Observation(at=at, mono=at, error="No Flink job is named 'samples'.",
                       error_kind=FailureReason.JOB_NOT_FOUND)


def there(at: float, progress: int | None, job_id: str = "j1") -> Observation:
    return Observation(at=at, mono=at, job_id=job_id, state="RUNNING", progress_ms=progress, attempt="a1",
                       attempt_since=0.0)


def wait(**kw) -> ProgressWait:
    args = {"stream": "samples", "threshold_ms": T - 1, "commit_aware": False, "stall_timeout": None,
            "deadline": None, "by_name": True, "now": 0.0, "job_missing_timeout": 60.0}
    return ProgressWait(**{**args, **kw})


def test_a_missing_job_is_waited_for_then_fails_naming_the_timeout():
    w = wait()
    assert all(w.evaluate(missing(t)) is None for t in (100, 130, 159.9))
    assert w.needs_every_observation  # not parked while it counts down
    event = w.evaluate(missing(160))
    assert event["status"] == "failed" and event["reason"] == "job_not_found", event
    assert "within 60s" in event["message"] and "job_missing_timeout" in event["message"]


def test_a_job_that_appears_is_followed_and_never_fires_early():
    w = wait()
    assert w.evaluate(missing(0)) is None
    assert w.evaluate(there(10, T - 2)) is None  # it appeared, below the threshold: still waiting
    assert not w.needs_every_observation
    assert w.evaluate(missing(65)) is None  # gone again (a resubmit): the count starts again, from 65
    assert w.evaluate(missing(124)) is None
    event = w.evaluate(there(126, T - 1, job_id="j2"))
    assert event["status"] == "success" and event["job_id"] == "j2" and event["progress_ms"] == T - 1


def test_the_deadline_still_ends_a_wait_for_a_missing_job_first():
    event = wait(deadline=30.0).evaluate(missing(30))
    assert event["status"] == "timeout" and "No Flink job is named" in event["message"], event


@pytest.mark.parametrize("kw", [{"by_name": False}, {"job_missing_timeout": None}, {"job_missing_timeout": 0}])
def test_a_wait_by_id_or_without_the_timeout_fails_at_once(kw):
    event = wait(**kw).evaluate(missing(0))
    assert event["status"] == "failed" and event["reason"] == "job_not_found"


def test_a_404_of_a_job_that_was_found_is_not_a_missing_job():
    gone = Observation(at=1, mono=1, job_id="j1", error="Flink has no job j1.", error_kind=FailureReason.JOB_NOT_FOUND)
    assert wait().evaluate(gone)["reason"] == "job_not_found"


def test_missing_since_counts_from_an_earlier_poke():
    assert wait(missing_since=100.0).evaluate(missing(160))["reason"] == "job_not_found"


def test_the_trigger_serializes_it_and_triggers_from_before_stay_equal():
    trig = FlinkWatermarkTrigger(threshold_ms=T - 1, job_name="samples", deadline=1.9e9, job_missing_timeout=300)
    path, kwargs = trig.serialize()
    assert kwargs["job_missing_timeout"] == 300.0
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (path, kwargs) and again.new_wait().job_missing_timeout == 300.0
    old = FlinkWatermarkTrigger(threshold_ms=T - 1, job_name="samples", deadline=1.9e9)
    assert "job_missing_timeout" not in old.serialize()[1] and old.new_wait().job_missing_timeout is None


@pytest.mark.parametrize("bad", ["nan", float("inf"), -1, "soon", True])
def test_a_bad_timeout_is_a_configuration_error_naming_it(bad):
    with pytest.raises(FlinkConfigurationError, match="job_missing_timeout"):
        FlinkWatermarkTrigger(threshold_ms=1, job_name="x", job_missing_timeout=bad)
    with pytest.raises(FlinkConfigurationError, match="s1: job_missing_timeout"):
        StreamWatermarkSensor(task_id="s1", job_name="x", job_missing_timeout=bad)


def test_sensors_default_to_five_minutes_and_hand_it_to_the_trigger():
    sensor = StreamWatermarkSensor(task_id="s", job_name="x", target=T)
    assert sensor.job_missing_timeout == 300.0
    assert sensor.trigger(1.9e9, T - 1).serialize()[1]["job_missing_timeout"] == 300.0
    started = StreamWatermarkSensor(task_id="s2", job_name="x", start_from_trigger=True)
    assert started.start_trigger_args.trigger_kwargs["job_missing_timeout"] == 300.0
    assert StreamWatermarkSensor(task_id="s3", job_name="x", job_missing_timeout=timedelta(0)).job_missing_timeout \
        is None
    window = StreamWindowSensor(task_id="w", job_name="x", asset=_asset(), window=timedelta(minutes=1),
                                job_missing_timeout=timedelta(seconds=90))
    assert window.trigger(1.9e9, T - 1).serialize()[1]["job_missing_timeout"] == 90.0


def test_the_shared_filter_waits_through_a_missing_phase():
    """The triggerer's path over a shared stream: missing, missing, then the job at the threshold."""
    trig = FlinkWatermarkTrigger(threshold_ms=T - 1, job_name="samples", deadline=1e12, job_missing_timeout=60)

    async def go():
        async def stream():
            for obs in (missing(0), missing(1), there(2, T - 1)):
                yield obs
        return [e async for e in trig.filter_shared_stream(stream())]

    (event,) = asyncio.run(go())
    assert event.payload["status"] == "success", event.payload


def _asset():
    from airflow.sdk import Asset

    return Asset(name="rtml_test_missing", uri="rtml://test/missing")
