"""The Streams view's FastAPI app, mounted by Airflow's API server under ``/rtml`` (see :mod:`airflow_rtml.plugins`).

Read-only: ``GET /api/streams`` (JSON) and ``GET /`` (the page, which polls the JSON). Both require a logged-in
Airflow user (Airflow's own ``get_user`` dependency: a bearer token or the UI's session cookie), and the waits,
windows and runs listed are only those of DAGs the auth manager lets that user read. Open waits come from
Airflow's metadata DB (deferred task instances and their triggers' kwargs), the windows from the asset events
the window sensors emitted (and the runs each created), progress from
:class:`~airflow_rtml.plugins.board.ProgressCache` over :class:`StreamReaders`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from contextlib import aclosing, asynccontextmanager

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from airflow_rtml.exceptions import RtmlError
from airflow_rtml.hooks.flink import FlinkRestHook
from airflow_rtml.plugins.board import (
    FLINK_WATERMARK_TRIGGER,
    KAFKA_WATERMARK_TRIGGER,
    OpenWait,
    ProgressCache,
    StreamKey,
    board,
    stream_label,
)
from airflow_rtml.plugins.page import PAGE
from airflow_rtml.progress import Observation
from airflow_rtml.streams.flink import INPUT_WATERMARK, FlinkStreamReader

__all__ = ["FlinkReaders", "KafkaTopics", "StreamReaders", "create_app", "emitted_windows", "open_waits"]

#: How many recent asset events the page looks through for emitted windows, and how many it shows per stream.
WINDOW_EVENTS_SCANNED, WINDOWS_SHOWN = 500, 12


def open_waits(session: Session, dag_ids: set[str] | None = None) -> list[OpenWait]:
    """Every deferred task instance whose trigger waits on a stream's progress — a Flink job's watermark or a
    stream on a Kafka progress topic (of ``dag_ids`` only, when given)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.state import TaskInstanceState

    query = (select(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id, TaskInstance.map_index, Trigger)
             .join(Trigger, TaskInstance.trigger_id == Trigger.id)
             .where(TaskInstance.state == TaskInstanceState.DEFERRED,
                    Trigger.classpath.in_((FLINK_WATERMARK_TRIGGER, KAFKA_WATERMARK_TRIGGER))))
    if dag_ids is not None:
        query = query.where(TaskInstance.dag_id.in_(dag_ids))
    return [OpenWait.from_trigger(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index,
                                  waiting_since=trigger.created_date.timestamp() if trigger.created_date else None,
                                  kwargs=trigger.kwargs, classpath=trigger.classpath)
            for dag_id, run_id, task_id, map_index, trigger in session.execute(query)]


def emitted_windows(session: Session, streams: set[str], dag_ids: set[str] | None = None) -> dict[str, list[dict]]:
    """The windows emitted for each of ``streams`` (newest first, at most :data:`WINDOWS_SHOWN`), from the latest
    :data:`WINDOW_EVENTS_SCANNED` asset events that carry a window (``StreamWindowSensor``'s), each with the DAG
    runs it created. Only events of DAGs in ``dag_ids`` (when given), and only runs of those DAGs."""
    from airflow.models.asset import AssetEvent
    from sqlalchemy.orm import selectinload

    if not streams:
        return {}
    query = (select(AssetEvent).options(selectinload(AssetEvent.created_dagruns), selectinload(AssetEvent.asset))
             .order_by(AssetEvent.timestamp.desc()).limit(WINDOW_EVENTS_SCANNED))
    out: dict[str, list[dict]] = {}
    for event in session.scalars(query):
        extra = event.extra or {}
        stream = extra.get("stream")
        if stream not in streams or "window_end_ms" not in extra or len(out.get(stream, ())) >= WINDOWS_SHOWN:
            continue
        if dag_ids is not None and event.source_dag_id not in dag_ids:
            continue
        out.setdefault(stream, []).append({
            "window_start_ms": extra.get("window_start_ms"), "window_end_ms": extra.get("window_end_ms"),
            "asset": event.asset.name if event.asset else None, "partition_key": event.partition_key,
            "emitted_at": event.timestamp.timestamp(),
            "by": {"dag_id": event.source_dag_id, "run_id": event.source_run_id, "task_id": event.source_task_id},
            "runs": [{"dag_id": r.dag_id, "run_id": r.run_id, "state": str(r.state)}
                     for r in sorted(event.created_dagruns, key=lambda r: (r.dag_id, r.run_id))
                     if dag_ids is None or r.dag_id in dag_ids],
        })
    return out


class FlinkReaders:
    """One :class:`~airflow_rtml.streams.flink.FlinkStreamReader` per stream, kept (it remembers the job's id
    and vertices between reads, as in the triggerer). An error text is scrubbed of the connection's secrets (a
    cluster or proxy may echo them) before it can reach a browser."""

    def __init__(self, poll_interval: float):
        self.poll_interval = poll_interval
        self._readers: dict[StreamKey, FlinkStreamReader] = {}

    async def read(self, key: StreamKey) -> Observation:
        reader = self._readers.get(key)
        if reader is None:
            _, conn_id, job_name, job_id, vertex = key
            reader = self._readers[key] = FlinkStreamReader(
                flink_conn_id=conn_id, job_name=job_name, job_id=job_id, vertex=vertex, metric=INPUT_WATERMARK,
                commit_aware=False, poll_interval=self.poll_interval,
                hook=FlinkRestHook(conn_id, retry_limit=1))
        obs = await reader.poll_once()
        if obs.error:
            obs = dataclasses.replace(obs, error=reader.hook.scrub(obs.error))
        return obs

    def web_ui_url(self, key: StreamKey) -> str | None:
        """The Flink web UI of the stream's cluster (the connection's ``web_ui_url``, else its REST address)."""
        reader = self._readers.get(key)
        try:
            return reader.hook._get_settings()["web_ui_url"] if reader else None
        except RtmlError:
            return None


