"""The extra links (airflow_rtml.links): the Streams view URL a task's "Stream progress" link opens, and the
Flink web UI URL of "Flink job". The links are computed on the worker with the rendered operator; the real UI
path is tested in tests/ui/test_streams_browser.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_rtml import links
from airflow_rtml.links import FlinkJobLink, StreamProgressLink, streams_view_url
from airflow_rtml.sensors.watermark import StreamWatermarkSensor, StreamWindowSensor

KEY = SimpleNamespace(dag_id="d", run_id="manual__2026-01-01T00:00:00+00:00", task_id="t", map_index=-1)


def test_the_stream_link_names_the_rendered_stream_and_the_task(monkeypatch):
    monkeypatch.setattr(links, "_base_path", lambda: "")
    url = StreamProgressLink().get_link(SimpleNamespace(job_name="training-samples", job_id=None), ti_key=KEY)
    assert url == ("/rtml/?stream=training-samples&dag_id=d&run_id=manual__2026-01-01T00%3A00%3A00%2B00%3A00"
                   "&task_id=t")


def test_a_mapped_task_and_a_job_id_and_a_base_path(monkeypatch):
    monkeypatch.setattr(links, "_base_path", lambda: "/airflow")
    key = SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=3)
    url = StreamProgressLink().get_link(SimpleNamespace(job_name=None, job_id="ab" * 16), ti_key=key)
    assert url == f"/airflow/rtml/?stream={'ab' * 16}&dag_id=d&run_id=r&task_id=t&map_index=3"


def test_an_unrendered_template_is_not_put_in_a_link(monkeypatch):
    monkeypatch.setattr(links, "_base_path", lambda: "")
    url = StreamProgressLink().get_link(SimpleNamespace(job_name="{{ params.job }}", job_id=None), ti_key=KEY)
    assert "stream=" not in url and url.startswith("/rtml/?dag_id=d")


def test_the_base_path_comes_from_the_api_base_url(monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/team-a/")
    assert streams_view_url("s") == "/team-a/rtml/?stream=s"
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://localhost:8080")
    assert streams_view_url(None) == "/rtml/"


@pytest.mark.parametrize(("xcoms", "expected"), [
    ({"job_id": "a" * 32}, "a" * 32),                                          # the submit operator's
    ({"return_value": {"job_id": "b" * 32, "progress_ms": 1}}, "b" * 32),     # a sensor's result
    ({}, None),                                                                # a wait that has not resolved one
])
def test_the_flink_job_link_uses_the_recorded_job_id(monkeypatch, xcoms, expected):
    from airflow.sdk.execution_time import xcom

    monkeypatch.setattr(xcom.XCom, "get_value", staticmethod(lambda *, ti_key, key: xcoms.get(key)))
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_DEFAULT", "flink-rest://jm.example.com:8081?web_ui_url=https%3A%2F%2Fui.example.com")
    url = FlinkJobLink().get_link(SimpleNamespace(flink_conn_id="flink_default", job_id=None), ti_key=KEY)
    assert url == (f"https://ui.example.com/#/job/running/{expected}/overview" if expected else "")


def test_the_sensors_carry_both_links():
    for cls in (StreamWatermarkSensor, StreamWindowSensor):
        assert {link.name for link in cls.operator_extra_links} == {"Stream progress", "Flink job"}
