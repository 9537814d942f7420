"""KafkaWatermarkTrigger and the progress relay against the real Kafka broker (and a real Flink job whose event
time the test drives, see event_time.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from datetime import datetime, timezone

import pytest
from confluent_kafka import Producer
from event_time import BOOTSTRAP, create_topic

from airflow_rtml.local.cli import main
from airflow_rtml.progress import END_OF_STREAM, ProgressSignal, threshold_for
from airflow_rtml.progress_relay import kafka_config, make_producer, publish, relay
from airflow_rtml.triggers.kafka import KafkaWatermarkTrigger

HOUR_END = int(datetime(2026, 1, 1, 11, tzinfo=timezone.utc).timestamp() * 1000)  # window [10:00, 11:00)
THRESHOLD = threshold_for(HOUR_END)
STREAM = "features"


@pytest.fixture
def topic(stack, monkeypatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT",
                       json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": BOOTSTRAP}}))
    name = f"rtml-progress-{uuid.uuid4().hex[:8]}"
    create_topic(name, partitions=3)
    return name


def send(topic: str, *signals: tuple[str, int] | tuple[str, int, bool]) -> None:
    """Publish (source, watermark[, final]) signals of STREAM, acknowledged by the broker."""
    producer = make_producer(kafka_config(bootstrap_servers=BOOTSTRAP))
    for source, watermark, *final in signals:
        publish(producer, topic, ProgressSignal(STREAM, watermark, source, int(time.time() * 1000), bool(final)))


def trigger(topic: str, **kw) -> KafkaWatermarkTrigger:
    return KafkaWatermarkTrigger(**{"topic": topic, "stream": STREAM, "threshold_ms": THRESHOLD,
                                    "poll_interval": 0.2, "deadline": time.time() + 30, **kw})


def first_event(trig: KafkaWatermarkTrigger, on_raw: Callable[[dict], None] | None = None) -> dict:
    """The trigger's terminal event; ``on_raw`` sees each raw snapshot of the shared consumer first."""

    async def tapped(raws: AsyncIterator[dict]) -> AsyncIterator[dict]:
        async for raw in raws:
            if on_raw:
                await asyncio.to_thread(on_raw, raw)
            yield raw

    async def run() -> dict:
        async with aclosing(trig.open_shared_stream(trig.serialize()[1])) as raws, \
                aclosing(trig.filter_shared_stream(tapped(raws))) as events:
            async for event in events:
                return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(run())


def test_progress_is_the_minimum_of_two_producers_and_fires_only_when_both_passed(topic):
    send(topic, ("a", HOUR_END + 60_000), ("b", HOUR_END - 2))
    trig = trigger(topic, expected_sources=["a", "b"])
    waiting: list = []

    def on_raw(raw: dict) -> None:
        if raw.caught_up and raw.streams.get(STREAM, {}).get("b") == HOUR_END - 2:
            waiting.append(trig.wait_snapshot(raw).progress_ms)
            if len(waiting) == 5:  # five rounds with a past the threshold and b not: the wait went on
                send(topic, ("b", HOUR_END - 1))

    event = first_event(trig, on_raw)
    assert waiting == [HOUR_END - 2] * 5
    assert event["status"] == "success" and event["progress_ms"] == HOUR_END - 1, event
    assert event["sources"] == {"a": HOUR_END + 60_000, "b": HOUR_END - 1} and event["stream"] == STREAM
    assert event["threshold_ms"] == THRESHOLD and event["topic"] == topic and event["malformed"] == 0


def test_malformed_records_are_counted_and_do_not_stop_the_wait(topic):
    producer = Producer({"bootstrap.servers": BOOTSTRAP})
    for value in (b"{not json", None, json.dumps({"stream": STREAM, "watermark_ms": HOUR_END}).encode(),
                  json.dumps({"stream": STREAM, "watermark_ms": True, "source": "a", "emitted_at_ms": 1}).encode()):
        producer.produce(topic, key=STREAM.encode(), value=value)
    assert producer.flush(10) == 0
    send(topic, ("a", HOUR_END))
    event = first_event(trigger(topic, expected_sources=["a"]))
    assert event["status"] == "success" and event["progress_ms"] == HOUR_END and event["malformed"] == 4, event


