"""The Streams view on a Kafka progress stream, against the real Kafka broker of the local stack: the page's
JSON shows the stream's progress (the minimum over its expected producers), each producer's progress and the
malformed records, as the Kafka trigger would see them; one consumer per topic however many waits and tabs;
a connection secret never reaches the JSON."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from confluent_kafka import Producer
from event_time import BOOTSTRAP, create_topic
from fastapi.testclient import TestClient
from support import wait_for

from airflow_rtml.plugins.app import FlinkReaders, KafkaTopics, StreamReaders, create_app
from airflow_rtml.plugins.board import KAFKA_WATERMARK_TRIGGER, OpenWait
from airflow_rtml.progress import ProgressSignal
from airflow_rtml.progress_relay import kafka_config, make_producer, publish

T0 = 1767265200000  # 2026-01-01T11:00:00Z


def _wait(topic: str, stream: str, task_id: str, conn_id: str = "kafka_view") -> OpenWait:
    return OpenWait.from_trigger(dag_id="d", run_id="r", task_id=task_id, map_index=-1, waiting_since=time.time(),
                                 kwargs={"topic": topic, "stream": stream, "threshold_ms": T0 + 60_000,
                                         "expected_sources": ["flink:j", "backfill"], "kafka_config_id": conn_id},
                                 classpath=KAFKA_WATERMARK_TRIGGER)


def _client(waits, kafka: KafkaTopics) -> TestClient:
    from airflow.api_fastapi.common.db.common import _get_session
    from airflow.api_fastapi.core_api.security import get_user

    app = create_app(StreamReaders(FlinkReaders(poll_interval=1.0), kafka), max_age=0.5,
                     waits=lambda _session, _dag_ids: waits, windows=lambda *_: {})
    app.dependency_overrides[get_user] = lambda: object()
    app.dependency_overrides[_get_session] = lambda: None
    return TestClient(app)


@pytest.fixture
def readable(monkeypatch):
    import airflow.api_fastapi.app as api_app

    class AllDags:
        def get_authorized_dag_ids(self, **_kw):
            return None

    monkeypatch.setattr(api_app, "get_auth_manager", lambda: AllDags())


def _stream(client: TestClient, name: str) -> dict:
    resp = client.get("/api/streams")
    assert resp.status_code == 200, resp.text
    return next(s for s in resp.json()["streams"] if s["stream"] == name)


@pytest.mark.timeout(180)
def test_a_kafka_progress_stream_is_shown_as_the_trigger_sees_it(stack, monkeypatch, readable):
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_VIEW",
                       json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": BOOTSTRAP}}))
    topic = f"rtml-view-{uuid.uuid4().hex[:8]}"
    create_topic(topic, partitions=2)
    producer = make_producer(kafka_config(bootstrap_servers=BOOTSTRAP))
    for source, ms in (("flink:j", T0 + 30_000), ("backfill", T0 + 10_000)):
        publish(producer, topic, ProgressSignal("samples", ms, source, int(time.time() * 1000), False))
    publish(producer, topic, ProgressSignal("other", T0 + 5, "flink:j", int(time.time() * 1000), False))
    raw = Producer({"bootstrap.servers": BOOTSTRAP})
    raw.produce(topic, key=b"samples", value=b"{not json")
    raw.flush(10)

    kafka = KafkaTopics(poll_interval=0.3)
    waits = [_wait(topic, "samples", "a"), _wait(topic, "samples", "b"), _wait(topic, "other", "c")]
    with _client(waits, kafka) as client:
        samples = wait_for("the view to have read the topic",
                           lambda: (s := _stream(client, "samples"))["watermark_ms"] is not None and s, 60, 0.5)
        assert samples["source"] == "kafka" and samples["topic"] == topic and samples["conn_id"] == "kafka_view"
        assert samples["watermark_ms"] == T0 + 10_000  # the slower expected producer
        assert samples["sources"] == {"flink:j": T0 + 30_000, "backfill": T0 + 10_000}
        assert samples["malformed"] == 1 and samples["error"] is None
        assert [w["task_id"] for w in samples["waits"]] == ["a", "b"] and samples["waits"][0]["target_ms"] == T0 + 60_000
        assert _stream(client, "other")["watermark_ms"] is None  # "backfill" never reported: unknown, not T0 + 5
        assert len(kafka._topics) == 1  # one consumer for the topic, its two streams and three waits

        publish(producer, topic, ProgressSignal("samples", T0 + 40_000, "backfill", int(time.time() * 1000), False))
        moved = wait_for("the view to follow the producer", lambda: (s := _stream(client, "samples"))[
            "watermark_ms"] == T0 + 30_000 and s, 30, 0.5)
        assert moved["sources"]["backfill"] == T0 + 40_000
        tasks = [entry["task"] for entry in kafka._topics.values()]
    assert kafka._topics == {} and all(t.done() for t in tasks)  # the app's shutdown stopped its consumer


def test_a_kafka_secret_echoed_in_an_error_is_scrubbed(monkeypatch):
    """A broker or proxy that echoes the SASL password (or a URL with credentials) in an error: the view's
    error text has neither."""
    import asyncio

    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_BAD", json.dumps({"conn_type": "kafka", "password": "conn-pass-1", "extra": {
        "bootstrap.servers": BOOTSTRAP, "sasl.username": "u", "sasl.password": "hunter2-secret"}}))
    text = asyncio.run(KafkaTopics(poll_interval=1)._scrub(
        "kafka_bad", "auth failed for u/hunter2-secret (conn-pass-1) at http://u:pw123@proxy:1"))
    assert text == "auth failed for u/*** (***) at http://***@proxy:1", text
