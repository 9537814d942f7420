"""Reading stream progress from a Kafka progress topic: one shared consumer per topic, one snapshot per round.

Producers outside Flink (a batch job, :mod:`airflow_rtml.progress_relay` for a Flink job) publish
:class:`~airflow_rtml.progress.ProgressSignal` records on a *progress topic* (JSON value, key = stream name); see
:mod:`airflow_rtml.progress.signals` for how a stream's progress follows from them (runs, ``final`` per run,
duplicated sources).

:class:`KafkaProgressConsumer` reads the whole topic from the beginning with a random group id, assigns
partitions itself and commits nothing; each round it yields a :class:`TopicSnapshot` of every stream on the
topic. Each waiter turns it into its own :class:`~airflow_rtml.progress.Observation` (:func:`observe_stream`).

**Never early.** A stream's progress is unknown until the consumer has read every partition up to the end it saw
at start (``caught_up``): a signal still unread cannot let the minimum run ahead. At start the topic's settings
are checked: a *compacted* topic (``cleanup.policy=compact``; key = stream keeps one producer's latest signal
only) or a retention shorter than :data:`MIN_RETENTION_MS` (a producer's latest signal can vanish, and a re-read
takes the minimum over a subset) fails every wait on the topic with
:class:`~airflow_rtml.exceptions.KafkaProgressTopicError` saying how to fix it. Longer finite retention is
accepted; ``expected_sources`` is the guard against a producer whose last signal expired.

**Isolation.** A record that cannot be read — not JSON, nested too deeply, a mistyped field, a value outside a
Java long — is counted, logged (every 100th) and kept in a bounded dead-letter list with its partition and
offset; it never reaches the other records or the waiters. No call blocks the event loop: the consumer is
polled with ``timeout=0`` and metadata and configs are requested through the admin client's futures.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from confluent_kafka import (
    OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicCollection, TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from airflow_rtml.exceptions import TRANSIENT, FailureReason, KafkaConfigurationError
from airflow_rtml.progress import Observation, ProgressParseError, ProgressSignal, SignalAggregator, combine, describe

__all__ = ["KAFKA_ALLOWED_EXTRAS", "KafkaProgressConsumer", "TopicSnapshot", "kafka_client_config",
           "observe_stream", "producers_note", "stream_progress"]

log = logging.getLogger(__name__)

KAFKA_ALLOWED_EXTRAS = (
    "bootstrap.servers", "client.id", "security.protocol", "sasl.mechanism", "sasl.mechanisms",
    "sasl.username", "sasl.password", "ssl.ca.location", "ssl.certificate.location", "ssl.key.location",
    "ssl.key.password", "ssl.endpoint.identification.algorithm",
)
"""librdkafka settings read from a ``kafka`` connection's extra; any other key is rejected."""

KAFKA_IGNORED_EXTRAS = ("group.id", "enable.auto.commit", "auto.offset.reset")
"""Consumer-group settings common on ``kafka_default``; the progress consumer sets its own, so they are ignored."""

#: The shortest retention a progress topic may have (a day): producers republish their latest signal every
#: ``heartbeat`` seconds (30 s for the relay), so a day keeps every live producer's latest signal many times over.
MIN_RETENTION_MS = 24 * 3600 * 1000
DEAD_LETTERS_KEPT = 20
_METADATA_REFRESH_S = 30.0  # new partitions of the topic are picked up this often
_MALFORMED_LOG_EVERY = 100  # log the 1st, 101st, ... malformed record
_BATCH = 500


