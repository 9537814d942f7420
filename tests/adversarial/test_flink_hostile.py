"""Hostile answers from a Flink cluster: no wait fires early, and the bystander's wait is never affected.

Each case installs one hostile answer on the fake cluster (for the victim job, or for the whole cluster for a
while), runs a victim wait and a bystander wait in one event loop, makes the bystander's job cross the
threshold at 0.5 s, and checks: the victim never succeeded (its condition never held), and the bystander
succeeded exactly at its crossing. Issue 10's findings 1, 3, 7, 8, 9 and 13 are among them.
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import check as _check
from conftest import race, record, wait_on
from fake_cluster import LONG_MIN, T, FakeCluster

from airflow_rtml.exceptions import FlinkConfigurationError, FlinkConnectionError
from airflow_rtml.hooks.flink import FlinkRestHook

HTML = (200, {"Content-Type": "text/html"}, b"<html><body>Sign in to the proxy</body></html>")
NESTED = b"[" * 200_000 + b"]" * 200_000
HUGE = b'{"jobs": [' + b" " * (20 * 1024 * 1024) + b"]}"


def answer(status: int, body: bytes, ctype: str = "application/json"):
    return lambda _job, _q: (status, {"Content-Type": ctype}, body)


def wm_values(*values):
    """The victim's sink reports these raw values (JSON) for subtasks 0, 1, ..."""
    return lambda _job, _q: FakeCluster.json([{"id": f"{i}.currentInputWatermark", "value": v}
                                              for i, v in enumerate(values)])


def for_a_while(cluster: FakeCluster, route: str, fn, seconds: float = 1.0):
    """Install ``fn`` on ``route`` for every job, removed after ``seconds`` (a cluster-wide outage)."""
    cluster.override(route, fn)
    until = time.monotonic() + seconds
    original = getattr(cluster, route)

    def timed(job, q):
        if time.monotonic() < until:
            return fn(job, q)
        return original(job, q)

    cluster.override(route, timed)


