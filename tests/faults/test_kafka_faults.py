"""A real Kafka fault during a progress-topic wait: the broker killed by PID (SIGKILL) and brought back by the
stack's supervisor. The shared progress consumer reconnects by itself; a signal published while the broker was
down (buffered by its producer) is delivered afterwards and counted; nothing fires below the threshold."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timezone

import pytest
from confluent_kafka import Producer
from event_time import BOOTSTRAP, create_topic
from support import first_event, wait_for

from airflow_rtml.progress import ProgressSignal, threshold_for
from airflow_rtml.progress_relay import kafka_config, make_producer, publish
from airflow_rtml.triggers.kafka import KafkaWatermarkTrigger

HOUR_END = int(datetime(2026, 1, 1, 11, tzinfo=timezone.utc).timestamp() * 1000)
THRESHOLD = threshold_for(HOUR_END)
STREAM = "features"


def _signal(watermark: int, source: str = "job-a") -> ProgressSignal:
    return ProgressSignal(STREAM, watermark, source, int(time.time() * 1000), False)


@pytest.mark.timeout(600)
def test_kafka_broker_killed_during_a_progress_wait(stack, monkeypatch, fault_report):
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT",
                       json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": BOOTSTRAP}}))
    topic = f"rtml-fault-progress-{uuid.uuid4().hex[:8]}"
    create_topic(topic, partitions=3)
    broker = stack.service("kafka")
    producer = make_producer(kafka_config(bootstrap_servers=BOOTSTRAP))
    publish(producer, topic, _signal(THRESHOLD - 60_000))  # acknowledged before the fault
    stats: dict = {}
    early = 0

    async def scenario() -> dict:
        nonlocal early
        trig = KafkaWatermarkTrigger(topic=topic, stream=STREAM, threshold_ms=THRESHOLD, poll_interval=0.2,
                                     deadline=time.time() + 400)
        waiting = asyncio.ensure_future(first_event(trig))
        await asyncio.sleep(3)
        early += 0 if not waiting.done() else 1
        victim = stack.process_of(broker)
        killed = time.monotonic()
        victim.kill()
        victim.wait(10)
        # While the broker is down: a below-threshold signal and then the crossing one, buffered by a producer
        # that keeps them until the broker is back (the relay's producer does the same).
        buffered = Producer({"bootstrap.servers": BOOTSTRAP, "message.timeout.ms": 300_000, "acks": "all"})
        for s in (_signal(THRESHOLD - 1), _signal(THRESHOLD)):
            buffered.produce(topic, key=STREAM.encode(), value=s.to_json())
        await asyncio.sleep(2)
        early += 0 if not waiting.done() else 1
        await asyncio.to_thread(wait_for, "the supervisor to bring the broker back",
                                lambda: (p := stack.process_of(broker)) and p.pid != victim.pid and broker.health()[0],
                                240, 1)
        stats["broker_back_s"] = round(time.monotonic() - killed, 1)
        undelivered = await asyncio.to_thread(buffered.flush, 120)
        stats["signals_buffered"] = 2
        stats["signals_undelivered"] = undelivered
        event = await asyncio.wait_for(waiting, 180)
        stats["fired_after_kill_s"] = round(time.monotonic() - killed, 1)
        return event

    try:
        event = asyncio.run(scenario())
    finally:
        stack.up(install=False)  # the broker is back for the next test, whatever happened
    assert event["status"] == "success", event
    early += 0 if event["progress_ms"] >= THRESHOLD else 1
    fault_report("Kafka broker killed (SIGKILL) during a progress-topic wait",
                 "the shared consumer reconnects; signals produced while the broker was down are acknowledged "
                 "after it is back (lost = unacknowledged); the wait fires on the crossing signal, never on the one "
                 "below it (duplicated: a wait ends with one event by construction)",
                 lost=stats["signals_undelivered"], duplicated=0, early=early, **stats)
