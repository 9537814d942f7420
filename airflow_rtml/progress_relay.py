"""Publish a stream's progress to a Kafka progress topic: from a Flink job (:func:`relay`) or from any producer
(:func:`publish`).

The relay polls a Flink job's event-time progress with the poll loop of the watermark trigger
(:class:`~airflow_rtml.triggers.watermark.FlinkProgressPoller`: the sink vertices' input watermark, minimum over
subtasks) and publishes a :class:`~airflow_rtml.progress.ProgressSignal` (key = stream) whenever the progress
advanced, and the last one again every ``heartbeat`` seconds so the topic always holds a recent signal of this
producer despite retention. Waiters read the topic with :class:`~airflow_rtml.triggers.kafka.KafkaWatermarkTrigger`.

Every signal of one relay process carries the same ``run`` (a fresh id per process), so waiters tell a restarted
relay from a second relay that uses the same source name (see :mod:`airflow_rtml.progress.signals`).

Guarantees: at-least-once — a signal counts as published only once the broker acknowledged it, and a failed
one is sent again at the next round (signals are idempotent, duplicates are harmless). Monotone: a lower
progress (the job restarted from a checkpoint) is never published. With ``commit_aware=True`` only progress
that a completed checkpoint has committed is published (the rule of a commit-aware wait,
:class:`~airflow_rtml.progress.CommittedProgress`): what the signal says is readable in an exactly-once sink.
``final`` is published when a run of the job FINISHED with its input ended: progress END_OF_STREAM was seen,
or the job finished without a stop-with-savepoint (a bounded input that ended, also between two polls); or for
any FINISHED run with ``final_on_finish=True``. A stop-with-savepoint is *not* taken as the end: Flink reports
the same savepoint type with and without ``drain``, and an upgrade (no drain) must not end the stream — a
final signal makes every wait fire and cannot be taken back; pass ``final_on_finish`` for drained stops.
Transient trouble (JobManager unreachable, 5xx, 429, a proxy's HTML page) is retried with a growing pause (up
to 30 s), never the end of the relay. Blocking: yes, :func:`relay` runs until the stream ends (or for one poll
with ``once=True``); it is meant for a CLI or sidecar process, not a triggerer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import aclosing
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook, Connection
from confluent_kafka import Producer

from airflow_rtml.exceptions import (
    FlinkConfigurationError,
    FlinkConnectionError,
    FlinkError,
    KafkaConfigurationError,
    KafkaPublishError,
    exception_for,
)
from airflow_rtml.hooks.flink import FlinkRestHook
from airflow_rtml.progress import END_OF_STREAM, CommittedProgress, MonotoneProgress, Observation, ProgressSignal
from airflow_rtml.streams.flink import INPUT_WATERMARK, FlinkStreamReader
from airflow_rtml.streams.kafka import kafka_client_config

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 30.0


class UrlFlinkRestHook(FlinkRestHook):
    """A :class:`FlinkRestHook` for a bare JobManager URL, for processes outside Airflow (no connection lookup)."""

    def __init__(self, base_url: str):
        super().__init__("rtml_flink_url")
        url = urlsplit(base_url.strip())
        if url.scheme not in ("http", "https") or not url.hostname:
            raise FlinkConfigurationError(
                f"{base_url!r} is not a Flink REST URL. To fix this, pass e.g. http://127.0.0.1:8081."
            )
        self._conn = Connection(conn_id=self.conn_id, conn_type="flink_rest", host=url.hostname, port=url.port,
                                schema=url.scheme)

    def get_connection(self, conn_id: str) -> Connection:
        return self._conn

    async def aget_connection(self, conn_id: str) -> Connection:
        return self._conn


def kafka_config(*, kafka_config_id: str | None = None, bootstrap_servers: str | None = None) -> dict[str, str]:
    """librdkafka settings from exactly one of a ``kafka`` connection (allow-listed extras) or a bootstrap list."""
    if (kafka_config_id is None) == (bootstrap_servers is None):
        raise KafkaConfigurationError("Give exactly one of kafka_config_id= or bootstrap_servers=.")
    if bootstrap_servers is not None:
        if not bootstrap_servers.strip():
            raise KafkaConfigurationError("bootstrap_servers is empty. To fix this, pass e.g. 127.0.0.1:9092.")
        return {"bootstrap.servers": bootstrap_servers.strip()}
    return kafka_client_config(BaseHook.get_connection(kafka_config_id))


def make_producer(config: dict[str, str]) -> Producer:
    """A Kafka producer for progress signals (acks from all in-sync replicas)."""
    return Producer({**config, "acks": "all", "linger.ms": 0, "logger": log})


def publish(producer: Producer, topic: str, signal: ProgressSignal, timeout: float = 10.0) -> None:
    """Write ``signal`` to ``topic`` (key = stream) and wait for the broker's acknowledgement (blocking).

    Raises :class:`~airflow_rtml.exceptions.KafkaPublishError` when it is not acknowledged within ``timeout``
    seconds; the signal may still have been written (publishing again is harmless).
    """
    errors: list[Any] = []
    producer.produce(topic, key=signal.stream.encode(), value=signal.to_json(),
                     on_delivery=lambda err, _msg: errors.append(err) if err else None)
    if producer.flush(timeout) or errors:
        raise KafkaPublishError(
            f"Progress signal of stream {signal.stream!r} (source {signal.source!r}) was not acknowledged on topic "
            f"{topic!r}: {errors[0] if errors else f'no answer within {timeout}s'}. To fix this, check that the "
            "broker is reachable and the topic exists (or auto-creation is on)."
        )


def relay(
    *,
    job_name: str,
    stream: str,
    topic: str,
    source: str,
    flink_conn_id: str | None = None,
    base_url: str | None = None,
    kafka_config_id: str | None = None,
    bootstrap_servers: str | None = None,
    vertex: str | None = None,
    interval: float = 1.0,
    heartbeat: float = 30.0,
    once: bool = False,
    final_on_finish: bool = False,
    commit_aware: bool = False,
    run: str | None = None,
    on_publish: Callable[[ProgressSignal], None] | None = None,
) -> list[ProgressSignal]:
    """Relay a Flink job's progress to ``topic`` as ``source`` of ``stream`` (see the module docstring).

    :param job_name: the job's name (``pipeline.name``); followed across upgrades.
    :param stream: the stream name the signals carry.
    :param topic: the progress topic.
    :param source: this producer's name (stable across restarts of the relay).
    :param flink_conn_id: a ``flink_rest`` connection; or
    :param base_url: the JobManager's REST URL (no Airflow connection needed).
    :param kafka_config_id: a ``kafka`` connection; or
    :param bootstrap_servers: the broker list.
    :param vertex: vertex id or part of a vertex name whose input watermark is the progress (default: sinks).
    :param interval: seconds between polls of the job.
    :param heartbeat: seconds after which the last signal is published again although nothing moved.
    :param once: poll once, publish the current progress (if known) and return.
    :param final_on_finish: treat any FINISHED run as the end of the stream (bounded jobs, drained stops; never
        for jobs that are upgraded with a stop-with-savepoint).
    :param commit_aware: publish only progress a completed checkpoint committed (exactly-once sinks).
    :param run: this process's run id (default: a fresh random one; with ``once=True`` the stable ``once-<source>``,
        so that one-shot relays started one after another — from cron or a task — are one run whose latest signal
        counts, not a new run each time that the aggregator would hold back behind the previous ones).
    :param on_publish: called with each acknowledged signal.
    :return: the signals published. Raises :class:`~airflow_rtml.exceptions.FlinkJobNotFound`,
        :class:`~airflow_rtml.exceptions.FlinkApiError`, :class:`~airflow_rtml.exceptions.FlinkConfigurationError`
        at once; with ``once=True`` also :class:`~airflow_rtml.exceptions.FlinkConnectionError` and
        :class:`~airflow_rtml.exceptions.KafkaPublishError` (otherwise logged and retried).
    """
    if (flink_conn_id is None) == (base_url is None):
        raise FlinkConfigurationError("Give exactly one of flink_conn_id= or base_url=.")
    if interval <= 0 or heartbeat <= 0:
        raise FlinkConfigurationError(f"interval and heartbeat must be > 0, got {interval} and {heartbeat}.")
    run = run or (f"once-{source}" if once else uuid.uuid4().hex)
    ProgressSignal(stream, 0, source, 0, run=run)  # validates the names before anything is opened
    hook = UrlFlinkRestHook(base_url) if base_url is not None else FlinkRestHook(flink_conn_id)
    hook.base_url  # noqa: B018 - resolve (and validate) the connection before the event loop starts
    producer = make_producer(kafka_config(kafka_config_id=kafka_config_id, bootstrap_servers=bootstrap_servers))
    reader = FlinkStreamReader(flink_conn_id=hook.conn_id, job_name=job_name, job_id=None, vertex=vertex,
                               metric=INPUT_WATERMARK, commit_aware=commit_aware, poll_interval=interval, hook=hook)
    return asyncio.run(_Relay(reader, producer, topic, stream, source, run, heartbeat, once, final_on_finish,
                              commit_aware, on_publish).run())


class _Relay:
    """The relay loop (see :func:`relay`)."""

    def __init__(self, reader: FlinkStreamReader, producer: Producer, topic: str, stream: str, source: str,
                 run: str, heartbeat: float, once: bool, final_on_finish: bool, commit_aware: bool,
                 on_publish: Callable[[ProgressSignal], None] | None):
        self.reader, self.producer, self.topic, self.stream, self.source = reader, producer, topic, stream, source
        self.run_id, self.heartbeat, self.once, self.final_on_finish = run, heartbeat, once, final_on_finish
        self.committed = CommittedProgress(stream) if commit_aware else None
        self.on_publish = on_publish
        self.published: list[ProgressSignal] = []
        self.progress, self.sent = MonotoneProgress(), MonotoneProgress()
        self.last_sent_at, self.state, self.backoff = float("-inf"), None, 0.0

    async def run(self) -> list[ProgressSignal]:
        async with aclosing(self.reader.observations()) as observations:
            async for obs in observations:
                if obs.error_kind is not None and not obs.transient:
                    raise exception_for(obs.error_kind, obs.error or "", job_id=obs.job_id or "")
                if obs.transient:
                    if self.once:
                        raise FlinkConnectionError(obs.error or "Flink could not be read")
                    self.backoff = min(MAX_BACKOFF_S, max(self.reader.poll_interval, self.backoff * 2))
                    log.warning("Flink not readable, retrying in %.0fs: %s", self.backoff, obs.error)
                    await asyncio.sleep(self.backoff)
                    continue
                self.backoff = 0.0
                if await self.step(obs) or self.once:
                    return self.published
        return self.published  # pragma: no cover - the poll loop never ends by itself

    async def step(self, obs: Observation) -> bool:
        """Publish what ``obs`` calls for; True when the stream ended (a final signal was published)."""
        if obs.state != self.state:
            self.state = obs.state
            log.info("Flink job %s (%s) is %s", self.reader.job_name, obs.job_id, obs.state)
        value = self.committed.observe(obs) if self.committed else obs.progress_ms
        self.progress.observe(value)
        final = obs.state == "FINISHED" and await self._ended(obs)
        due = final or self.progress.value is not None and (
            self.once or self.sent.value is None or self.progress.value > self.sent.value
            or time.monotonic() - self.last_sent_at >= self.heartbeat)
        if not due:
            return False
        watermark = END_OF_STREAM if self.progress.value is None else self.progress.value  # None: only when final
        signal = ProgressSignal(self.stream, watermark, self.source, int(time.time() * 1000), final, self.run_id)
        try:
            await asyncio.to_thread(publish, self.producer, self.topic, signal)
        except KafkaPublishError as exc:
            if self.once:
                raise
            log.warning("%s Retrying at the next poll.", exc)
            return False
        self.sent.observe(signal.watermark_ms)
        self.last_sent_at = time.monotonic()
        self.published.append(signal)
        if self.on_publish:
            self.on_publish(signal)
        return final

    async def _ended(self, obs: Observation) -> bool:
        """Whether a FINISHED run ended the stream: its input ended (END_OF_STREAM seen, or no stop-with-savepoint
        finished it: a bounded input), or ``final_on_finish``."""
        if self.final_on_finish or self.progress.value == END_OF_STREAM:
            return True
        try:
            checkpoints = await self.reader.hook.a_get_checkpoints(obs.job_id)
        except FlinkError as exc:
            log.warning("Job %s FINISHED; whether a stop-with-savepoint ended it is unknown (%s): no final signal. "
                        "Pass final_on_finish if its input ended.", obs.job_id, exc)
            return False
        if checkpoints.latest_savepoint_type == "SYNC_SAVEPOINT":
            log.info("Job %s FINISHED through a stop-with-savepoint: not the end of the stream (an upgrade?), no "
                     "final signal. Pass final_on_finish for drained stops.", obs.job_id)
            return False
        return True
