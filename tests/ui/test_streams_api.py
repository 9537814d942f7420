"""The Streams view's API over the fake Flink cluster (tests/adversarial/fake_cluster.py): the real readers,
cache and app; only the open waits (normally from Airflow's DB) and the login are stand-ins.

A browser test against the real local stack is still to land (docs/ui.md, "Not yet done").
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parents[1] / "adversarial"))

from fake_cluster import T, FakeCluster, FakeServer  # noqa: E402

from airflow_rtml.plugins.app import FlinkReaders, create_app  # noqa: E402
from airflow_rtml.plugins.board import OpenWait  # noqa: E402

SECRET = "s3cret-pa55word"


@pytest.fixture
def cluster(monkeypatch):
    c = FakeCluster()
    server = FakeServer(c)
    port = server.url.rsplit(":", 1)[1]
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_UI", json.dumps({
        "conn_type": "flink_rest", "host": "127.0.0.1", "port": int(port), "login": "admin", "password": SECRET,
        "extra": {"watermark_source": "rest", "timeout": 2}}))
    yield c
    server.stop()


def waits(n_streams: int = 2, per_stream: int = 3):
    names = ["victim", "bystander"]
    return [OpenWait.from_trigger(dag_id=f"dag_{i}", run_id=f"run_{k}", task_id="wait", map_index=-1,
                                  waiting_since=time.time() - 60,
                                  kwargs={"flink_conn_id": "flink_ui", "job_name": names[i % 2], "threshold_ms": T})
            for i in range(n_streams) for k in range(per_stream)]


def client(max_age: float = 30.0, **kw) -> TestClient:
    from airflow.api_fastapi.core_api.security import get_user

    app = create_app(FlinkReaders(poll_interval=1.0), max_age=max_age, windows=lambda *_: {},
                     waits=lambda _session, dag_ids: [w for w in waits(**kw)
                                                             if dag_ids is None or w.dag_id in dag_ids])
    app.dependency_overrides[get_user] = lambda: object()
    from airflow.api_fastapi.common.db.common import _get_session
    app.dependency_overrides[_get_session] = lambda: None
    return TestClient(app)


@pytest.fixture
def all_dags_readable(monkeypatch):
    import airflow.api_fastapi.app as api_app

    class Manager:
        readable: set[str] | None = None

        def get_authorized_dag_ids(self, *, user, method):
            assert method == "GET"
            return self.readable if self.readable is not None else {f"dag_{i}" for i in range(100)}

    manager = Manager()
    monkeypatch.setattr(api_app, "get_auth_manager", lambda: manager)
    return manager


def test_the_board_shows_the_rest_values_and_the_waits(cluster, all_dags_readable):
    c = client()
    body = c.get("/api/streams").json()
    streams = {s["stream"]: s for s in body["streams"]}
    assert set(streams) == {"victim", "bystander"}
    victim = streams["victim"]
    assert victim["state"] == "RUNNING" and victim["job_id"] == cluster.job("victim").jid
    assert victim["watermark_ms"] == min(cluster.job("victim").watermarks)
    assert [w["target_ms"] for w in victim["waits"]] == [T] * 3
    assert victim["waits"][0]["dag_id"] == "dag_0" and victim["error"] is None


def test_five_tabs_do_not_multiply_the_cluster_requests(cluster, all_dags_readable):
    c = client(max_age=30.0)
    c.get("/api/streams")
    one_tab = sum(cluster.hits.values())
    for _ in range(5):
        c.get("/api/streams")
    assert sum(cluster.hits.values()) == one_tab, cluster.hits
    assert c.app.state.progress_cache.reads == 2  # one per stream


def test_only_readable_dags_are_listed(cluster, all_dags_readable):
    all_dags_readable.readable = {"dag_1"}
    c = client()
    body = c.get("/api/streams").json()
    assert [s["stream"] for s in body["streams"]] == ["bystander"]
    assert {w["dag_id"] for s in body["streams"] for w in s["waits"]} == {"dag_1"}


def test_no_connection_secret_reaches_the_browser(cluster, all_dags_readable):
    cluster.override("overview", lambda _j, _q: (500, {}, f"boom password={SECRET}".encode()))
    c = client()
    text = c.get("/api/streams").text + c.get("/").text
    assert SECRET not in text
    assert all(s["error"] for s in json.loads(c.get("/api/streams").text)["streams"])


def test_the_page_and_api_require_a_login():
    c = TestClient(create_app(waits=lambda *_: []))
    assert c.get("/api/streams").status_code == 401
    assert c.get("/").status_code == 401


def test_the_plugin_registers_the_app_and_the_menu_entry():
    from airflow_rtml.plugins import RtmlPlugin

    plugin = RtmlPlugin()
    [app] = plugin.fastapi_apps
    assert app["url_prefix"] == "/rtml" and app["app"] is RtmlPlugin().fastapi_apps[0]["app"]
    [view] = plugin.external_views
    assert view["href"] == "/rtml/" and view["destination"] == "nav"