def test_a_final_signal_releases_the_minimum(topic):
    send(topic, ("a", HOUR_END), ("b", HOUR_END - 60_000))
    held: list = []

    def on_raw(raw: dict) -> None:
        if raw.caught_up and raw.streams.get(STREAM, {}).get("b") == HOUR_END - 60_000:
            held.append(raw)
            if len(held) == 3:
                send(topic, ("b", HOUR_END - 60_000, True))  # b ended: it no longer holds the stream back

    event = first_event(trigger(topic, expected_sources=["a", "b"]), on_raw)
    assert len(held) == 3
    assert event["status"] == "success" and event["progress_ms"] == HOUR_END, event
    assert event["sources"] == {"a": HOUR_END, "b": END_OF_STREAM}


def test_a_stream_that_does_not_move_is_reported_as_stalled_naming_its_producers(topic):
    send(topic, ("a", HOUR_END - 60_000), ("a", HOUR_END - 120_000))  # the lower one is ignored (monotone)
    event = first_event(trigger(topic, expected_sources=["a"], stall_timeout=2))
    assert event["status"] == "failed" and event["reason"] == "stalled", event
    assert event["progress_ms"] == HOUR_END - 60_000
    assert f"Producers on topic {topic}: a at 2026-01-01T10:59:00.000Z." in event["message"], event["message"]


def test_a_missing_topic_is_retried_until_the_deadline_and_named(topic):
    event = first_event(trigger(f"{topic}-missing", deadline=time.time() + 3))
    assert event["status"] == "timeout" and "does not exist yet" in event["message"], event


def test_run_is_the_same_wait_without_a_shared_stream(topic):
    send(topic, ("a", THRESHOLD))

    async def run() -> dict:
        async with aclosing(trigger(topic, expected_sources=["a"]).run()) as events:
            async for event in events:
                return event.payload
        raise AssertionError("no event")

    assert asyncio.run(run())["progress_ms"] == THRESHOLD


def test_relay_publishes_a_flink_jobs_progress_for_the_kafka_trigger(topic, job, hook, stack, capsys):
    flink_url = f"http://127.0.0.1:{stack.cfg.ports.flink_rest}"
    job.produce(HOUR_END - 2)
    assert job.wait_progress(hook, HOUR_END - 2) == HOUR_END - 2
    [signal] = relay(job_name=job.name, stream=STREAM, topic=topic, source="flink", base_url=flink_url,
                     bootstrap_servers=BOOTSTRAP, once=True)
    assert (signal.watermark_ms, signal.source, signal.final) == (HOUR_END - 2, "flink", False)
    early = first_event(trigger(topic, expected_sources=["flink"], deadline=time.time() + 2))
    assert early["status"] == "timeout" and early["progress_ms"] == HOUR_END - 2, early

    job.produce(HOUR_END - 1)
    assert job.wait_progress(hook, HOUR_END - 1) == HOUR_END - 1
    assert main(["progress", "relay", "--job-name", job.name, "--stream", STREAM, "--topic", topic, "--source",
                 "flink", "--flink-url", flink_url, "--bootstrap", BOOTSTRAP, "--once"]) == 0
    assert f"published {STREAM} = 2026-01-01T10:59:59.999Z ({HOUR_END - 1}) from flink to {topic}" in \
        capsys.readouterr().out
    fired = first_event(trigger(topic, expected_sources=["flink"]))
    assert fired["status"] == "success" and fired["progress_ms"] == HOUR_END - 1, fired


def test_relay_loop_publishes_each_advance_and_a_final_signal_when_the_job_finishes(topic, job, hook):
    job.produce(HOUR_END - 60_000)
    assert job.wait_progress(hook, HOUR_END - 60_000) == HOUR_END - 60_000
    published: list[ProgressSignal] = []
    result: list = []
    loop = threading.Thread(daemon=True, target=lambda: result.append(relay(
        job_name=job.name, stream=STREAM, topic=topic, source="flink", flink_conn_id="flink_default",
        bootstrap_servers=BOOTSTRAP, interval=0.3, final_on_finish=True, on_publish=published.append)))
    loop.start()
    deadline = time.monotonic() + 30
    while not published and time.monotonic() < deadline:
        time.sleep(0.1)
    job.produce(HOUR_END)
    assert job.wait_progress(hook, HOUR_END) == HOUR_END
    while published[-1].watermark_ms != HOUR_END and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [s.watermark_ms for s in published] == [HOUR_END - 60_000, HOUR_END]  # one signal per advance

    hook.stop_with_savepoint(job.job_id)  # FINISHED: with final_on_finish the stream ends
    loop.join(timeout=30)
    assert not loop.is_alive() and result == [published]
    assert published[-1].final and published[-1].watermark_ms == HOUR_END
    event = first_event(trigger(topic, threshold_ms=HOUR_END + 3_600_000, expected_sources=["flink"]))
    assert event["status"] == "success" and event["sources"] == {"flink": END_OF_STREAM}, event
