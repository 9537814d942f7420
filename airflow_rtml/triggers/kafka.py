"""KafkaWatermarkTrigger: wait, in the triggerer, until a stream's progress on a Kafka progress topic reaches a
threshold.

The reading lives in :mod:`airflow_rtml.streams.kafka` (one shared consumer per topic, the topic's settings
checked at start, malformed records dead-lettered) and the semantics of signals in
:mod:`airflow_rtml.progress.signals` (the minimum over producers; ``final`` per run of a producer; duplicated
source names detected, their minimum counts). This trigger is thin: each waiter turns the shared
:class:`~airflow_rtml.streams.kafka.TopicSnapshot` into its own observation and lets
:class:`~airflow_rtml.progress.ProgressWait` decide, so the events carry the payload of
:class:`~airflow_rtml.triggers.watermark.FlinkWatermarkTrigger` (``job_id`` is ``""``, ``state`` is
``"RUNNING"`` while the topic is readable) plus ``topic``, ``sources`` (the stream's per-producer progress),
``duplicate_sources`` and ``malformed``.

Guarantees: fires only when the observed progress is ``>= threshold_ms`` and never before the consumer has
read every partition up to the end it saw at start, and checked the topic's settings. A topic that does not
exist yet or an unreachable broker is retried until the absolute ``deadline``, and the wait ends at its
deadline even while the broker does not answer; a compacted or short-retention topic, or a connection whose
settings cannot work, fails every wait on it at once with a message saying how to fix it; a stream whose
progress does not move for ``stall_timeout`` fails with ``reason="stalled"``, naming its producers. Not
guaranteed: a producer that never published (or whose last signal expired) and is not listed in
``expected_sources`` cannot hold the progress back.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Hashable
from contextlib import aclosing
from typing import Any

from airflow.triggers.base import TriggerEvent

from airflow_rtml.exceptions import TRANSIENT, KafkaConfigurationError
from airflow_rtml.progress import Observation, ProgressWait
from airflow_rtml.streams.kafka import (  # noqa: F401 - re-exported: their round-1 import path
    KAFKA_ALLOWED_EXTRAS,
    KAFKA_IGNORED_EXTRAS,
    KafkaProgressConsumer,
    TopicSnapshot,
    kafka_client_config,
    observe_stream,
    producers_note,
    stream_progress,
)
from airflow_rtml.triggers.base import SharedStreamTrigger
from airflow_rtml.triggers.watermark import decide


class KafkaWatermarkTrigger(SharedStreamTrigger):
    """Fire once a stream's progress on a Kafka progress topic is ``>= threshold_ms`` (see the module docstring).

    :param topic: the progress topic.
    :param stream: the stream name (the signals' ``stream`` field).
    :param threshold_ms: progress to reach, epoch ms (a window ``[s, e)`` closes at ``e - 1 + lateness``).
    :param expected_sources: producers that must all have reported before the progress is known.
    :param kafka_config_id: a ``kafka`` connection; only :data:`KAFKA_ALLOWED_EXTRAS` are read from its extra.
    :param stall_timeout: seconds without progress movement (topic readable) that fail the wait as stalled.
    :param poll_interval: seconds between read rounds of the shared consumer.
    :param deadline: absolute epoch seconds; None = no limit.
    """

    def __init__(
        self,
        *,
        topic: str,
        stream: str,
        threshold_ms: int,
        expected_sources: list[str] | None = None,
        kafka_config_id: str = "kafka_default",
        stall_timeout: float | None = None,
        poll_interval: float = 1.0,
        deadline: float | None = None,
    ):
        super().__init__()
        if isinstance(expected_sources, str):
            raise KafkaConfigurationError(
                f"expected_sources must be a list of source names, got the string {expected_sources!r}. "
                f"To fix this, pass [{expected_sources!r}]."
            )
        if not topic or not stream:
            raise KafkaConfigurationError("KafkaWatermarkTrigger needs a non-empty topic= and stream=.")
        self.topic, self.stream, self.threshold_ms = topic, stream, int(threshold_ms)
        self.expected_sources = sorted(set(expected_sources)) if expected_sources is not None else None
        self.kafka_config_id = kafka_config_id
        self.stall_timeout = float(stall_timeout) if stall_timeout else None
        self.poll_interval = float(poll_interval)
        self.deadline = float(deadline) if deadline is not None else None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"topic": self.topic, "stream": self.stream, "threshold_ms": self.threshold_ms,
             "expected_sources": self.expected_sources, "kafka_config_id": self.kafka_config_id,
             "stall_timeout": self.stall_timeout, "poll_interval": self.poll_interval, "deadline": self.deadline},
        )

    def shared_stream_key(self) -> Hashable:
        return ("airflow_rtml.kafka_progress", self.topic, self.kafka_config_id, self.poll_interval)

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[dict]:
        consumer = KafkaProgressConsumer(topic=kwargs["topic"], kafka_config_id=kwargs["kafka_config_id"],
                                         poll_interval=kwargs["poll_interval"])
        async with aclosing(consumer.snapshots()) as snapshots:
            async for snap in snapshots:
                yield snap

    def new_wait(self) -> ProgressWait:
        return ProgressWait(stream=self.stream, threshold_ms=self.threshold_ms, commit_aware=False,
                            stall_timeout=self.stall_timeout, deadline=self.deadline, by_name=True, now=time.time())

    def wait_snapshot(self, raw: TopicSnapshot) -> Observation:
        """This waiter's observation of a topic snapshot (:func:`~airflow_rtml.streams.kafka.observe_stream`)."""
        return observe_stream(raw, self.stream, self.expected_sources)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[TopicSnapshot]) -> AsyncIterator[TriggerEvent]:
        last_error, warned = None, set()

        async def observations() -> AsyncIterator[Observation]:
            nonlocal last_error
            async for raw in shared_stream:
                if raw.error_kind == TRANSIENT and raw.error != last_error:
                    self.log.warning("Stream %s: %s; retrying until the deadline", self.stream, raw.error)
                last_error = raw.error
                for dup in set(raw.duplicates.get(self.stream, [])) - warned:
                    warned.add(dup)
                    self.log.warning("Stream %s: source %r is used by more than one live producer; the slowest "
                                     "counts. To fix this, give each producer its own source name.", self.stream, dup)
                yield self.wait_snapshot(raw)

        async with aclosing(observations()) as mine, aclosing(decide(self.new_wait(), mine, self.log)) as events:
            async for event in events:
                if event["status"] != "success":
                    event["message"] += ". " + producers_note(self.topic, event.get("sources", {}),
                                                              self.expected_sources, event.get("duplicate_sources", ()))
                self.log.info("%s", event["message"])
                yield TriggerEvent(event)
                return
