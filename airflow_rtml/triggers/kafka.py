"""KafkaWatermarkTrigger: wait, in the triggerer, until a stream's progress on a Kafka progress topic reaches a
threshold.

Producers outside Flink (a batch job, :mod:`airflow_rtml.progress_relay` for a Flink job) publish
:class:`~airflow_rtml.progress.ProgressSignal` records on a *progress topic* (JSON value, key = stream name).
A stream's progress there is the minimum over its producers' latest signals; a ``final`` signal counts as
END_OF_STREAM for its producer; per producer a lower watermark never lowers the progress
(:class:`~airflow_rtml.progress.SignalAggregator`). With ``expected_sources`` the progress stays unknown until
each of them has reported, so a producer that has not started yet cannot let the minimum run ahead.

**One consumer per topic.** Every waiter on the same (topic, connection, poll interval) in one triggerer
process shares one consumer (:class:`KafkaProgressConsumer`). It reads the whole topic from the beginning
with a random group id, assigns partitions itself and commits nothing; each poll round it yields a raw
snapshot ``{"at": epoch s, "topic", "streams": {stream: {source: watermark}}, "caught_up": bool, "malformed":
int, "regressions": int, "error": str | None, "error_kind": None | "unreachable" | "config"}``. Each waiter
turns it into its own progress (:func:`stream_progress`) and lets :class:`~airflow_rtml.triggers.watermark.ProgressWait`
decide, so the events carry the payload of :class:`~airflow_rtml.triggers.watermark.FlinkWatermarkTrigger`
(``job_id`` is ``""``, ``state`` is ``"RUNNING"`` while the topic is readable) plus ``topic``, ``sources``
(the stream's per-producer watermarks) and ``malformed``.

Guarantees: fires only when the observed progress is ``>= threshold_ms`` and never before the consumer has
read every partition up to the end it saw at start (``caught_up``): a producer whose signal is still unread
cannot let the minimum run ahead. Malformed records are counted and logged (with their partition and offset),
never fatal. No call blocks the event loop: the consumer is only polled with ``timeout=0`` and metadata is
requested through the admin client's futures. A topic that does not exist yet or an unreachable broker is
retried until the absolute ``deadline``; a stream whose progress does not move for ``stall_timeout`` fails
with ``reason="stalled"``, naming its producers. Not guaranteed: a producer that never published and is not
listed in ``expected_sources`` cannot hold the progress back; a transactional topic whose last offset is a
control record may never count as caught up (producers here are not transactional).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Hashable, Iterable, Mapping
from concurrent.futures import Future
from contextlib import aclosing
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.triggers.base import TriggerEvent
from confluent_kafka import (
    OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicCollection, TopicPartition,
)
from confluent_kafka.admin import AdminClient

from airflow_rtml.exceptions import KafkaConfigurationError
from airflow_rtml.progress import ProgressParseError, ProgressSignal, SignalAggregator, combine, describe
from airflow_rtml.triggers.watermark import ProgressWait, SharedStreamTrigger

log = logging.getLogger(__name__)

KAFKA_ALLOWED_EXTRAS = (
    "bootstrap.servers", "client.id", "security.protocol", "sasl.mechanism", "sasl.mechanisms",
    "sasl.username", "sasl.password", "ssl.ca.location", "ssl.certificate.location", "ssl.key.location",
    "ssl.key.password", "ssl.endpoint.identification.algorithm",
)
"""librdkafka settings read from a ``kafka`` connection's extra; any other key is rejected."""

KAFKA_IGNORED_EXTRAS = ("group.id", "enable.auto.commit", "auto.offset.reset")
"""Consumer-group settings common on ``kafka_default``; the progress consumer sets its own, so they are ignored."""

_METADATA_REFRESH_S = 30.0  # new partitions of the topic are picked up this often
_MALFORMED_LOG_EVERY = 100  # log the 1st, 101st, ... malformed record
_BATCH = 500


