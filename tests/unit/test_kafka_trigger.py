"""KafkaWatermarkTrigger's contract pieces that need no broker: serialization, the connection allow-list, and each
waiter's decision on raw snapshots of the shared consumer."""

from __future__ import annotations

import asyncio
import importlib
import json
import time

import pytest
from airflow.sdk import Connection

from airflow_rtml.exceptions import TRANSIENT, FailureReason, KafkaConfigurationError
from airflow_rtml.local.cli import main
from airflow_rtml.progress import END_OF_STREAM, NO_WATERMARK
from airflow_rtml.triggers.kafka import KafkaWatermarkTrigger, TopicSnapshot, kafka_client_config, stream_progress

T = 1_767_265_199_999  # 2026-01-01T10:59:59.999Z


def _trigger(**kw) -> KafkaWatermarkTrigger:
    return KafkaWatermarkTrigger(**{"topic": "progress", "stream": "s", "threshold_ms": T, **kw})


def test_serialize_round_trip_recreates_an_equal_trigger():
    trig = _trigger(expected_sources=["b", "a", "a"], kafka_config_id="k", stall_timeout=30, poll_interval=0.5,
                    deadline=1_900_000_000.5)
    path, kwargs = trig.serialize()
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert type(again) is KafkaWatermarkTrigger and again.serialize() == (path, kwargs)
    assert kwargs == {"topic": "progress", "stream": "s", "threshold_ms": T, "expected_sources": ["a", "b"],
                      "kafka_config_id": "k", "stall_timeout": 30.0, "poll_interval": 0.5,
                      "deadline": 1_900_000_000.5}
    json.dumps(kwargs)  # plain JSON types only


def test_one_consumer_per_topic_whatever_the_waiters_want():
    a = _trigger(stream="s1", threshold_ms=1, expected_sources=["x"])
    b = _trigger(stream="s2", threshold_ms=2, stall_timeout=5, deadline=10)
    assert a.shared_stream_key() == b.shared_stream_key()
    assert a.shared_stream_key() != _trigger(topic="other").shared_stream_key()
    assert a.shared_stream_key() != _trigger(kafka_config_id="k2").shared_stream_key()


def test_a_single_string_as_expected_sources_is_rejected():
    with pytest.raises(KafkaConfigurationError, match=r"pass \['a'\]"):
        _trigger(expected_sources="a")


def _conn(extra: dict) -> Connection:
    return Connection(conn_id="kafka_progress", conn_type="kafka", extra=json.dumps(extra))


def test_the_allow_list_passes_known_keys_drops_group_settings_and_rejects_the_rest():
    extra = {"bootstrap.servers": "b:9092", "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
             "sasl.username": "u", "sasl.password": "p", "group.id": "g", "enable.auto.commit": True}
    assert kafka_client_config(_conn(extra)) == {
        "bootstrap.servers": "b:9092", "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
        "sasl.username": "u", "sasl.password": "p"}
    with pytest.raises(KafkaConfigurationError, match=r"unsupported extras \['oauth_cb'\].*To fix this"):
        kafka_client_config(_conn({**extra, "oauth_cb": "evil.module.cb"}))
    with pytest.raises(KafkaConfigurationError, match="no 'bootstrap.servers'"):
        kafka_client_config(_conn({"client.id": "x"}))


def test_stream_progress_is_the_minimum_and_unknown_until_every_expected_source_reported():
    assert stream_progress({"a": 5, "b": 7}, ["a", "b"]) == 5
    assert stream_progress({"a": 5}, ["a", "b"]) is None  # b has not reported: never the minimum of the rest
    assert stream_progress({"a": 5, "b": 7, "c": 3}, ["a", "b"]) == 3  # an unlisted producer counts too
    assert stream_progress({"a": END_OF_STREAM, "b": 7}, ["a", "b"]) == 7  # a final producer holds nothing back
    assert stream_progress({"a": NO_WATERMARK, "b": 7}) == NO_WATERMARK
    assert stream_progress({}) is None and stream_progress({}, ["a"]) is None