# (case id, setup(cluster), expected victim outcome: "waiting" | "failed:<reason>", wait kwargs, duration)
VICTIM_CASES = [
    ("rest-one-subtask-omitted-other-past", lambda c: setattr(c.job("victim"), "watermarks", [T + 10**6, None]),
     "waiting"),
    ("rest-only-subtasks-beyond-parallelism", lambda c: c.override("watermarks", lambda j, q: FakeCluster.json(
        [{"id": "1.currentInputWatermark", "value": str(T + 9)},
         {"id": "2.currentInputWatermark", "value": str(T + 9)}]), "victim"), "waiting"),
    ("rest-duplicate-subtask-0-subtask-1-missing", lambda c: c.override("watermarks", lambda j, q: FakeCluster.json(
        [{"id": "0.currentInputWatermark", "value": str(T + 1)}] * 2), "victim"), "waiting"),
    ("rest-parallelism-understated", lambda c: (setattr(c.job("victim"), "watermarks", [T + 5, T - 100]),
                                                c.override("detail", lambda j, q: FakeCluster.json(
                                                    {**json.loads(c.detail(j, q)[2]), "vertices": [
                                                        {"id": j.source, "name": "src", "parallelism": 1},
                                                        {"id": j.sink, "name": "sink", "parallelism": 1}]}),
                                                    "victim")), "waiting"),
    ("rest-value-1e30-string", lambda c: c.override("watermarks", wm_values(str(T + 1), "1e30"), "victim"),
     "failed:api_error"),
    ("rest-value-1e30-number", lambda c: c.override("watermarks", wm_values(str(T + 1), 1e30), "victim"),
     "failed:api_error"),
    ("rest-value-10e20-integer", lambda c: c.override("watermarks", wm_values(str(T + 1), 10**21), "victim"),
     "failed:api_error"),
    ("rest-value-NaN", lambda c: c.override("watermarks", wm_values(str(T + 1), "NaN"), "victim"), "failed:api_error"),
    ("rest-value-Infinity", lambda c: c.override("watermarks", wm_values(str(T + 1), "Infinity"), "victim"),
     "failed:api_error"),
    ("rest-value-boolean", lambda c: c.override("watermarks", wm_values(str(T + 1), True), "victim"),
     "failed:api_error"),
    ("rest-value-object", lambda c: c.override("watermarks", wm_values(str(T + 1), {"v": T + 1}), "victim"),
     "failed:api_error"),
    ("rest-value-empty-string", lambda c: c.override("watermarks", wm_values(str(T + 1), ""), "victim"), "waiting"),
    ("rest-value-empty-list", lambda c: c.override("watermarks", wm_values(str(T + 1), []), "victim"), "waiting"),
    ("rest-value-70-digits", lambda c: c.override("watermarks", wm_values(str(T + 1), "9" * 70), "victim"),
     "failed:api_error"),
    ("rest-value-huge-negative-exponent", lambda c: c.override("watermarks", wm_values(str(T + 1), "1e-999999"),
                                                               "victim"), "waiting"),
    ("rest-no-watermark-yet-and-past", lambda c: setattr(c.job("victim"), "watermarks", [LONG_MIN, T + 10**6]),
     "waiting"),
    ("rest-watermarks-html-200", lambda c: c.override("watermarks", lambda j, q: HTML, "victim"), "waiting"),
    ("rest-watermarks-deeply-nested-json", lambda c: c.override("watermarks", answer(200, NESTED), "victim"),
     "waiting"),
    ("rest-watermarks-not-a-list", lambda c: c.override("watermarks", answer(200, b'{"value": 1e30}'), "victim"),
     "waiting"),
    ("rest-watermarks-404", lambda c: c.override("watermarks", answer(404, b'{"errors": ["gone"]}'), "victim"),
     "failed:job_not_found"),
    ("rest-watermarks-503-forever", lambda c: c.override("watermarks", answer(503, b"busy"), "victim"), "waiting"),
    ("rest-watermarks-429-forever", lambda c: c.override("watermarks", answer(429, b"slow down"), "victim"),
     "waiting"),
    ("rest-watermarks-302", lambda c: c.override("watermarks", answer(302, b""), "victim"), "waiting"),
    ("rest-watermarks-20MB-body", lambda c: c.override("watermarks", answer(200, HUGE), "victim"), "waiting"),
    ("rest-watermarks-never-answer", lambda c: c.override("watermarks", answer(200, b"<hang>"), "victim"),
     "waiting"),
    ("rest-plan-unreadable", lambda c: c.override("plan", answer(200, b"{not json"), "victim"), "waiting"),
    ("rest-detail-without-vertices", lambda c: (setattr(c.job("victim"), "watermarks", [T + 5, T + 5]),
                                                c.override("detail", lambda j, q: FakeCluster.json(
                                                    {"jid": j.jid, "name": j.name, "state": "RUNNING"}), "victim")),
     "waiting"),
    ("overview-victim-unknown-state", lambda c: c.override("overview", _overview_patch(c, state="EXPLODED")),
     "failed:api_error"),
    ("overview-victim-state-null", lambda c: c.override("overview", _overview_patch(c, state=None)),
     "failed:api_error"),
    ("overview-victim-without-jid", lambda c: c.override("overview", _overview_patch(c, jid=None)),
     "failed:api_error"),
    ("overview-victim-jid-path-traversal", lambda c: c.override("overview", _overview_patch(c, jid="../../jars")),
     "failed:api_error"),
    ("overview-victim-name-not-a-string", lambda c: c.override("overview", _overview_patch(c, name=42)), "waiting"),
]


def _overview_patch(cluster: FakeCluster, **changes):
    def fn(_job, _q):
        body = json.loads(cluster.overview(None, None)[2])
        for entry in body["jobs"]:
            if entry["name"] == "victim":
                entry.update(changes)
        return FakeCluster.json(body)
    return fn


def _run_case(cluster: FakeCluster, setup, victim_kwargs: dict | None = None, duration: float = 2.5,
              bystander_conn: str = "flink_adv", cross_at: float = 0.5):
    setup(cluster)
    bystander = cluster.job("bystander")
    triggers = {"victim": wait_on("victim", conn=bystander_conn, **(victim_kwargs or {})),
                "bystander": wait_on("bystander", conn=bystander_conn)}
    return race(triggers, [(cross_at, lambda: setattr(bystander, "watermarks", [T, T + 5]))], duration)


@pytest.mark.parametrize(("case", "setup", "expected"), VICTIM_CASES, ids=[c[0] for c in VICTIM_CASES])
def test_hostile_answer_about_one_job(cluster, case, setup, expected):
    _check(case, _run_case(cluster, setup), expected)