def kafka_client_config(conn: Any) -> dict[str, str]:
    """librdkafka settings from a ``kafka`` connection's extra: the allow-listed keys only.

    Raises :class:`~airflow_rtml.exceptions.KafkaConfigurationError` for an unknown key (nothing is passed on
    silently) or a missing ``bootstrap.servers``; :data:`KAFKA_IGNORED_EXTRAS` are dropped.
    """
    extra = conn.extra_dejson or {}
    unknown = sorted(set(extra) - set(KAFKA_ALLOWED_EXTRAS) - set(KAFKA_IGNORED_EXTRAS))
    if unknown:
        raise KafkaConfigurationError(
            f"Connection {conn.conn_id!r} has unsupported extras {unknown}. To fix this, keep only "
            f"{list(KAFKA_ALLOWED_EXTRAS)} in its extra field (or use a separate connection for progress topics)."
        )
    if not extra.get("bootstrap.servers"):
        raise KafkaConfigurationError(
            f"Connection {conn.conn_id!r} has no 'bootstrap.servers'. To fix this, set it in the extra field, "
            'e.g. {"bootstrap.servers": "broker1:9092,broker2:9092"}.'
        )
    return {k: str(v) for k, v in extra.items() if k in KAFKA_ALLOWED_EXTRAS}


def stream_progress(sources: Mapping[str, int], expected_sources: Iterable[str] | None = None) -> int | None:
    """A stream's progress from its per-producer watermarks, as :meth:`SignalAggregator.progress` defines it.

    The minimum over every producer that reported (an unlisted producer counts too); None when none has, or
    when one of ``expected_sources`` has not.
    """
    return combine([*(sources.get(s) for s in expected_sources or ()), *sources.values()])


def producers_note(topic: str, sources: Mapping[str, int], expected_sources: Iterable[str] | None) -> str:
    """Who holds a stream back: ``"Producers on topic t: a at <time>, b ended; not reported yet: c."``"""
    seen = ", ".join(f"{s} at {describe(w)}" for s, w in sorted(sources.items(), key=lambda kv: kv[1])) or "none"
    missing = sorted(set(expected_sources or ()) - set(sources))
    return f"Producers on topic {topic}: {seen}" + (f"; not reported yet: {', '.join(missing)}." if missing else ".")


