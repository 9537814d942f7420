"""The Streams view's FastAPI app, mounted by Airflow's API server under ``/rtml`` (see :mod:`airflow_rtml.plugins`).

Read-only: ``GET /api/streams`` (JSON) and ``GET /`` (the page, which polls the JSON). Both require a logged-in
Airflow user (Airflow's own ``get_user`` dependency: a bearer token or the UI's session cookie), and the waits
listed are only those of DAGs the auth manager lets that user read. Open waits come from Airflow's metadata DB
(deferred task instances and their triggers' kwargs), progress from :class:`~airflow_rtml.plugins.board.ProgressCache`.
"""

from __future__ import annotations

import dataclasses

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from airflow_rtml.exceptions import RtmlError
from airflow_rtml.hooks.flink import FlinkRestHook
from airflow_rtml.plugins.board import FLINK_WATERMARK_TRIGGER, OpenWait, ProgressCache, StreamKey, board
from airflow_rtml.plugins.page import PAGE
from airflow_rtml.progress import Observation
from airflow_rtml.streams.flink import INPUT_WATERMARK, FlinkStreamReader

__all__ = ["FlinkReaders", "create_app", "open_waits"]


def open_waits(session: Session, dag_ids: set[str] | None = None) -> list[OpenWait]:
    """Every deferred task instance whose trigger waits on a Flink stream's watermark (of ``dag_ids`` only,
    when given)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.state import TaskInstanceState

    query = (select(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id, TaskInstance.map_index, Trigger)
             .join(Trigger, TaskInstance.trigger_id == Trigger.id)
             .where(TaskInstance.state == TaskInstanceState.DEFERRED, Trigger.classpath == FLINK_WATERMARK_TRIGGER))
    if dag_ids is not None:
        query = query.where(TaskInstance.dag_id.in_(dag_ids))
    return [OpenWait.from_trigger(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index,
                                  waiting_since=trigger.created_date.timestamp() if trigger.created_date else None,
                                  kwargs=trigger.kwargs)
            for dag_id, run_id, task_id, map_index, trigger in session.execute(query)]


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
            conn_id, job_name, job_id, vertex = key
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


def create_app(readers: FlinkReaders | None = None, waits=open_waits, max_age: float = 5.0) -> FastAPI:
    """The app; ``readers`` and ``waits`` (the open waits from the DB) are replaceable for tests."""
    readers = readers or FlinkReaders(poll_interval=max_age)
    cache = ProgressCache(readers.read, max_age=max_age)
    app = FastAPI(title="airflow-rtml Streams", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.progress_cache = cache

    @app.get("/api/streams")
    async def streams(user: GetUserDep, session: SessionDep) -> dict:
        from airflow.api_fastapi.app import get_auth_manager  # the API server's, set up before any request

        readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
        found = await run_in_threadpool(waits, session, readable)  # a blocking DB read: off the event loop
        return await board(found, cache, flink_ui=readers.web_ui_url)

    @app.get("/", response_class=HTMLResponse)
    async def page(user: GetUserDep) -> str:
        return PAGE

    return app
