"""The relay (``rtml progress relay``) under hostile JobManager answers, publishing to the real Kafka broker:
it outlives an HTML page and a 429 storm, sends ``final`` when a bounded job finishes between two polls (and
not after a stop-with-savepoint), and in commit-aware mode publishes only committed progress. Issue 10, finding 5.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from conftest import record
from confluent_kafka.admin import AdminClient, NewTopic
from fake_cluster import HTML_PAGE, T, FakeCluster

from airflow_rtml.progress import END_OF_STREAM
from airflow_rtml.progress_relay import relay

BOOTSTRAP = "127.0.0.1:9092"


@pytest.fixture
def topic(stack):
    name = f"rtml-relay-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})  # kept alive until its futures resolved
    for fut in admin.create_topics([NewTopic(name, 1, 1)]).values():
        fut.result(timeout=30)
    return name


def _run_relay(cluster: FakeCluster, topic: str, seconds: float, **kw) -> tuple[list, list]:
    """Run the real relay against the fake JobManager for at most ``seconds``; return (published, errors)."""
    published, errors, done = [], [], threading.Event()

    def target():
        try:
            relay(job_name="victim", stream="s", topic=topic, source="relay", base_url=cluster.url,
                  bootstrap_servers=BOOTSTRAP, interval=0.2, heartbeat=60, on_publish=published.append, **kw)
        except Exception as exc:  # noqa: BLE001 - the test reports what ended the relay
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=target, daemon=True).start()
    done.wait(seconds)
    return published, errors


def _stop(cluster: FakeCluster) -> None:
    """End a relay that is still running: the job finishes through a stop-with-savepoint marked final-worthy."""
    job = cluster.job("victim")
    job.savepoint_type = None
    job.state = "FINISHED"


@pytest.mark.parametrize(("case", "bad"), [
    ("relay-overview-html-200", HTML_PAGE),
    ("relay-overview-429-storm", (429, {}, b"Too Many Requests")),
    ("relay-overview-503", (503, {}, b"busy")),
])
def test_the_relay_outlives_unreadable_answers_and_publishes_once_flink_answers_again(cluster, topic, case, bad):
    victim = cluster.job("victim")
    victim.watermarks = [T - 10, T - 10]
    until = time.monotonic() + 2.0
    good = cluster.overview
    cluster.override("overview", lambda j, q: bad if time.monotonic() < until else good(j, q))
    threading.Timer(4.0, _stop, [cluster]).start()
    published, errors = _run_relay(cluster, topic, 12.0)
    record(case, None, not errors)
    assert not errors, f"the relay ended on a transient answer: {errors}"
    assert [s.watermark_ms for s in published if not s.final][:1] == [T - 10], published
    assert published[-1].final and len({s.run for s in published}) == 1  # one run id for the whole process


def test_a_bounded_job_that_finishes_between_two_polls_gets_its_final_signal(cluster, topic):
    victim = cluster.job("victim")
    victim.watermarks = [T - 10, T - 10]
    threading.Timer(1.5, lambda: setattr(victim, "state", "FINISHED")).start()  # no savepoint: its input ended
    published, errors = _run_relay(cluster, topic, 8.0)
    assert not errors and published and published[-1].final, (published, errors)
    record("relay-bounded-job-finished-between-polls", None, True)


def test_a_stop_with_savepoint_is_not_the_end_of_the_stream(cluster, topic):
    victim = cluster.job("victim")
    victim.watermarks = [T - 10, T - 10]

    def stop():
        victim.savepoint_type = "SYNC_SAVEPOINT"
        victim.state = "FINISHED"

    threading.Timer(1.5, stop).start()
    published, errors = _run_relay(cluster, topic, 4.0)
    assert not errors and published and not any(s.final for s in published), published  # an upgrade, maybe
    record("relay-stop-with-savepoint-no-final", None, True)
    _stop(cluster)


def test_the_commit_aware_relay_publishes_only_committed_progress(cluster, topic):
    victim = cluster.job("victim")
    victim.watermarks = [T + 100, T + 100]  # reached, but no checkpoint yet
    checkpoint = threading.Timer(2.5, lambda: victim.checkpoints.append((1, cluster.now_ms())))
    checkpoint.start()
    threading.Timer(6.0, _stop, [cluster]).start()
    started = time.monotonic()
    seen: list = []
    published, errors = _run_relay(cluster, topic, 12.0, commit_aware=True)
    assert not errors, errors
    regular = [s for s in published if not s.final]
    assert regular and regular[0].watermark_ms == T + 100, published
    # Nothing went out before the checkpoint: the first signal's emission is after it (2.5 s + confirmation).
    assert regular[0].emitted_at_ms / 1000 >= time.time() - (time.monotonic() - started) + 2.5, (regular, seen)
    record("relay-commit-aware-waits-for-the-checkpoint", None, True)
    assert published[-1].final and published[-1].watermark_ms in (T + 100, END_OF_STREAM)
