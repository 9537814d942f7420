"""Publish a stream's progress to a Kafka progress topic: from a Flink job (:func:`relay`) or from any producer
(:func:`publish`).

The relay polls a Flink job's event-time progress with the poll loop of the watermark trigger
(:class:`~airflow_rtml.triggers.watermark.FlinkProgressPoller`: the sink vertices' input watermark, minimum over
subtasks) and publishes a :class:`~airflow_rtml.progress.ProgressSignal` (key = stream) whenever the progress
advanced, and the last one again every ``heartbeat`` seconds so the topic always holds a recent signal of this
producer despite retention. Waiters read the topic with :class:`~airflow_rtml.triggers.kafka.KafkaWatermarkTrigger`.

Guarantees: at-least-once — a signal counts as published only once the broker acknowledged it, and a failed
one is sent again at the next round (signals are idempotent, duplicates are harmless). Monotone: a lower
progress (the job restarted from a checkpoint) is never published. ``final`` is published only when a run of
the job FINISHED with its input ended (progress END_OF_STREAM: a bounded input, or a stop with ``drain``), or
for any FINISHED run with ``final_on_finish=True``: a stop-with-savepoint without drain (an upgrade) is *not*
the end of the stream, and a final signal cannot be taken back. Blocking: yes, :func:`relay` runs until the
stream ends (or for one poll with ``once=True``); it is meant for a CLI or sidecar process, not a triggerer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import aclosing
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook, Connection
from confluent_kafka import Producer

from airflow_rtml.exceptions import (
    FlinkApiError,
    FlinkConfigurationError,
    FlinkConnectionError,
    FlinkJobNotFound,
    KafkaConfigurationError,
    KafkaPublishError,
)
from airflow_rtml.hooks.flink import FlinkRestHook
from airflow_rtml.progress import END_OF_STREAM, MonotoneProgress, ProgressSignal
from airflow_rtml.triggers.kafka import kafka_client_config
from airflow_rtml.triggers.watermark import INPUT_WATERMARK, FlinkProgressPoller

log = logging.getLogger(__name__)

_ERRORS = {"not_found": FlinkJobNotFound, "api": FlinkApiError, "config": FlinkConfigurationError,
           "unreachable": FlinkConnectionError}


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
    :param final_on_finish: treat any FINISHED run as the end of the stream (bounded jobs; never for jobs that
        are upgraded with a stop-with-savepoint).
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
    ProgressSignal(stream, 0, source, 0)  # validates the names before anything is opened
    hook = UrlFlinkRestHook(base_url) if base_url is not None else FlinkRestHook(flink_conn_id)
    hook.base_url  # noqa: B018 - resolve (and validate) the connection before the event loop starts
    producer = make_producer(kafka_config(kafka_config_id=kafka_config_id, bootstrap_servers=bootstrap_servers))
    poller = FlinkProgressPoller(flink_conn_id=hook.conn_id, job_name=job_name, job_id=None, vertex=vertex,
                                 metric=INPUT_WATERMARK, commit_aware=False, poll_interval=interval)
    poller.hook = hook
    return asyncio.run(_relay(poller, producer, topic, stream, source, heartbeat, once, final_on_finish, on_publish))


async def _relay(poller: FlinkProgressPoller, producer: Producer, topic: str, stream: str, source: str,
                 heartbeat: float, once: bool, final_on_finish: bool,
                 on_publish: Callable[[ProgressSignal], None] | None) -> list[ProgressSignal]:
    published: list[ProgressSignal] = []
    progress, sent = MonotoneProgress(), MonotoneProgress()
    last_sent_at, state = float("-inf"), None
    async with aclosing(poller.snapshots()) as snapshots:
        async for snap in snapshots:
            kind = snap["error_kind"]
            if kind in ("not_found", "api", "config") or (kind and once):
                raise _ERRORS[kind](snap["error"])
            if kind:
                log.warning("Flink not reachable, retrying: %s", snap["error"])
                continue
            if snap["state"] != state:
                state = snap["state"]
                log.info("Flink job %s (%s) is %s", poller.job_name, snap["job_id"], state)
            progress.observe(snap["progress_ms"])
            final = state == "FINISHED" and (final_on_finish or progress.value == END_OF_STREAM)
            due = final or progress.value is not None and (
                once or sent.value is None or progress.value > sent.value
                or time.monotonic() - last_sent_at >= heartbeat)
            if due:
                watermark = END_OF_STREAM if progress.value is None else progress.value  # None: only when final
                signal = ProgressSignal(stream, watermark, source, int(time.time() * 1000), final)
                try:
                    await asyncio.to_thread(publish, producer, topic, signal)
                except KafkaPublishError as exc:
                    if once:
                        raise
                    log.warning("%s Retrying at the next poll.", exc)
                    continue
                sent.observe(signal.watermark_ms)
                last_sent_at = time.monotonic()
                published.append(signal)
                if on_publish:
                    on_publish(signal)
                if final:
                    return published
            if once:
                return published
    return published  # pragma: no cover - the poll loop never ends by itself