CLUSTER_OUTAGES = [
    ("overview-html-200", HTML),
    ("overview-404", (404, {"Content-Type": "text/html"}, b"<h1>Not Found</h1>")),
    ("overview-302", (302, {"Location": "/login"}, b"")),
    ("overview-429-storm", (429, {}, b"Too Many Requests")),
    ("overview-503-20MB-page", (503, {"Content-Type": "text/html"}, b"x" * (20 * 1024 * 1024))),
    ("overview-jobs-not-a-list", (200, {"Content-Type": "application/json"}, b'{"jobs": "all of them"}')),
    ("overview-deeply-nested", (200, {"Content-Type": "application/json"}, NESTED)),
    ("overview-truncated-json", (200, {"Content-Type": "application/json"}, b'{"jobs": [{"jid": "')),
]


@pytest.mark.parametrize(("case", "bad"), CLUSTER_OUTAGES, ids=[c[0] for c in CLUSTER_OUTAGES])
def test_hostile_overview_for_a_while_delays_but_never_fails_or_fires(cluster, case, bad):
    # The overview is shared by every wait on the cluster: while it is bad nobody can decide; nobody fails
    # (it is transient), nobody fires early, and the bystander fires once it is readable again.
    results = _run_case(cluster, lambda c: for_a_while(c, "overview", lambda j, q: bad, seconds=1.2),
                        duration=4.5)
    _check(case, results, "waiting")


REPORTER_CASES = [
    ("reporter-one-subtask-missing-other-past", lambda c: setattr(c.job("victim"), "watermarks", [T + 10**6, None]),
     "waiting"),
    ("reporter-value-1e30", lambda c: setattr(c.job("victim"), "watermarks", [T + 1, "1e30"]), "failed:api_error"),
    ("reporter-value-NaN", lambda c: setattr(c.job("victim"), "watermarks", [T + 1, "NaN"]), "failed:api_error"),
    ("reporter-line-without-labels", lambda c: c.override("reporter", lambda j, q: (
        200, {}, c.reporter(j, q)[2] + b"flink_taskmanager_job_task_currentInputWatermark{} 1e30\n"
                 b"flink_taskmanager_job_task_currentInputWatermark{job_id=\"x\"\n")), "waiting"),
    ("reporter-victim-attempt-rows-mixed", lambda c: (setattr(c.job("victim"), "watermarks", [T + 5, T + 5]),
                                                      setattr(c.job("victim"), "parallelism", 3)), "waiting"),
]


@pytest.mark.parametrize(("case", "setup", "expected"), REPORTER_CASES, ids=[c[0] for c in REPORTER_CASES])
def test_hostile_reporter_scrape(cluster, case, setup, expected):
    _check(case, _run_case(cluster, setup, bystander_conn="flink_adv_reporter"), expected)


def test_reporter_html_page_for_a_while(cluster):
    results = _run_case(cluster, lambda c: for_a_while(c, "reporter", lambda j, q: HTML, seconds=1.2),
                        bystander_conn="flink_adv_reporter", duration=4.5)
    _check("reporter-html-200-for-a-while", results, "waiting")


# ---------------------------------------------------------------------------------------------------- commit-aware
def _commit_case(cluster: FakeCluster, script, duration: float = 3.0):
    victim, bystander = cluster.job("victim"), cluster.job("bystander")
    triggers = {"victim": wait_on("victim", commit_aware=True),
                "bystander": wait_on("bystander", commit_aware=True)}

    def bystander_commits():
        bystander.watermarks = [T, T + 5]

    def bystander_checkpoint():
        bystander.checkpoints.append((len(bystander.checkpoints) + 1, cluster.now_ms()))

    return race(triggers, [(0.4, bystander_commits), (0.9, bystander_checkpoint)] + script(victim), duration)


def test_commit_aware_checkpoint_only_before_the_crossing(cluster):
    def script(victim):
        def cross():
            victim.checkpoints.append((1, cluster.now_ms() - 1))
            victim.watermarks = [T, T]
        return [(0.3, cross)]
    _check("commit-checkpoint-before-crossing-only", _commit_case(cluster, script), "waiting")


def test_commit_aware_failover_after_the_crossing_then_a_checkpoint_of_the_restored_attempt(cluster):
    # Finding 2: restarted from a checkpoint before the crossing, the restored attempt's first checkpoint counted.
    def script(victim):
        def cross():
            victim.watermarks = [T, T]

        def failover():
            victim.attempts = [1, 1]
            victim.watermarks = [T - 3_600_000, T - 3_600_000]  # restored from a checkpoint an hour back

        def checkpoint():
            victim.checkpoints.append((7, cluster.now_ms()))
        return [(0.3, cross), (0.6, failover), (1.0, checkpoint)]
    _check("commit-failover-then-restored-checkpoint", _commit_case(cluster, script), "waiting")