_SECRET_KEY = re.compile(r"password|secret|token|sasl\.oauthbearer\.config|ssl\.key", re.I)


class KafkaTopics:
    """One background :class:`~airflow_rtml.streams.kafka.KafkaProgressConsumer` per progress topic and
    connection (the triggers' reader), started by the first read of a stream on it and stopped after
    ``idle_s`` without one. A read returns the stream's observation in the consumer's latest snapshot: however
    many tabs ask, the broker sees one consumer per topic. Errors are scrubbed of the connection's secrets."""

    def __init__(self, poll_interval: float, idle_s: float = 600.0, first_read_s: float = 5.0):
        self.poll_interval, self.idle_s, self.first_read_s = poll_interval, idle_s, first_read_s
        self._topics: dict[tuple[str, str], dict] = {}

    async def read(self, key: StreamKey) -> Observation:
        from airflow_rtml.streams.kafka import KafkaProgressConsumer, observe_stream

        _, conn_id, topic, stream, expected = key
        entry = self._topics.get((conn_id, topic))
        if entry is None or entry["task"].done():
            consumer = KafkaProgressConsumer(topic=topic, kafka_config_id=conn_id, poll_interval=self.poll_interval)
            entry = {"consumer": consumer, "snap": None, "seen": asyncio.Event(), "read_at": time.monotonic()}
            entry["task"] = asyncio.get_running_loop().create_task(self._follow(entry), name=f"rtml-view-{topic}")
            self._topics[(conn_id, topic)] = entry
        entry["read_at"] = time.monotonic()
        if entry["snap"] is None:
            try:
                await asyncio.wait_for(asyncio.shield(entry["seen"].wait()), self.first_read_s)
            except asyncio.TimeoutError:
                return Observation(at=time.time(), state=None, progress_ms=None,
                                   error=f"progress topic {topic!r} not read yet", error_kind="transient")
        obs = observe_stream(entry["snap"], stream, expected)
        if obs.error:
            obs = dataclasses.replace(obs, error=await self._scrub(conn_id, obs.error))
        return obs

    async def _follow(self, entry: dict) -> None:
        async with aclosing(entry["consumer"].snapshots()) as snapshots:
            async for snap in snapshots:
                entry["snap"] = snap
                entry["seen"].set()
                if time.monotonic() - entry["read_at"] > self.idle_s:
                    return  # nobody looked for a while: stop consuming (the next read starts again)

    async def _scrub(self, conn_id: str, text: str) -> str:
        from airflow_rtml.hooks.flink import redact

        text = redact(text)
        try:
            from airflow.sdk.bases.hook import BaseHook

            conn = await BaseHook.aget_connection(conn_id)
            values = [conn.password, *(v for k, v in (conn.extra_dejson or {}).items() if _SECRET_KEY.search(k))]
        except Exception:  # noqa: BLE001 - no connection: nothing of it to scrub
            return text
        for value in values:
            if isinstance(value, str) and len(value) >= 4:
                text = text.replace(value, "***")
        return text

    async def aclose(self) -> None:
        for entry in self._topics.values():
            entry["task"].cancel()
        await asyncio.gather(*(e["task"] for e in self._topics.values()), return_exceptions=True)
        self._topics.clear()


class StreamReaders:
    """Reads any :data:`~airflow_rtml.plugins.board.StreamKey`: a Flink job through :class:`FlinkReaders`, a
    Kafka progress stream through :class:`KafkaTopics`."""

    def __init__(self, flink: FlinkReaders, kafka: KafkaTopics):
        self.flink, self.kafka = flink, kafka

    async def read(self, key: StreamKey) -> Observation:
        return await (self.kafka.read(key) if key[0] == "kafka" else self.flink.read(key))

    def web_ui_url(self, key: StreamKey) -> str | None:
        return self.flink.web_ui_url(key) if key[0] == "flink" else None


def create_app(readers: FlinkReaders | StreamReaders | None = None, waits=open_waits, max_age: float = 5.0,
               windows=emitted_windows) -> FastAPI:
    """The app; ``readers``, ``waits`` (the open waits from the DB) and ``windows`` (the emitted windows, from
    the DB) are replaceable for tests."""
    if not isinstance(readers, StreamReaders):
        readers = StreamReaders(readers or FlinkReaders(poll_interval=max_age), KafkaTopics(poll_interval=max_age))
    cache = ProgressCache(readers.read, max_age=max_age)
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await readers.kafka.aclose()  # the topic consumers of this app (when its server runs the lifespan)

    app = FastAPI(title="airflow-rtml Streams", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.progress_cache = cache

    @app.get("/api/streams")
    async def streams(user: GetUserDep, session: SessionDep) -> dict:
        from airflow.api_fastapi.app import get_auth_manager  # the API server's, set up before any request

        readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
        found = await run_in_threadpool(waits, session, readable)  # blocking DB reads: off the event loop
        names = {stream_label(w.stream) for w in found if w.stream[0] == "flink"}
        emitted = await run_in_threadpool(windows, session, names, readable)
        return await board(found, cache, flink_ui=readers.web_ui_url, windows=emitted)

    @app.get("/", response_class=HTMLResponse)
    async def page(user: GetUserDep) -> str:
        return PAGE

    return app