def kafka_client_config(conn: Any) -> dict[str, str]:
    """librdkafka settings from a ``kafka`` connection's extra: the allow-listed keys only, each a string,
    number or boolean.

    Raises :class:`~airflow_rtml.exceptions.KafkaConfigurationError` for an unknown key (nothing is passed on
    silently), a value of another type (naming the key), or a missing ``bootstrap.servers``;
    :data:`KAFKA_IGNORED_EXTRAS` are dropped.
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
    out = {}
    for key in KAFKA_ALLOWED_EXTRAS:
        if key not in extra:
            continue
        value = extra[key]
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, (str, int, float)) or str(value).strip() == "":
            raise KafkaConfigurationError(
                f"Connection {conn.conn_id!r}: extra {key!r} must be a non-empty string, number or boolean, got "
                f"{type(value).__name__}. To fix this, correct {key!r} in the connection's extra field."
            )
        out[key] = str(value)
    return out


def stream_progress(sources: Mapping[str, int], expected_sources: Iterable[str] | None = None) -> int | None:
    """A stream's progress from its per-producer progress, as :meth:`SignalAggregator.progress` defines it.

    The minimum over every producer that reported (an unlisted producer counts too); None when none has, or
    when one of ``expected_sources`` has not.
    """
    return combine([*(sources.get(s) for s in expected_sources or ()), *sources.values()])


def producers_note(topic: str, sources: Mapping[str, int], expected_sources: Iterable[str] | None,
                   duplicates: Iterable[str] = ()) -> str:
    """Who holds a stream back: ``"Producers on topic t: a at <time>, b ended; not reported yet: c."``"""
    seen = ", ".join(f"{s} at {describe(w)}" for s, w in sorted(sources.items(), key=lambda kv: kv[1])) or "none"
    missing = sorted(set(expected_sources or ()) - set(sources))
    note = f"Producers on topic {topic}: {seen}" + (f"; not reported yet: {', '.join(missing)}" if missing else "")
    dups = sorted(duplicates)
    if dups:
        note += (f"; source name(s) {', '.join(dups)} used by more than one live producer (their minimum counts; "
                 "give each producer its own source)")
    return note + "."


@dataclass(frozen=True)
class TopicSnapshot:
    """One read round of a progress topic: every stream's producers, and what went wrong (shared, read-only)."""

    at: float
    topic: str
    streams: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    duplicates: Mapping[str, list[str]] = field(default_factory=dict)
    caught_up: bool = False
    malformed: int = 0
    regressions: int = 0
    dead_letters: tuple[dict, ...] = ()
    error: str | None = None
    error_kind: FailureReason | str | None = None


def observe_stream(snap: TopicSnapshot, stream: str, expected_sources: Iterable[str] | None) -> Observation:
    """One waiter's observation of ``stream`` in a topic snapshot. The progress is unknown until the consumer
    caught up; ``state`` is RUNNING (stall detection on) only while the topic is readable."""
    readable = snap.caught_up and snap.error_kind is None
    sources = dict(snap.streams.get(stream, {}))
    duplicates = list(snap.duplicates.get(stream, []))
    progress = stream_progress(sources, expected_sources) if snap.caught_up and snap.error_kind is None else None
    return Observation(at=snap.at, job_id=None, state="RUNNING" if readable else None, progress_ms=progress,
                       error=snap.error, error_kind=snap.error_kind,
                       detail={"topic": snap.topic, "sources": sources, "duplicate_sources": duplicates,
                               "malformed": snap.malformed})