def test_commit_aware_jobmanager_clock_an_hour_ahead(cluster):
    # Finding 3: a checkpoint the JobManager triggered *before* the crossing (its clock) must not count, whatever
    # the observer's clock says; here the JobManager's clock runs an hour ahead of the observer's.
    cluster.clock_offset_ms = 3_600_000

    def script(victim):
        def checkpoint_then_cross():
            victim.checkpoints.append((3, cluster.now_ms()))
            victim.watermarks = [T, T]
        return [(0.3, checkpoint_then_cross)]
    _check("commit-jobmanager-clock-ahead", _commit_case(cluster, script), "waiting")


def test_commit_aware_jobmanager_clock_an_hour_behind(cluster):
    cluster.clock_offset_ms = -3_600_000

    def script(victim):
        def checkpoint_then_cross():
            victim.checkpoints.append((3, cluster.now_ms()))
            victim.watermarks = [T, T]
        return [(0.3, checkpoint_then_cross)]
    _check("commit-jobmanager-clock-behind", _commit_case(cluster, script), "waiting")


def test_commit_aware_without_checkpointing_fails_at_once(cluster):
    def script(victim):
        victim.checkpointing = False
        return []
    _check("commit-checkpointing-disabled", _commit_case(cluster, script), "failed:checkpointing_disabled")


def test_commit_aware_checkpoint_stats_unreadable(cluster):
    def script(victim):
        cluster.override("checkpoints", answer(200, b"<html>oops</html>", "text/html"), "victim")
        victim.watermarks = [T, T]
        return []
    _check("commit-checkpoints-unreadable", _commit_case(cluster, script), "waiting")


# ---------------------------------------------------------------------------------------------------- identity
@pytest.mark.parametrize("job_id", ["../../jars", "a" * 31 + "?", "a" * 31 + "#", "A" * 32, "a" * 33, "",
                                    "a" * 16 + "/../" + "a" * 12, 42])
def test_a_job_id_that_is_not_a_flink_id_never_reaches_a_url(job_id):
    with pytest.raises(FlinkConfigurationError, match="is not a Flink id"):
        FlinkWatermarkTrigger_by_id(job_id)
    record(f"job-id-{str(job_id)[:12]!r}", None, True)


def FlinkWatermarkTrigger_by_id(job_id):  # noqa: N802 - reads as the class it builds
    from airflow_rtml.triggers.watermark import FlinkWatermarkTrigger

    return FlinkWatermarkTrigger(threshold_ms=T, job_id=job_id, flink_conn_id="flink_adv")


@pytest.mark.parametrize(("extra", "key"), [
    ({"verify": 0}, "verify"), ({"verify": "maybe"}, "verify"), ({"timeout": "nan"}, "timeout"),
    ({"timeout": "inf"}, "timeout"), ({"timeout": -1}, "timeout"), ({"timeout": True}, "timeout"),
    ({"max_response_bytes": "lots"}, "max_response_bytes"), ({"metrics_reporter_port": "x"}, "metrics_reporter_port"),
    ({"metrics_reporter_urls": "ftp://tm:9249"}, "metrics_reporter_urls"), ({"bearer_token": 5}, "bearer_token"),
    ({"watermark_source": "guess"}, "watermark_source"),
])
def test_wrongly_typed_extras_fail_the_connection_naming_the_key(monkeypatch, extra, key):
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_BAD", json.dumps({"conn_type": "flink_rest", "host": "127.0.0.1",
                                                             "port": 1, "extra": extra}))
    with pytest.raises(FlinkConfigurationError, match=f"extra '{key}'"):
        FlinkRestHook("flink_bad").base_url  # noqa: B018
    record(f"extra-{key}-{next(iter(extra.values()))!r}", None, True)