_KINDS = {"unreachable": TRANSIENT, "config": FailureReason.CONFIGURATION}


def _raw(at: float, sources: dict, caught_up: bool = True, error: str | None = None, kind: str | None = None,
         stream: str = "s") -> TopicSnapshot:
    return TopicSnapshot(at=at, topic="progress", streams={stream: sources, "other": {"a": T + 99}},
                         caught_up=caught_up, malformed=2, regressions=0, error=error, error_kind=_KINDS.get(kind))


def _decide(trigger: KafkaWatermarkTrigger, raws: list[TopicSnapshot]) -> tuple[int, dict | None]:
    """Feed raw snapshots to the waiter; return how many it consumed and its event (None: still waiting)."""
    consumed = 0

    async def stream():
        nonlocal consumed
        for raw in raws:
            consumed += 1
            yield raw

    async def first():
        async for event in trigger.filter_shared_stream(stream()):
            return event.payload
        return None

    event = asyncio.run(first())
    return consumed, event


def test_each_waiter_takes_the_minimum_over_its_own_expected_sources():
    now = 1_000.0
    raws = [_raw(now, {"a": T + 5}), _raw(now + 1, {"a": T + 5, "b": T - 1}), _raw(now + 2, {"a": T + 5, "b": T})]
    consumed, event = _decide(_trigger(expected_sources=["a", "b"]), raws)
    assert consumed == 3 and event["status"] == "success" and event["progress_ms"] == T, event
    assert event["sources"] == {"a": T + 5, "b": T} and event["topic"] == "progress" and event["malformed"] == 2
    # the same snapshots for a waiter expecting only a: it fires on the first one
    consumed, event = _decide(_trigger(expected_sources=["a"]), raws)
    assert consumed == 1 and event["progress_ms"] == T + 5
    # nothing is decided before the consumer caught up, whatever the snapshot holds
    assert _decide(_trigger(), [_raw(now, {"a": T + 5}, caught_up=False)]) == (1, None)


def test_stall_deadline_and_errors_end_the_wait_like_the_flink_trigger():
    stalled = _trigger(expected_sources=["a", "b"], stall_timeout=5)
    t0 = time.time()  # the wait's stall clock starts when filter_shared_stream starts: just after t0
    _, event = _decide(stalled, [_raw(t0 + i, {"a": T - 10}) for i in range(10)])
    assert event["status"] == "failed" and event["reason"] == "stalled", event
    assert "not reported yet: b" in event["message"] and "a at 2026-01-01T10:59:59.989Z" in event["message"]
    # while the broker is unreachable nothing counts as stalled; the deadline still ends the wait
    down = _trigger(stall_timeout=1, deadline=t0 + 5)
    _, event = _decide(down, [_raw(t0 + i, {"a": T - 10}, error="broker down", kind="unreachable") for i in range(7)])
    assert event["status"] == "timeout" and "last error: broker down" in event["message"], event
    _, event = _decide(_trigger(), [_raw(t0, {}, caught_up=False, error="unsupported extras", kind="config")])
    assert event["status"] == "failed" and event["reason"] == "configuration" and "unsupported extras" in event["message"]


def test_cli_rejects_bad_input_with_exit_code_2(capsys):
    assert main(["progress", "publish", "--stream", "s", "--topic", "t", "--watermark-ms", "soon",
                 "--source", "x"]) == 2
    assert "Cannot read a watermark from --watermark-ms" in capsys.readouterr().err
    assert main(["progress", "relay", "--job-name", "j", "--stream", "s", "--topic", "t", "--flink-url", "x:1",
                 "--once"]) == 2
    assert "is not a Flink REST URL" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["progress", "relay", "--job-name", "j", "--stream", "s", "--topic", "t", "--interval", "0"])
    assert exc.value.code == 2
