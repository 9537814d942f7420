"""Watermarks from the TaskManagers' Prometheus reporters: the exposition parse, the completeness rule (a
missing subtask makes progress unknown, never higher), the connection extras, and partial reporter outages
(served by a small local HTTP server: a real TaskManager cannot be made to vanish on demand)."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from airflow.sdk import Connection

from airflow_rtml.exceptions import FlinkConfigurationError
from airflow_rtml.hooks.flink import REPORTER_INPUT_WATERMARK, FlinkRestHook, parse_reporter_watermarks
from airflow_rtml.progress import NO_WATERMARK
from airflow_rtml.triggers.watermark import FlinkProgressPoller, reporter_watermarks

JOB, VERTEX = "6fb6ddf0d2ac9502b7cad262e8c5caec", "c27dcf7b54ef6bfd6cff02ca8870b681"


def _line(subtask: int, value: str, attempt: int = 0, job: str = JOB, vertex: str = VERTEX) -> str:
    # Shape copied from a Flink 2.2.1 TaskManager's reporter (labels end with a trailing comma).
    return (f'{REPORTER_INPUT_WATERMARK}{{job_id="{job}",task_id="{vertex}",task_attempt_id="x_{vertex}_{subtask}_'
            f'{attempt}",host="127_0_0_1",task_name="GlobalWindowAggregate_5_____per_minute_7_:_Writer",'
            f'task_attempt_num="{attempt}",job_name="j",tm_id="127_0_0_1:35541_a9de52",subtask_index="{subtask}",}}'
            f" {value}")


def test_parse_reads_only_the_watermark_family_and_the_newest_attempt():
    text = "\n".join([
        f"# HELP {REPORTER_INPUT_WATERMARK} currentInputWatermark (scope: taskmanager_job_task)",
        f"# TYPE {REPORTER_INPUT_WATERMARK} gauge",
        _line(0, "1.70000006E12"),
        _line(1, "1.7E12", attempt=0),
        _line(1, "1.69999E12", attempt=1),  # the failover's new attempt wins, even with a lower value
        'flink_taskmanager_job_task_operator_currentOutputWatermark{job_id="a",task_id="b",} 5.0',
        _line(0, "-9.223372036854776E18", vertex="0" * 32),
    ])
    parsed = parse_reporter_watermarks(text)
    assert parsed == {(JOB, VERTEX): {0: (0, "1.70000006E12"), 1: (1, "1.69999E12")},
                      (JOB, "0" * 32): {0: (0, "-9.223372036854776E18")}}


def _poller(parallelism: int) -> FlinkProgressPoller:
    p = FlinkProgressPoller(flink_conn_id="flink_default", job_name=None, job_id=JOB, vertex=None,
                            metric="currentInputWatermark", commit_aware=False, poll_interval=1)
    p._vertices = {JOB: [VERTEX]}
    p._parallelism = {VERTEX: parallelism}
    return p


def test_progress_is_the_minimum_only_when_every_subtask_reported():
    async def check():
        reported = parse_reporter_watermarks("\n".join([_line(0, "1.70000006E12"), _line(1, "1.70000001E12")]))
        assert _poller(2)._from_reporters(reported, VERTEX) == 1_700_000_010_000
        # parallelism 3, subtask 2 missing (its TaskManager did not answer): unknown, not min of the other two
        assert _poller(3)._from_reporters(reported, VERTEX) is None
        assert _poller(1)._from_reporters({}, VERTEX) is None
        no_wm = parse_reporter_watermarks(_line(0, "-9.223372036854776E18"))
        assert _poller(1)._from_reporters(no_wm, VERTEX) == NO_WATERMARK

    asyncio.run(check())


def _conn(extra: dict) -> Connection:
    return Connection(conn_id="c", conn_type="flink_rest", host="jm", port=8081, extra=json.dumps(extra))


def test_reporter_extras_are_validated():
    s = FlinkRestHook.settings_from_connection(_conn({"metrics_reporter_port": "9249"}))
    assert s["reporter_port"] == 9249 and s["reporter_urls"] == []
    s = FlinkRestHook.settings_from_connection(_conn({"metrics_reporter_urls": "http://tm-0:9249/metrics, http://tm-1:9249/metrics"}))
    assert s["reporter_urls"] == ["http://tm-0:9249/metrics", "http://tm-1:9249/metrics"]
    with pytest.raises(FlinkConfigurationError, match="must be a port number"):
        FlinkRestHook.settings_from_connection(_conn({"metrics_reporter_port": "prom"}))
    with pytest.raises(FlinkConfigurationError, match="must be http\\(s\\) URLs"):
        FlinkRestHook.settings_from_connection(_conn({"metrics_reporter_urls": ["tm-0:9249"]}))


@pytest.fixture
def reporters(monkeypatch):
    """Two fake reporter endpoints: one answers (subtask 0), one answers 503 (its TaskManager is gone)."""
    hits = {"auth": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits["auth"].append(self.headers.get("Authorization"))
            assert f"name%5B%5D={REPORTER_INPUT_WATERMARK}" in self.path or f"name[]={REPORTER_INPUT_WATERMARK}" in self.path
            ok = self.path.startswith("/ok")
            self.send_response(200 if ok else 503)
            self.end_headers()
            self.wfile.write((_line(0, "1.7E12") + "\n").encode() if ok else b"gone")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield base, hits
    server.shutdown()


def test_a_silent_reporter_is_skipped_and_the_jobmanager_credentials_are_not_sent(reporters, monkeypatch):
    base, hits = reporters
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_R", Connection(
        conn_id="flink_r", conn_type="flink_rest", host="127.0.0.1", port=1, login="admin", password="secret",
        extra=json.dumps({"metrics_reporter_urls": [f"{base}/ok/metrics", f"{base}/gone/metrics"]})).as_json())
    hook = FlinkRestHook("flink_r", retry_limit=1)

    async def scrape():
        async with hook.a_session():
            return await reporter_watermarks(hook, max_age=0)

    assert asyncio.run(scrape()) == {(JOB, VERTEX): {0: (0, "1.7E12")}}
    assert hits["auth"] == [None, None]  # basic auth is the JobManager's, not sent to TaskManagers


def test_rescaled_or_incomplete_vertices_are_unknown_and_read_again():
    async def check():
        p = _poller(2)
        four = parse_reporter_watermarks("\n".join(_line(i, "1.7E12") for i in range(4)))
        assert p._from_reporters(four, VERTEX) is None  # rescaled 2 -> 4: not the min of the first two
        assert JOB not in p._vertices  # the job's detail (its parallelism) is read again at the next poll
        p = _poller(4)
        three = parse_reporter_watermarks("\n".join(_line(i, "1.7E12") for i in range(3)))
        assert p._from_reporters(three, VERTEX) is None  # subtask 3 missing: never the min of the other three

    asyncio.run(check())


def test_taskmanager_hosts_become_urls_ipv6_in_brackets(monkeypatch):
    from airflow_rtml.hooks.flink import _url_host

    assert _url_host("10.0.0.5") == "10.0.0.5" and _url_host("::1") == "[::1]"
    assert _url_host("fe80::1%eth0") == "[fe80::1%25eth0]"
    body = {"taskmanagers": [{"path": "pekko.tcp://flink@10.0.0.5:6122/user/rpc/taskmanager_0"},
                             {"path": "pekko.tcp://flink@10.0.0.5:6124/user/rpc/taskmanager_1"},
                             {"path": "pekko.tcp://flink@[::1]:6122/user/rpc/taskmanager_0"}]}
    assert FlinkRestHook()._c_taskmanager_hosts().parse(body) == (3, ["10.0.0.5", "::1"])


def test_a_cancelled_fetcher_does_not_cancel_the_others_waiting_for_its_fetch():
    from airflow_rtml.triggers.watermark import SharedFetches

    async def check():
        shared, calls = SharedFetches(), []

        async def fetch():
            calls.append(1)
            await asyncio.sleep(0.2)
            return len(calls)

        first = asyncio.ensure_future(shared.get("k", 10, fetch))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(shared.get("k", 10, fetch))  # waits for the first one's fetch
        await asyncio.sleep(0.05)
        first.cancel()  # its stream ended
        assert await second == 2 and first.cancelled()  # the second fetched again itself

    asyncio.run(check())


def test_a_reporter_line_that_cannot_be_read_is_skipped_and_the_others_are_kept(caplog):
    text = "\n".join([_line(0, "").rstrip(), _line(1, "1.7E12"),
                      'flink_taskmanager_job_task_currentInputWatermark{job_id="x"} 5'])
    assert parse_reporter_watermarks(text) == {(JOB, VERTEX): {1: (0, "1.7E12")}}  # subtask 0: unknown
    assert "without a value" in caplog.text