class KafkaProgressConsumer:
    """The shared read loop of one progress topic: yields a :class:`TopicSnapshot` every ``poll_interval``.

    Reads the topic from the beginning with a random group id and ``enable.auto.commit=False``: it commits
    nothing, so it never moves anyone's offsets and a restart simply reads the topic again (signals are
    idempotent). Never blocks (see the module docstring).
    """

    def __init__(self, *, topic: str, kafka_config_id: str, poll_interval: float):
        self.topic, self.kafka_config_id, self.poll_interval = topic, kafka_config_id, poll_interval
        self.aggregator = SignalAggregator()
        self.streams: set[str] = set()
        self.malformed = 0
        self.dead_letters: deque[dict] = deque(maxlen=DEAD_LETTERS_KEPT)
        self.error: tuple[str, FailureReason | str] | None = None  # until the broker answers again
        self.topic_error: str | None = None  # the topic's settings cannot work: permanent
        self._settings_checked = False
        self._partitions: set[int] = set()
        self._caught_up: set[int] = set()
        self._next_offset: dict[int, int] = {}

    async def config(self) -> dict[str, Any]:
        """The client settings of the connection (allow-listed)."""
        return kafka_client_config(await BaseHook.aget_connection(self.kafka_config_id))

    def snapshot(self) -> TopicSnapshot:
        if self.topic_error:
            message, kind = self.topic_error, FailureReason.CONFIGURATION
        else:
            message, kind = self.error or (None, None)
        return TopicSnapshot(
            at=time.time(), topic=self.topic,
            streams={s: self.aggregator.sources(s) for s in self.streams},
            duplicates={s: d for s in self.streams if (d := self.aggregator.duplicates(s))},
            # Nothing counts before the topic's settings were checked (a compacted topic must not fire a wait).
            caught_up=bool(self._partitions) and self._caught_up >= self._partitions and self._settings_checked,
            malformed=self.malformed, regressions=self.aggregator.regressions,
            dead_letters=tuple(self.dead_letters), error=message, error_kind=kind,
        )

    def _config_failure(self, message: str) -> None:
        self.error = (message, FailureReason.CONFIGURATION)

    async def snapshots(self) -> AsyncIterator[TopicSnapshot]:
        try:
            config = await self.config()
            config["logger"] = log
            consumer = Consumer({**config, "group.id": f"airflow-rtml-progress-{uuid.uuid4().hex}",
                                 "enable.auto.commit": False, "enable.auto.offset.store": False,
                                 "auto.offset.reset": "earliest", "error_cb": self._on_error})
            admin = AdminClient(config)
        except (AirflowNotFoundException, KafkaConfigurationError, KafkaException, ValueError, TypeError) as exc:
            # Every waiter on the topic fails with it at once; the loop itself stays up (and cheap).
            self._config_failure(f"Kafka connection {self.kafka_config_id!r} cannot be used: {exc}. To fix this, "
                                 "correct the connection's extra field (librdkafka settings).")
            while True:
                yield self.snapshot()
                await asyncio.sleep(self.poll_interval)
        metadata: Future | None = None
        settings: Future | None = None
        refreshed_at = settings_at = float("-inf")
        try:
            while True:
                if metadata is None and (self.error or time.monotonic() - refreshed_at >= _METADATA_REFRESH_S):
                    metadata, refreshed_at = self._describe(admin), time.monotonic()
                if metadata is not None and metadata.done():
                    self._on_metadata(consumer, metadata)
                    metadata = None
                if settings is None and not self._settings_checked and time.monotonic() - settings_at >= 10:
                    settings, settings_at = self._describe_configs(admin), time.monotonic()
                if settings is not None and settings.done():
                    self._on_configs(settings)
                    settings = None
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

    def _describe_configs(self, admin: AdminClient) -> Future:
        resource = ConfigResource(ResourceType.TOPIC, self.topic)
        return admin.describe_configs([resource], request_timeout=10)[resource]

    def _on_configs(self, future: Future) -> None:
        """Check the topic's cleanup policy and retention once; a topic that does not exist yet is asked again
        (every 10 s) — its progress stays unknown meanwhile, since nothing was read from it."""
        try:
            configs = {k: v.value for k, v in future.result().items()}
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if err is not None and err.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                                  KafkaError.CLUSTER_AUTHORIZATION_FAILED):
                log.warning("The settings of progress topic %r cannot be read (%s): its retention and cleanup "
                            "policy are not checked. Grant DescribeConfigs on it to have them checked.",
                            self.topic, err.str())
                self._settings_checked = True
            return
        self._settings_checked = True
        self.topic_error = check_topic_settings(self.topic, configs)
        if self.topic_error:
            log.error("%s", self.topic_error)

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
        self.error = (f"Kafka error {what}{hint}: {err.str()}", FailureReason.CONFIGURATION if permanent else TRANSIENT)

    def _on_message(self, message: Message) -> None:
        if message.error():
            self._on_error(message.error())
            return
        partition, offset = message.partition(), message.offset()
        self._next_offset[partition] = offset + 1
        self.error = None
        raw = message.value()
        try:
            signal = ProgressSignal.from_json(raw if raw is not None else b"null")
        except Exception as exc:  # noqa: BLE001 - any record that cannot be read is that record's problem only
            self.malformed += 1
            reason = exc if isinstance(exc, ProgressParseError) else f"{type(exc).__name__}: {exc}"
            self.dead_letters.append({"partition": partition, "offset": offset, "error": str(reason)[:300]})
            if self.malformed % _MALFORMED_LOG_EVERY == 1:
                log.warning("Skipping malformed record %s[%s]@%s (%d malformed so far): %s",
                            self.topic, partition, offset, self.malformed, str(reason)[:300])
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


def check_topic_settings(topic: str, configs: Mapping[str, str | None]) -> str | None:
    """Why a progress topic with these settings cannot be trusted, or None when it can (see the module docstring)."""
    policy = (configs.get("cleanup.policy") or "delete").lower()
    if "compact" in policy:
        return (f"Progress topic {topic!r} is compacted (cleanup.policy={policy}): with key = stream, compaction "
                "keeps only the latest signal of one producer per stream, so the minimum over producers would be "
                "taken over a subset. To fix this, set cleanup.policy=delete on the topic (kafka-configs "
                f"--alter --entity-type topics --entity-name {topic} --add-config cleanup.policy=delete).")
    retention = configs.get("retention.ms")
    try:
        retention_ms = int(retention) if retention not in (None, "") else -1
    except ValueError:
        retention_ms = -1
    if 0 <= retention_ms < MIN_RETENTION_MS:
        return (f"Progress topic {topic!r} keeps records for only {retention_ms} ms (retention.ms): a producer's "
                "latest signal can vanish, and a re-read would take the minimum over the producers left. To fix "
                f"this, set retention.ms to at least {MIN_RETENTION_MS} (a day) or -1 on the topic.")
    return None
