"""A watermark wait that starts in the triggerer (``start_from_trigger=True``, issue 17): the scheduler defers the
task with the sensor's ``start_trigger_args``; the triggerer builds the trigger from those kwargs, renders the
task's templated fields on it and only then resolves the threshold and the deadline. Exercised here through
Airflow's own pieces: the DAG serializer (what the scheduler and the triggerer read), ``BaseTrigger``'s
``task_instance`` setter (which picks the fields to render) and its ``render_template_fields``."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pendulum
import pytest
from airflow.sdk import DAG, Asset
from airflow.serialization.decoders import smart_decode_trigger_kwargs
from airflow.serialization.enums import Encoding
from airflow.serialization.serialized_objects import DagSerialization

from airflow_rtml.exceptions import FlinkConfigurationError
from airflow_rtml.progress import Observation
from airflow_rtml.sensors.watermark import StreamWatermarkSensor, StreamWindowSensor
from airflow_rtml.triggers.watermark import FlinkWatermarkTrigger

END = datetime(2026, 1, 1, 11, tzinfo=timezone.utc)
END_MS = int(END.timestamp() * 1000)


def _serialized_task(**kw):
    with DAG("d", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        StreamWatermarkSensor(task_id="w", start_from_trigger=True, **kw)
    return DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task("w")


def _trigger_as_the_triggerer_builds_it(task, context, timeout_after=None) -> FlinkWatermarkTrigger:
    """What Airflow 3.3's triggerer does for a start-from-trigger task: the trigger from the (decoded) kwargs, its
    task instance set (choosing the fields to render), its timeout, then ``render_template_fields``."""
    raw = task.start_trigger_args.trigger_kwargs
    raw = raw.get(Encoding.VAR, raw) if isinstance(raw, dict) else raw
    assert task.start_from_trigger and task.start_trigger_args.trigger_cls.endswith("FlinkWatermarkTrigger")
    trigger = FlinkWatermarkTrigger(**{k: smart_decode_trigger_kwargs(v) for k, v in raw.items()})
    trigger.task_instance = SimpleNamespace(task_id=task.task_id, task=task)
    trigger.timeout_after = timeout_after
    trigger.render_template_fields(context=context)
    return trigger


def _snap(at: float, progress: int) -> Observation:
    return Observation(at=at, mono=at, state="RUNNING", progress_ms=progress, job_id="j1", attempt="a1",
                       attempt_since=0.0)


def _events(trigger, *snaps) -> list:
    async def source():
        for s in snaps:
            yield s

    async def go():
        return [e async for e in trigger.filter_shared_stream(source())]

    return asyncio.run(go())


def test_the_triggerer_renders_the_target_and_job_then_the_wait_is_never_early():
    task = _serialized_task(job_name="{{ params.stream }}", target="{{ params.hour_end }}",
                            lateness=timedelta(seconds=2), timeout=600)
    assert set(task.start_trigger_args.trigger_kwargs[Encoding.VAR]) >= {"target", "job_name", "timeout_s"}
    timeout_after = datetime.now(timezone.utc) + timedelta(seconds=600 + FlinkWatermarkTrigger.START_TIMEOUT_GRACE_S)
    trigger = _trigger_as_the_triggerer_builds_it(
        task, {"params": {"stream": "samples", "hour_end": END.isoformat()}}, timeout_after)
    assert set(trigger.template_fields) == {"target", "job_name", "job_id", "vertex"}
    assert (trigger.job_name, trigger.stream) == ("samples", "samples")
    threshold = END_MS - 1 + 2000
    assert trigger.shared_stream_key() == FlinkWatermarkTrigger(threshold_ms=threshold, job_name="samples",
                                                                poll_interval=1.0).shared_stream_key()
    events = _events(trigger, _snap(1, threshold - 1), _snap(2, threshold))
    assert len(events) == 1 and events[0].payload["status"] == "success"
    assert events[0].payload["threshold_ms"] == threshold and events[0].payload["progress_ms"] == threshold
    # the deadline is the task's trigger timeout (kept in the DB across triggerer restarts) less the grace
    assert trigger.deadline == pytest.approx(timeout_after.timestamp() - FlinkWatermarkTrigger.START_TIMEOUT_GRACE_S)


def test_one_observation_below_the_rendered_threshold_does_not_fire():
    task = _serialized_task(job_name="samples", target="{{ params.hour_end }}")
    trigger = _trigger_as_the_triggerer_builds_it(task, {"params": {"hour_end": END.isoformat()}})
    assert _events_until_quiet(trigger, _snap(1, END_MS - 2)) == []


def _events_until_quiet(trigger, *snaps) -> list:
    """Events of ``snaps``, the source then staying open (no end-of-source decision) for a moment."""
    async def source():
        for s in snaps:
            yield s
        await asyncio.sleep(3600)

    async def go():
        out = []

        async def collect():
            async for e in trigger.filter_shared_stream(source()):
                out.append(e)
        try:
            await asyncio.wait_for(collect(), 0.5)
        except TimeoutError:
            pass
        return out

    return asyncio.run(go())


def test_the_default_target_is_the_data_interval_end_or_else_the_run_after():
    task = _serialized_task(job_name="samples")
    scheduled = _trigger_as_the_triggerer_builds_it(task, {"data_interval_end": END,
                                                           "dag_run": SimpleNamespace(run_after=None)})
    manual = _trigger_as_the_triggerer_builds_it(_serialized_task(job_name="samples"),
                                                 {"dag_run": SimpleNamespace(run_after=END + timedelta(hours=1))})
    scheduled.resolve(), manual.resolve()
    assert scheduled.threshold_ms == END_MS - 1
    assert manual.threshold_ms == END_MS + 3_600_000 - 1


def test_without_a_trigger_timeout_the_deadline_counts_from_the_start():
    trigger = FlinkWatermarkTrigger(job_name="s", target=END_MS, timeout_s=30)
    before = time.time()
    trigger.resolve()
    assert before + 30 <= trigger.deadline <= time.time() + 30


def test_a_missing_template_variable_is_named():
    task = _serialized_task(job_name="samples", target="{{ data_interval_end }}")
    with pytest.raises(FlinkConfigurationError, match="data_interval_end"):
        _trigger_as_the_triggerer_builds_it(task, {"dag_run": SimpleNamespace(run_after=END)})


def test_what_cannot_start_in_the_triggerer_is_refused():
    with pytest.raises(FlinkConfigurationError, match="deferrable=False"):
        StreamWatermarkSensor(task_id="w", job_name="s", start_from_trigger=True, deferrable=False)
    with pytest.raises(FlinkConfigurationError, match="cannot start in the triggerer"):
        StreamWindowSensor(task_id="w", job_name="s", asset=Asset(name="a", uri="rtml://a"),
                           window=timedelta(minutes=1), start_from_trigger=True)
    with pytest.raises(FlinkConfigurationError, match="exactly one of threshold_ms= or target="):
        FlinkWatermarkTrigger(job_name="s", threshold_ms=1, target=2)
    with pytest.raises(FlinkConfigurationError, match="exactly one of threshold_ms= or target="):
        FlinkWatermarkTrigger(job_name="s")


def test_a_sensor_without_start_from_trigger_starts_on_a_worker_as_before():
    sensor = StreamWatermarkSensor(task_id="w", job_name="s", deferrable=True)
    assert sensor.start_from_trigger is False and sensor.start_trigger_args is None


def test_a_dag_with_many_waits_from_the_triggerer_is_warned_once(caplog):
    """Airflow 3.3's triggerer deserializes the whole DAG for each start-from-trigger wait (benchmarks/README.md:
    1,000 in one DAG blocked it > 30 s). A DAG reaching FROM_TRIGGER_WARN_AT such waits says so, once."""
    import logging

    from airflow.sdk import DAG

    limit = StreamWatermarkSensor.FROM_TRIGGER_WARN_AT
    with caplog.at_level(logging.WARNING):
        with DAG("few_from_trigger", schedule=None):
            for i in range(limit - 1):
                StreamWatermarkSensor(task_id=f"w{i}", job_name="j", start_from_trigger=True)
            for i in range(5):  # waits that start on a worker do not count
                StreamWatermarkSensor(task_id=f"d{i}", job_name="j", deferrable=True)
        assert "start_from_trigger=True" not in caplog.text
        with DAG("many_from_trigger", schedule=None):
            for i in range(limit + 50):
                StreamWatermarkSensor(task_id=f"w{i}", job_name="j", start_from_trigger=True)
    warned = [r for r in caplog.records if "waits with start_from_trigger=True" in r.getMessage()]
    assert len(warned) == 1 and "many_from_trigger" in warned[0].getMessage()
    assert f"has {limit} waits" in warned[0].getMessage() and "split the waits" in warned[0].getMessage()
