"""The Flink triggers' contract pieces that need no cluster: serialization and event → exception mapping."""

from __future__ import annotations

import importlib

import pytest
from airflow.triggers.base import BaseTrigger

from airflow_rtml.exceptions import (
    FlinkApiError,
    FlinkJobFailed,
    FlinkJobNotFound,
    FlinkSavepointFailed,
    FlinkWaitTimeout,
)
from airflow_rtml.hooks.flink import JobState, SavepointStatus
from airflow_rtml.operators.flink import FlinkStopJobOperator, FlinkSubmitJobOperator
from airflow_rtml.triggers.flink import (
    EventStatus,
    FailureReason,
    FlinkJobStateTrigger,
    FlinkSavepointTrigger,
    evaluate_job_state,
    evaluate_savepoint,
    make_event,
    raise_for_event,
)


def _round_trip(trig):
    path, kwargs = trig.serialize()
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert type(again) is type(trig)
    assert again.serialize() == (path, kwargs)
    return kwargs


def test_serialize_round_trip_recreates_an_equal_trigger():
    kwargs = _round_trip(FlinkJobStateTrigger("a" * 32, ["running", "FINISHED"], "flink_x", poll_interval=3,
                                              deadline=1.7e9))
    assert kwargs["target_states"] == ["RUNNING", "FINISHED"] and kwargs["deadline"] == 1.7e9


def test_savepoint_trigger_serialize_round_trip_keeps_trigger_id_and_deadline():
    kwargs = _round_trip(FlinkSavepointTrigger("a" * 32, "b" * 32, "flink_x", poll_interval=0.5, deadline=1.8e9,
                                               stop=True))
    assert kwargs == {"job_id": "a" * 32, "savepoint_trigger_id": "b" * 32, "stop": True, "flink_conn_id": "flink_x",
                      "poll_interval": 0.5, "deadline": 1.8e9}


def test_trigger_fields_do_not_collide_with_what_the_triggerer_sets_on_a_trigger():
    """The triggerer assigns ``trigger_id`` (its DB id), ``task_instance``, … on every trigger at runtime: a
    serialized field of the same name would be overwritten (a real bug this test keeps out)."""

    class Bare(BaseTrigger):
        def serialize(self):
            return ("x", {})

        async def run(self):
            yield None

    runtime_attrs = set(vars(Bare()))
    assert "trigger_id" in runtime_attrs
    for trig in (FlinkJobStateTrigger("a" * 32, ["RUNNING"]), FlinkSavepointTrigger("a" * 32, "b" * 32)):
        assert not runtime_attrs & set(trig.serialize()[1]), runtime_attrs & set(trig.serialize()[1])


def test_savepoint_events():
    assert evaluate_savepoint("j", SavepointStatus("t", True, None, None)) is None
    ok = evaluate_savepoint("j", SavepointStatus("t", False, "file:/sp/savepoint-1", None))
    assert raise_for_event(ok)["location"] == "file:/sp/savepoint-1" and ok["trigger_id"] == "t"
    # Flink answers COMPLETED with a failure cause when the job is not running.
    failed = evaluate_savepoint("j", SavepointStatus("t", False, None, "java.lang.IllegalStateException: not running"),
                                JobState.FINISHED)
    with pytest.raises(FlinkSavepointFailed, match="not running") as err:
        raise_for_event(failed)
    assert err.value.trigger_id == "t" and err.value.job_id == "j" and "FINISHED" in str(err.value)


def test_unknown_target_state_is_rejected_with_the_valid_list():
    with pytest.raises(ValueError, match="valid states are"):
        FlinkJobStateTrigger("a" * 32, ["STARTED"])


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (JobState.RUNNING, EventStatus.SUCCESS.value),
        (JobState.RESTARTING, None),
        (JobState.INITIALIZING, None),
        (JobState.FAILED, EventStatus.FAILED.value),
        (JobState.CANCELED, EventStatus.FAILED.value),
        (JobState.FINISHED, EventStatus.FAILED.value),
    ],
)
def test_evaluate_job_state_waiting_for_running(state, expected):
    event = evaluate_job_state("j", state, ["RUNNING"], "java.lang.X: boom")
    assert (event["status"] if event else None) == expected


def test_failure_event_carries_root_cause_and_raises_job_failed():
    event = evaluate_job_state("j", JobState.FAILED, ["RUNNING"], "java.lang.IllegalStateException: boom\n\tat x")
    assert event["reason"] == FailureReason.JOB_FAILED.value
    with pytest.raises(FlinkJobFailed, match="boom") as err:
        raise_for_event(event)
    assert err.value.job_id == "j" and err.value.state == "FAILED" and "boom" in err.value.root_cause


@pytest.mark.parametrize(
    ("event", "exc"),
    [
        (make_event(EventStatus.TIMEOUT, "j", "late"), FlinkWaitTimeout),
        (make_event(EventStatus.FAILED, "j", "gone", reason=FailureReason.JOB_NOT_FOUND), FlinkJobNotFound),
        (make_event(EventStatus.FAILED, "j", "400", reason=FailureReason.API_ERROR), FlinkApiError),
        (make_event(EventStatus.FAILED, "j", "done", "FINISHED", FailureReason.UNEXPECTED_STATE), FlinkJobFailed),
    ],
)
def test_each_non_success_event_raises_its_exception(event, exc):
    with pytest.raises(exc):
        raise_for_event(event)


def test_events_are_plain_json_types():
    event = make_event(EventStatus.FAILED, "j", "m", "FAILED", FailureReason.JOB_FAILED, "cause")
    assert all(type(v) in (str, type(None)) for v in event.values())


def test_operator_arguments_are_validated_at_parse_time():
    with pytest.raises(Exception, match="exactly one of jar=, python= or sql="):
        FlinkSubmitJobOperator(task_id="t", job_name="n")
    with pytest.raises(Exception, match="if_running must be"):
        FlinkSubmitJobOperator(task_id="t", job_name="n", jar="x.jar", if_running="restart")
    with pytest.raises(Exception, match="exactly one of job_id= or job_name="):
        FlinkStopJobOperator(task_id="t")