class KafkaProgressConsumer:
    """The shared read loop of one progress topic: yields a raw snapshot (plain dict) every ``poll_interval``.

    Reads the topic from the beginning with a random group id and ``enable.auto.commit=False``: it commits
    nothing, so it never moves anyone's offsets and a restart simply reads the topic again (signals are
    idempotent). Never blocks: ``consume(timeout=0)``, cached watermark offsets, admin futures polled for
    completion. See the module docstring for the snapshot.
    """

    def __init__(self, *, topic: str, kafka_config_id: str, poll_interval: float):
        self.topic, self.kafka_config_id, self.poll_interval = topic, kafka_config_id, poll_interval
        self.aggregator = SignalAggregator()
        self.streams: set[str] = set()
        self.malformed = 0
        self.error: tuple[str, str] | None = None  # (message, kind) until the broker answers again
        self._partitions: set[int] = set()
        self._caught_up: set[int] = set()
        self._next_offset: dict[int, int] = {}

    async def config(self) -> dict[str, Any]:
        """The client settings of the connection (allow-listed)."""
        return kafka_client_config(await BaseHook.aget_connection(self.kafka_config_id))

    def snapshot(self) -> dict[str, Any]:
        message, kind = self.error or (None, None)
        return {"at": time.time(), "topic": self.topic,
                "streams": {s: self.aggregator.sources(s) for s in self.streams},
                "caught_up": bool(self._partitions) and self._caught_up >= self._partitions,
                "malformed": self.malformed, "regressions": self.aggregator.regressions,
                "error": message, "error_kind": kind}

    async def snapshots(self) -> AsyncIterator[dict]:
        try:
            config = await self.config()
        except (AirflowNotFoundException, KafkaConfigurationError) as exc:  # every waiter fails with it at once
            self.error = (f"Kafka connection {self.kafka_config_id!r}: {exc}", "config")
            while True:
                yield self.snapshot()
                await asyncio.sleep(self.poll_interval)
        config["logger"] = log
        consumer = Consumer({**config, "group.id": f"airflow-rtml-progress-{uuid.uuid4().hex}",
                             "enable.auto.commit": False, "enable.auto.offset.store": False,
                             "auto.offset.reset": "earliest", "error_cb": self._on_error})
        admin = AdminClient(config)
        metadata: Future | None = None
        refreshed_at = float("-inf")
        try:
            while True:
                if metadata is None and (self.error or time.monotonic() - refreshed_at >= _METADATA_REFRESH_S):
                    metadata, refreshed_at = self._describe(admin), time.monotonic()
                if metadata is not None and metadata.done():
                    self._on_metadata(consumer, metadata)
                    metadata = None
                while True:
                    batch = consumer.consume(num_messages=_BATCH, timeout=0)
                    for message in batch:
                        self._on_message(message)
                    if len(batch) < _BATCH:
                        break
                    await asyncio.sleep(0)  # a long backlog: let the waiters and the triggerer run in between
                admin.poll(0)
                self._update_caught_up(consumer)
                yield self.snapshot()
                await asyncio.sleep(self.poll_interval)
        finally:
            consumer.close()  # no group membership, no commit: returns at once

    def _describe(self, admin: AdminClient) -> Future:
        return admin.describe_topics(TopicCollection([self.topic]), request_timeout=10)[self.topic]

    def _on_metadata(self, consumer: Consumer, future: Future) -> None:
        try:
            partitions = {p.id for p in future.result().partitions}
        except KafkaException as exc:
            self._on_error(exc.args[0], what=f"reading metadata of topic {self.topic!r}")
            return
        new = sorted(partitions - self._partitions)
        if new:
            consumer.incremental_assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in new])
            self._partitions.update(new)
        self.error = None

    def _on_error(self, err: KafkaError, what: str = "consuming") -> None:
        permanent = err.fatal() or err.code() in (
            KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL,
            KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        )
        hint = " (the topic does not exist yet)" if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART else ""
        self.error = (f"Kafka error {what}{hint}: {err.str()}", "config" if permanent else "unreachable")

    def _on_message(self, message: Message) -> None:
        if message.error():
            self._on_error(message.error())
            return
        partition, offset = message.partition(), message.offset()
        self._next_offset[partition] = offset + 1
        self.error = None
        try:
            signal = ProgressSignal.from_json(message.value() if message.value() is not None else b"null")
        except ProgressParseError as exc:
            self.malformed += 1
            if self.malformed % _MALFORMED_LOG_EVERY == 1:
                log.warning("Skipping malformed record %s[%s]@%s (%d malformed so far): %s",
                            self.topic, partition, offset, self.malformed, exc)
            return
        self.streams.add(signal.stream)
        self.aggregator.add(signal)

    def _update_caught_up(self, consumer: Consumer) -> None:
        """A partition is caught up once our position reaches the end the broker last reported (latched)."""
        for p in self._partitions - self._caught_up:
            tp = TopicPartition(self.topic, p)
            low, high = consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and max(consumer.position([tp])[0].offset, low, self._next_offset.get(p, 0)) >= high:
                self._caught_up.add(p)


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

    def wait_snapshot(self, raw: dict) -> dict:
        """This waiter's view of a raw snapshot, in :class:`ProgressWait`'s shape. The progress is unknown until
        the consumer caught up; ``state`` is RUNNING (stall detection on) only while the topic is readable."""
        readable = raw["caught_up"] and raw.get("error_kind") is None
        progress = stream_progress(raw["streams"].get(self.stream, {}), self.expected_sources)
        return {"at": raw["at"], "job_id": None, "state": "RUNNING" if readable else None,
                "progress_ms": progress if raw["caught_up"] else None,
                "error": raw.get("error"), "error_kind": raw.get("error_kind")}

    async def filter_shared_stream(self, shared_stream: AsyncIterator[dict]) -> AsyncIterator[TriggerEvent]:
        wait, last_error = self.new_wait(), None
        async for raw in shared_stream:
            if raw.get("error_kind") == "unreachable" and raw["error"] != last_error:
                self.log.warning("Stream %s: %s; retrying until the deadline", self.stream, raw["error"])
            last_error = raw.get("error")
            event = wait.evaluate(self.wait_snapshot(raw))
            if event is not None:
                sources = raw["streams"].get(self.stream, {})
                if event["status"] != "success":
                    event["message"] += ". " + producers_note(self.topic, sources, self.expected_sources)
                yield TriggerEvent({**event, "topic": self.topic, "sources": sources, "malformed": raw["malformed"]})
                return

