"""Hostile records on a real Kafka progress topic (the local stack's broker): no wait fires early, and a wait on
another stream of the same topic — the same shared consumer — is never affected. Issue 10's findings 4 and 6.

Each case writes to a fresh topic: hostile records for stream ``victim`` (and a signal of it below the
threshold where a fire would be early), then, after a moment, a signal of stream ``bystander`` at the
threshold. Real triggers read it through the real consumer.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from conftest import check as _check
from conftest import record
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from fake_cluster import T

from airflow_rtml.progress import ProgressSignal
from airflow_rtml.triggers.kafka import KafkaWatermarkTrigger

BOOTSTRAP = "127.0.0.1:9092"


@pytest.fixture
def topic(stack, monkeypatch):
    """A fresh progress topic on the real broker (and the connection waits read it with)."""
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_ADV", json.dumps({"conn_type": "kafka",
                                                             "extra": {"bootstrap.servers": BOOTSTRAP}}))
    return _create(f"rtml-adv-{uuid.uuid4().hex[:8]}")


def _create(name: str, config: dict | None = None) -> str:
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for fut in admin.create_topics([NewTopic(name, 2, 1, config=config or {})]).values():
        fut.result(timeout=30)
    return name


def _produce(topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 0})
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(20) == 0


def sig(stream: str, wm, source: str = "p", final: bool = False, run: str | None = None) -> tuple[bytes, bytes]:
    return stream.encode(), ProgressSignal(stream, wm, source, int(time.time() * 1000), final, run).to_json()


def raw(value: bytes | None, stream: str = "victim") -> tuple[bytes, bytes | None]:
    return stream.encode(), value


def _race(topic: str, victim_records, deadline_s: float | None = None, duration: float = 6.0):
    from conftest import race

    _produce(topic, victim_records)
    kw = {"topic": topic, "threshold_ms": T, "kafka_config_id": "kafka_adv", "poll_interval": 0.2}
    triggers = {"victim": KafkaWatermarkTrigger(stream="victim", **kw,
                                                deadline=time.time() + deadline_s if deadline_s else None),
                "bystander": KafkaWatermarkTrigger(stream="bystander", **kw)}
    return race(triggers, [(1.5, lambda: _produce(topic, [sig("bystander", T)]))], duration)


DEEP = b'{"stream": "victim", "watermark_ms": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
RECORDS = [
    ("kafka-deeply-nested-json", [raw(DEEP)]),
    ("kafka-deeply-nested-array", [raw(b"[" * 200_000 + b"]" * 200_000)]),
    ("kafka-watermark-1e30-string", [raw(json.dumps({"stream": "victim", "watermark_ms": "1e30", "source": "p",
                                                     "emitted_at_ms": 1}).encode())]),
    ("kafka-watermark-1e30-float", [raw(b'{"stream": "victim", "watermark_ms": 1e30, "source": "p", '
                                        b'"emitted_at_ms": 1}')]),
    ("kafka-watermark-10e30-integer", [raw(json.dumps({"stream": "victim", "watermark_ms": 10**31, "source": "p",
                                                       "emitted_at_ms": 1}).encode())]),
    ("kafka-watermark-boolean", [raw(b'{"stream": "victim", "watermark_ms": true, "source": "p", '
                                     b'"emitted_at_ms": 1}')]),
    ("kafka-watermark-NaN", [raw(b'{"stream": "victim", "watermark_ms": NaN, "source": "p", "emitted_at_ms": 1}')]),
    ("kafka-not-utf8", [raw(b"\xff\xfe\xfa{")]),
    ("kafka-tombstone", [raw(None)]),
    ("kafka-json-array", [raw(b"[1, 2, 3]")]),
    ("kafka-json-string", [raw(b'"victim reached the end"')]),
    ("kafka-missing-source", [raw(b'{"stream": "victim", "watermark_ms": 9223372036854775807, '
                                  b'"emitted_at_ms": 1}')]),
    ("kafka-stream-name-5000-chars", [raw(json.dumps({"stream": "v" * 5000, "watermark_ms": T + 1, "source": "p",
                                                      "emitted_at_ms": 1}).encode())]),
    ("kafka-900KB-junk", [raw(b"x" * 900_000)]),
    ("kafka-1000-malformed-then-victim-below", [raw(b"{") for _ in range(1000)] + [sig("victim", T - 1000)]),
    ("kafka-final-then-rerun-of-the-producer", [sig("victim", T - 5000, final=True), sig("victim", T - 1000)]),
    ("kafka-final-of-run-1-then-run-2-below", [sig("victim", T - 5000, final=True, run="r1"),
                                               sig("victim", T - 1000, run="r2")]),
    ("kafka-two-live-processes-one-source-name", [sig("victim", T - 100, run="slow"), sig("victim", T + 50, run="fast"),
                                                  sig("victim", T - 90, run="slow"), sig("victim", T + 60, run="fast")]),
    ("kafka-run-id-not-a-string", [raw(json.dumps({"stream": "victim", "watermark_ms": T + 1, "source": "p",
                                                   "emitted_at_ms": 1, "run": 7}).encode())]),
]


@pytest.mark.parametrize(("case", "records"), RECORDS, ids=[r[0] for r in RECORDS])
def test_hostile_records_never_fire_early_and_never_reach_the_other_stream(topic, case, records):
    _check(case, _race(topic, records))


def test_a_duplicated_source_name_is_reported_in_the_wait_that_it_holds_back(topic):
    records = [sig("victim", T - 100, run="slow"), sig("victim", T + 50, run="fast"), sig("victim", T - 90, run="slow")]
    victim = _check("kafka-duplicate-source-reported", _race(topic, records, deadline_s=3.0), "any")
    assert victim["status"] == "timeout" and victim["duplicate_sources"] == ["p"]
    assert "used by more than one live producer" in victim["message"]


@pytest.mark.parametrize(("case", "config", "what"), [
    ("kafka-compacted-topic", {"cleanup.policy": "compact"}, "compacted"),
    ("kafka-retention-one-minute", {"retention.ms": "60000"}, "retention.ms"),
])
def test_a_topic_whose_signals_can_vanish_fails_its_waits_with_how_to_fix_it(stack, monkeypatch, case, config, what):
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_ADV", json.dumps({"conn_type": "kafka",
                                                             "extra": {"bootstrap.servers": BOOTSTRAP}}))
    name = _create(f"rtml-adv-{uuid.uuid4().hex[:8]}", config)
    _produce(name, [sig("victim", T + 10**6)])  # would fire every wait, were the topic trusted
    from conftest import race

    trig = KafkaWatermarkTrigger(topic=name, stream="victim", threshold_ms=T, kafka_config_id="kafka_adv",
                                 poll_interval=0.2)
    event = race({"victim": trig}, [], 6.0)["victim"]
    record(case, event, True)
    assert event is not None and event["status"] == "failed" and event["reason"] == "configuration", event
    assert what in event["message"] and "To fix this" in event["message"]


@pytest.mark.parametrize(("case", "extra"), [
    ("kafka-extra-list-value", {"bootstrap.servers": [BOOTSTRAP]}),
    ("kafka-extra-bad-librdkafka-value", {"bootstrap.servers": BOOTSTRAP, "security.protocol": "carrier-pigeon"}),
])
def test_a_connection_that_cannot_work_fails_its_waits_at_once(monkeypatch, case, extra):
    from conftest import race

    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_BAD", json.dumps({"conn_type": "kafka", "extra": extra}))
    trig = KafkaWatermarkTrigger(topic="t", stream="s", threshold_ms=T, kafka_config_id="kafka_bad", poll_interval=0.2)
    event = race({"victim": trig}, [], 3.0)["victim"]
    record(case, event, True)
    assert event is not None and event["status"] == "failed" and event["reason"] == "configuration", event
