"""Extra links of the operators and sensors: the task's stream in the Streams view, its job in the Flink web UI.

Airflow 3 computes an extra link on the worker when the task's try ends — also when it defers — with the
rendered operator at hand, and stores the URL as an XCom (``_link_<class name>``) that the UI reads. So:

- :class:`StreamProgressLink` ("Stream progress") opens the Streams view (:mod:`airflow_rtml.plugins`) on the
  stream the task waits on, by its rendered ``job_name`` (or ``job_id``), with the task's wait highlighted. The
  URL is a path under the API server's ``[api] base_url`` (its path only: the UI opens it on its own origin).
- :class:`FlinkJobLink` ("Flink job") opens the job in the Flink web UI of the task's connection
  (``web_ui_url``, else the REST address), for the job id the task recorded: the submit operator's ``job_id``
  XCom, or the ``job_id`` of a sensor's result. No job id yet (a wait still deferred before it resolved one):
  no link, rather than a wrong one.

A wait started in the triggerer (``start_from_trigger=True``) has run on no worker before it waits, so its links
appear when it resumes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey

__all__ = ["FlinkJobLink", "StreamProgressLink", "streams_view_url"]

STREAMS_VIEW_PATH = "/rtml/"
#: The XCom key under which the submit operator and the job sensors record the job's id.
XCOM_JOB_ID = "job_id"


def _base_path() -> str:
    from airflow.configuration import conf

    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def streams_view_url(stream: str | None, *, dag_id: str = "", run_id: str = "", task_id: str = "",
                     map_index: int = -1) -> str:
    """The Streams view's URL for ``stream``, with one task's wait to highlight."""
    query = {k: v for k, v in (("stream", stream), ("dag_id", dag_id), ("run_id", run_id), ("task_id", task_id))
             if v}
    if map_index is not None and map_index >= 0:
        query["map_index"] = str(map_index)
    return f"{_base_path()}{STREAMS_VIEW_PATH}" + (f"?{urlencode(query)}" if query else "")


def _rendered(value: Any) -> str | None:
    """A rendered template field as text; None when unset or still a template (never rendered)."""
    if value is None or value == "":
        return None
    text = str(value)
    return None if "{{" in text or "{%" in text else text


class StreamProgressLink(BaseOperatorLink):
    """"Stream progress": the Streams view on the stream the task waits on."""

    name = "Stream progress"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        stream = _rendered(getattr(operator, "job_name", None)) or _rendered(getattr(operator, "job_id", None))
        return streams_view_url(stream, dag_id=ti_key.dag_id, run_id=ti_key.run_id, task_id=ti_key.task_id,
                                map_index=getattr(ti_key, "map_index", -1))


class FlinkJobLink(BaseOperatorLink):
    """"Flink job": the task's Flink job in the Flink web UI."""

    name = "Flink job"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        job_id = XCom.get_value(ti_key=ti_key, key=XCOM_JOB_ID)
        if not job_id:
            result = XCom.get_value(ti_key=ti_key, key="return_value")
            job_id = result.get("job_id") if isinstance(result, dict) else None
        job_id = job_id or _rendered(getattr(operator, "job_id", None))
        if not job_id:
            return ""
        from airflow_rtml.hooks.flink import FlinkRestHook

        return FlinkRestHook(getattr(operator, "flink_conn_id", None) or FlinkRestHook.default_conn_name
                             ).job_url(str(job_id))