def test_credentials_in_a_url_are_masked_in_every_message(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_SECRET", json.dumps({
        "conn_type": "flink_rest", "host": "http://admin:s3cr3t@127.0.0.1", "port": 9,
        "extra": {"timeout": 0.5, "metrics_reporter_urls": ["http://scraper:t0ken@127.0.0.1:9/metrics"]}}))
    hook = FlinkRestHook("flink_secret", retry_limit=1)
    with pytest.raises(FlinkConnectionError) as err:
        hook.list_jobs()
    assert "s3cr3t" not in str(err.value) and "***@127.0.0.1" in str(err.value)
    results = race({"victim": wait_on("x", conn="flink_secret", deadline=time.time() + 1.5)}, [], 2.5)
    assert results["victim"]["status"] == "timeout"
    assert "s3cr3t" not in json.dumps(results["victim"]) and "t0ken" not in json.dumps(results["victim"])
    record("credentials-in-host-url", results["victim"], True)


def test_a_wait_ends_at_its_deadline_while_the_jobmanager_never_answers(cluster):
    # Finding 9: the deadline was checked once per snapshot; a hanging poll carried the wait ~44 s past it.
    cluster.override("overview", answer(200, b"<hang>"))
    start = time.time()
    results = race({"victim": wait_on("victim", deadline=start + 1.0, poll_interval=0.5)}, [], 3.0)
    assert results["victim"]["status"] == "timeout"
    record("deadline-while-jobmanager-hangs", results["victim"], True)


# ---------------------------------------------------------------------------------------------------- auto source
def _auto_conn(monkeypatch, cluster: FakeCluster) -> None:
    port = int(cluster.url.rsplit(":", 1)[1])
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_AUTO", json.dumps({"conn_type": "flink_rest", "host": "127.0.0.1",
                                                              "port": port, "extra": {"timeout": 2}}))


def test_auto_source_reads_the_reporter_the_cluster_configuration_shows(cluster, monkeypatch):
    # No extra names a reporter; /jobmanager/config shows one, on the fake's own port, /taskmanagers its host.
    port = int(cluster.url.rsplit(":", 1)[1])
    cluster.override("jobmanager_config", lambda j, q: FakeCluster.json([
        {"key": "metrics.reporter.prom.factory.class",
         "value": "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"},
        {"key": "metrics.reporter.prom.port", "value": str(port)}]))
    cluster.override("taskmanagers", lambda j, q: FakeCluster.json({"taskmanagers": [
        {"id": "tm-1", "path": "pekko.tcp://flink@127.0.0.1:6122/user/rpc/taskmanager_0"}]}))
    _auto_conn(monkeypatch, cluster)
    results = _run_case(cluster, lambda c: None, bystander_conn="flink_auto")
    _check("auto-source-reporter-from-cluster-config", results, "waiting")
    assert cluster.hits.get("reporter", 0) >= 2 and cluster.hits.get("watermarks", 0) == 0, cluster.hits


def test_auto_source_falls_back_to_rest_when_no_reporter_answers(cluster, monkeypatch):
    # The configuration names a reporter on a port where nothing listens: REST, and the waits still decide.
    cluster.override("jobmanager_config", lambda j, q: FakeCluster.json([
        {"key": "metrics.reporter.prom.factory.class",
         "value": "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"},
        {"key": "metrics.reporter.prom.port", "value": "9"}]))
    cluster.override("taskmanagers", lambda j, q: FakeCluster.json({"taskmanagers": [
        {"id": "tm-1", "path": "pekko.tcp://flink@127.0.0.1:6122/user/rpc/taskmanager_0"}]}))
    _auto_conn(monkeypatch, cluster)
    results = _run_case(cluster, lambda c: None, bystander_conn="flink_auto")
    _check("auto-source-rest-fallback", results, "waiting")
    assert cluster.hits.get("watermarks", 0) >= 2, cluster.hits


def test_refused_credentials_fail_the_waits_with_how_to_fix_them(cluster):
    # A 401/403 is no outage: the waits end at once, naming the connection's credentials.
    cluster.override("overview", answer(401, b'{"errors": ["Unauthorized"]}'))
    results = race({"victim": wait_on("victim", deadline=time.time() + 30)}, [], 2.0)
    victim = results["victim"]
    record("overview-401-credentials-refused", victim, True)
    assert victim["status"] == "failed" and victim["reason"] == "configuration", victim
    assert "check the credentials" in victim["message"]


def test_a_job_id_with_a_path_in_an_overview_entry_never_reaches_a_url(cluster):
    results = _run_case(cluster, lambda c: c.override("overview", _overview_patch(c, jid="../../jars")))
    _check("overview-jid-path-never-requested", results, "failed:api_error")
    assert cluster.unknown == [], f"requests outside Flink's REST API were made: {cluster.unknown}"
