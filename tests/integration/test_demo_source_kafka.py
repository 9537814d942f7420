"""The demo source against the real Kafka broker: a consumer reads back exactly the records it planned."""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from collections import Counter

import pytest
from confluent_kafka import Consumer
from event_time import create_topic

from airflow_rtml.demo.source import DemoConfig, generate_hour, run_source, watermark_pushers

PARTITIONS = 3


@pytest.fixture
def cfg(stack) -> DemoConfig:
    """A config whose two topics are new, with three partitions each."""
    run = f"rtml-demo-test-{uuid.uuid4().hex[:8]}"
    for topic in (f"{run}-impressions", f"{run}-clicks"):
        create_topic(topic, partitions=PARTITIONS)
    return DemoConfig(impressions_topic=f"{run}-impressions", clicks_topic=f"{run}-clicks")


def read_back(cfg: DemoConfig, bootstrap: str, expected: int, timeout: float = 60) -> list[tuple]:
    """(topic, partition, key, value) of the topics' records in partition order, once ``expected`` arrived and
    two more seconds brought nothing else."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([cfg.impressions_topic, cfg.clicks_topic])
    records: list[tuple] = []
    try:
        deadline, quiet_until = time.monotonic() + timeout, None
        while time.monotonic() < deadline and (quiet_until is None or time.monotonic() < quiet_until):
            for msg in consumer.consume(1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                records.append((msg.topic(), msg.partition(), msg.key(), msg.value()))
            if len(records) >= expected and quiet_until is None:
                quiet_until = time.monotonic() + 2
    finally:
        consumer.close()
    return records


def test_one_hour_sent_unpaced_is_read_back_record_for_record_in_partition_order(cfg, stack):
    lines: list[str] = []
    ledgers = run_source(cfg, 1, bootstrap=stack.cfg.kafka_bootstrap, pace=False, progress=lines.append)

    emissions, ledger = generate_hour(cfg, 0)
    planned = sorted(emissions + watermark_pushers(cfg, 0), key=lambda e: e.wall_offset_s)
    assert ledgers == [ledger] and len(lines) == 1 and lines[0].startswith("hour 0 [2026-01-01T00:00Z")
    records = read_back(cfg, stack.cfg.kafka_bootstrap, expected=len(planned))
    assert Counter(r[0] for r in records) == Counter(e.topic for e in planned)
    assert Counter(r[0] for r in records if b"hb-" not in r[2]) == {
        cfg.impressions_topic: sum(ledger.impressions.values()) + ledger.late
        + ledger.malformed_by_topic[cfg.impressions_topic],
        cfg.clicks_topic: sum(ledger.clicks.values()) + ledger.malformed_by_topic[cfg.clicks_topic]}
    # librdkafka's default partitioner (CRC-32 of the key) and the idempotent producer keep the planned order
    for topic in (cfg.impressions_topic, cfg.clicks_topic):
        for partition in range(PARTITIONS):
            got = [(r[2], r[3]) for r in records if r[:2] == (topic, partition)]
            assert got == [(e.key, e.value) for e in planned
                           if e.topic == topic and zlib.crc32(e.key) % PARTITIONS == partition]
            assert any(key.startswith(b"hb-") for key, _ in got), "a partition got no watermark pusher"


def test_a_paced_run_follows_the_accelerated_clock_and_stops_when_asked(cfg, stack):
    fast = DemoConfig(**{**cfg.__dict__, "speedup": 36_000.0, "impressions_per_hour": 600})  # 1 hour = 0.1 s
    started = time.monotonic()
    ledgers = run_source(fast, 2, bootstrap=stack.cfg.kafka_bootstrap)
    last = watermark_pushers(fast, 1)[-1].wall_offset_s
    assert last <= time.monotonic() - started < last + 5
    assert ledgers == [generate_hour(fast, h)[1] for h in range(2)]

    stop = threading.Event()
    slow = DemoConfig(**{**fast.__dict__, "speedup": 3_600.0})  # 1 hour = 1 s
    ledgers = run_source(slow, 5, bootstrap=stack.cfg.kafka_bootstrap, progress=lambda _: stop.set(), stop=stop)
    assert [ledger.hour_index for ledger in ledgers] == [0]
