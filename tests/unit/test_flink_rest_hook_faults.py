"""FlinkRestHook's error paths that a real JobManager cannot be made to produce on demand (503, bad bodies),
served by a small local HTTP server; and the connection allow-list."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from airflow.sdk import Connection

from airflow_rtml.exceptions import FlinkApiError, FlinkConfigurationError
from airflow_rtml.hooks.flink import FlinkRestHook, JobState, root_cause_from_exceptions


class _Script:
    """Answers queued per path: (status, body) tuples, the last one repeating."""

    def __init__(self):
        self.answers: dict[str, list[tuple[int, str]]] = {}
        self.hits: dict[str, int] = {}


@pytest.fixture
def fake_flink(monkeypatch):
    script = _Script()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            path = self.path.split("?")[0]
            script.hits[path] = script.hits.get(path, 0) + 1
            queue = script.answers.get(path, [(404, "{}")])
            status, body = queue.pop(0) if len(queue) > 1 else queue[0]
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_FAKE", f"flink-rest://127.0.0.1:{server.server_address[1]}")
    yield script
    server.shutdown()


JOBS = json.dumps({"jobs": [{"jid": "a" * 32, "name": "n", "state": "RUNNING", "start-time": 1, "end-time": -1}]})


def test_503_and_429_are_retried_then_succeed(fake_flink):
    fake_flink.answers["/jobs/overview"] = [(503, "busy"), (429, "slow down"), (200, JOBS)]
    jobs = FlinkRestHook("flink_fake", retry_limit=4, retry_delay=0.01).list_jobs()
    assert [j.state for j in jobs] == [JobState.RUNNING]
    assert fake_flink.hits["/jobs/overview"] == 3


def test_async_twin_retries_the_same_way(fake_flink):
    fake_flink.answers["/jobs/overview"] = [(502, "bad gateway"), (200, JOBS)]
    jobs = asyncio.run(FlinkRestHook("flink_fake", retry_limit=3, retry_delay=0.01).a_list_jobs())
    assert jobs[0].job_id == "a" * 32


def test_persistent_503_ends_with_api_error_after_the_retry_limit(fake_flink):
    fake_flink.answers["/jobs/overview"] = [(503, "still busy")]
    with pytest.raises(FlinkApiError, match="answered 503") as err:
        FlinkRestHook("flink_fake", retry_limit=3, retry_delay=0.01).list_jobs()
    assert err.value.status_code == 503
    assert fake_flink.hits["/jobs/overview"] == 3


def test_400_is_not_retried(fake_flink):
    fake_flink.answers["/jobs/overview"] = [(400, '{"errors": ["bad request"]}')]
    with pytest.raises(FlinkApiError, match="answered 400"):
        FlinkRestHook("flink_fake", retry_limit=5, retry_delay=0.01).list_jobs()
    assert fake_flink.hits["/jobs/overview"] == 1


def test_malformed_body_is_a_clear_error(fake_flink):
    fake_flink.answers["/jobs/overview"] = [(200, "<html>proxy error</html>")]
    with pytest.raises(FlinkApiError, match="body we cannot read"):
        FlinkRestHook("flink_fake", retry_limit=1).list_jobs()


def _conn(**kw) -> Connection:
    return Connection(conn_id="c", conn_type="flink_rest", **kw)


def test_unknown_extras_are_rejected_not_passed_on():
    with pytest.raises(FlinkConfigurationError, match=r"unsupported extras \['proxies'\]"):
        FlinkRestHook.settings_from_connection(_conn(host="jm", extra=json.dumps({"proxies": "x"})))


def test_connection_settings_tls_and_auth():
    s = FlinkRestHook.settings_from_connection(
        _conn(host="jm.example", port=443, schema="https", login="u", password="p",
              extra=json.dumps({"ca_bundle": "/ca.pem", "client_cert": "/c.pem", "client_key": "/k.pem",
                                "timeout": "3"}))
    )
    assert s["base_url"] == "https://jm.example:443"
    assert s["verify"] == "/ca.pem" and s["cert"] == ("/c.pem", "/k.pem")
    assert s["auth"] == ("u", "p") and s["timeout"] == 3.0
    bearer = FlinkRestHook.settings_from_connection(_conn(host="jm", extra=json.dumps({"bearer_token": "t"})))
    assert bearer["headers"] == {"Authorization": "Bearer t"} and bearer["auth"] is None
    assert bearer["base_url"] == "http://jm:8081"


def test_missing_host_and_bad_scheme_say_how_to_fix():
    with pytest.raises(FlinkConfigurationError, match="no host"):
        FlinkRestHook.settings_from_connection(_conn())
    with pytest.raises(FlinkConfigurationError, match="http or https"):
        FlinkRestHook.settings_from_connection(_conn(host="jm", schema="ftp"))


def test_root_cause_reads_flink2_history_and_flink1_root_exception():
    assert root_cause_from_exceptions({"exceptionHistory": {"entries": [{"stacktrace": "java.lang.X: boom"}]}}) \
        == "java.lang.X: boom"
    assert root_cause_from_exceptions({"root-exception": "old: boom", "exceptionHistory": {"entries": []}}) == "old: boom"
    assert root_cause_from_exceptions({}) is None


def test_job_state_terminal_and_failure_sets():
    assert {s for s in JobState if s.is_terminal} == {JobState.FINISHED, JobState.FAILED, JobState.CANCELED}
    assert {s for s in JobState if s.is_failure} == {JobState.FAILED, JobState.CANCELED}


def test_trigger_ids_must_be_flink_trigger_ids():
    hook = FlinkRestHook("unused")
    with pytest.raises(FlinkConfigurationError, match="32 lowercase hex"):
        hook.stop_with_savepoint("a" * 32, trigger_id="my-trigger")


def test_job_link_uses_the_web_ui_url_and_plain_http_builds_no_tls_context(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_UI", json.dumps(
        {"conn_type": "flink_rest", "host": "jm", "port": 8081, "extra": {"web_ui_url": "https://flink.example/ui/"}}))
    hook = FlinkRestHook("flink_ui")
    assert hook.job_url("abc") == "https://flink.example/ui/#/job/running/abc/overview"
    http_kw = hook._client_kwargs(hook._get_settings())
    assert http_kw["verify"] is False and http_kw["cert"] is None  # no CA bundle loaded for http://
    tls = FlinkRestHook.settings_from_connection(_conn(host="jm", schema="https", extra=json.dumps({"verify": True})))
    assert hook._client_kwargs(tls)["verify"] is True


def test_sql_gateway_hook_shares_the_settings_with_its_own_default_port():
    from airflow_rtml.hooks.flink_sql import FlinkSqlGatewayHook

    s = FlinkSqlGatewayHook.settings_from_connection(_conn(host="gw"))
    assert s["base_url"] == "http://gw:8083"
    with pytest.raises(FlinkConfigurationError, match="unsupported extras"):
        FlinkSqlGatewayHook.settings_from_connection(_conn(host="gw", extra=json.dumps({"session": "x"})))


@pytest.mark.parametrize("status", [400, 503])
@pytest.mark.parametrize(("credentials", "secret"), [
    ({"login": "ops", "password": "s3cret-pw"}, "s3cret-pw"),
    ({"extra": {"bearer_token": "tok-abcdef123456"}}, "tok-abcdef123456"),
])
def test_a_password_or_token_echoed_in_an_error_body_never_reaches_the_error(fake_flink, monkeypatch, status,
                                                                              credentials, secret):
    """A proxy in front of the JobManager echoes the request's credentials in its error page: the password or
    the bearer token must not reach the exception (a task log, a trigger event, the Streams view)."""
    port = int(__import__("os").environ["AIRFLOW_CONN_FLINK_FAKE"].rsplit(":", 1)[1])
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_FAKE", json.dumps(
        {"conn_type": "flink_rest", "host": "127.0.0.1", "port": port, **credentials}))
    fake_flink.answers["/jobs/overview"] = [(status, json.dumps({"errors": [
        f"denied for ops:{secret} (Authorization: Bearer {secret})"]}))]
    with pytest.raises(FlinkApiError) as err:
        FlinkRestHook("flink_fake", retry_limit=1, retry_delay=0.01).list_jobs()
    text = " ".join([str(err.value), str(err.value.body), str(getattr(err.value, "detail", ""))])
    assert secret not in text, text
    assert "denied for ops:***" in str(err.value), str(err.value)
