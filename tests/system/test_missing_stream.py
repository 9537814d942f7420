"""No hot failure loop (issue 11, item 4), in the real local Airflow: the ``@continuous`` example DAG
``stream_windows_producer`` over a Flink job that does not exist.

Before ``job_missing_timeout`` its sensor raised ``FlinkJobNotFound`` at once and the continuous DAG started the
next run at once: one failed run every ~1.3 s, and the SQLite metadata DB was then locked long enough that the API
answered an unrelated trigger with a 500 after 5 s. Now the wait waits for the job to appear (up to 5 minutes by
default), so over two minutes the DAG makes at most two runs, none failed, and the API answers quickly throughout.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from support import wait_for

PRODUCER = "stream_windows_producer"
UNRELATED = "flink_job_lifecycle"  # paused: a triggered run stays queued and runs nothing
WATCH_SECONDS = 120


def _all_runs(client: httpx.Client) -> list[dict]:
    return client.get(f"/dags/{PRODUCER}/dagRuns", params={"limit": 100, "order_by": "-run_after"}).json()["dag_runs"]


@pytest.mark.timeout(600)
def test_a_continuous_producer_over_a_missing_job_makes_bounded_runs_and_the_api_stays_responsive(stack, hook):
    missing = f"rtml-missing-{uuid.uuid4().hex[:8]}"
    assert hook.find_jobs_by_name(missing) == []
    client = httpx.Client(base_url=f"{stack.cfg.airflow_url}/api/v2", timeout=30)
    triggered: list[str] = []
    before: set[str] = set()
    was_paused = True
    try:
        client.delete("/variables/rtml_example_stream")
        assert client.post("/variables", json={"key": "rtml_example_stream", "value": missing}).status_code in (
            200, 201)
        wait_for("the example DAGs to be parsed",
                 lambda: all(client.get(f"/dags/{d}").status_code == 200 for d in (PRODUCER, UNRELATED)), 120, 2)
        was_paused = client.get(f"/dags/{UNRELATED}").json()["is_paused"]  # an earlier test may have unpaused it
        assert client.patch(f"/dags/{UNRELATED}", json={"is_paused": True}).status_code == 200
        before.update(r["dag_run_id"] for r in _all_runs(client))
        assert client.patch(f"/dags/{PRODUCER}", json={"is_paused": False}).status_code == 200

        def runs() -> list[dict]:  # a continuous DAG's run_after is when it was parsed: tell new runs by id
            return [r for r in _all_runs(client) if r["dag_run_id"] not in before]

        wait_for("the producer's first run", lambda: runs(), 120, 1)
        slowest = 0.0
        deadline = time.monotonic() + WATCH_SECONDS
        while time.monotonic() < deadline:
            t = time.monotonic()
            resp = client.post(f"/dags/{UNRELATED}/dagRuns",
                               json={"dag_run_id": f"missing-stream-{uuid.uuid4().hex[:8]}", "logical_date": None})
            took = time.monotonic() - t
            assert resp.status_code == 200, f"the API answered {resp.status_code} after {took:.1f}s: {resp.text}"
            triggered.append(resp.json()["dag_run_id"])
            slowest = max(slowest, took)
            time.sleep(10)

        seen = runs()
        states = [r["state"] for r in seen]
        assert len(seen) <= 2, f"{len(seen)} producer runs in {WATCH_SECONDS} s (a hot failure loop): {states}"
        assert "failed" not in states, states
        latest = max(seen, key=lambda r: r["run_after"])
        ti = client.get(f"/dags/{PRODUCER}/dagRuns/{latest['dag_run_id']}/taskInstances/wait_for_closed_windows")
        assert ti.json()["state"] in ("running", "deferred"), ti.json()  # still waiting for the job to appear
        assert slowest < 5.0, f"an unrelated trigger took {slowest:.1f}s"
    finally:
        client.patch(f"/dags/{PRODUCER}", json={"is_paused": True})
        for run in _all_runs(client):  # the waiting run ends here, or max_active_runs=1 blocks the next test's
            if run["state"] in ("running", "queued"):
                client.patch(f"/dags/{PRODUCER}/dagRuns/{run['dag_run_id']}", json={"state": "failed"})
        for run_id in triggered:
            client.delete(f"/dags/{UNRELATED}/dagRuns/{run_id}")
        if not was_paused:
            client.patch(f"/dags/{UNRELATED}", json={"is_paused": False})
        client.delete("/variables/rtml_example_stream")
        client.close()
