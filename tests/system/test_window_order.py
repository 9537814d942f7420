"""Per-window scheduling, first run and order (issue 17), in the real local Airflow with the example DAGs
``stream_windows_producer`` / ``process_closed_window``: the producer's first run for a new stream says in its
log where it starts and that earlier windows are not emitted; one crossing that closes five windows creates the
consumer's five runs in window order (Airflow 3.3 registers a task's partition keys in the order of a Python
set: before the fix the runs came in a different order on every try)."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from support import wait_for

MINUTE = 60_000
PRODUCER, CONSUMER, SENSOR = "stream_windows_producer", "process_closed_window", "wait_for_closed_windows"
ASSET = "rtml_example_events_per_minute"


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _runs(client: httpx.Client, keys: set[str]) -> list[dict]:
    runs = client.get(f"/dags/{CONSUMER}/dagRuns", params={"limit": 100, "order_by": "id"}).json()["dag_runs"]
    return [r for r in runs if r.get("partition_key") in keys]


def _deferred_run(client: httpx.Client) -> str | None:
    for run in client.get(f"/dags/{PRODUCER}/dagRuns", params={"state": "running", "limit": 5}).json()["dag_runs"]:
        ti = client.get(f"/dags/{PRODUCER}/dagRuns/{run['dag_run_id']}/taskInstances/{SENSOR}").json()
        if ti.get("state") == "deferred":
            return run["dag_run_id"]
    return None


@pytest.mark.timeout(600)
def test_first_run_says_where_it_starts_and_consumer_runs_follow_window_order(stack, job, hook):
    days_ahead = 7 + uuid.uuid4().int % 100_000  # windows no other run of any test uses
    base = (int(time.time() * 1000) // MINUTE) * MINUTE + days_ahead * 24 * 60 * MINUTE
    keys = [_iso(base + i * MINUTE) for i in range(5)]
    client = httpx.Client(base_url=f"{stack.cfg.airflow_url}/api/v2", timeout=30)
    try:
        client.delete("/variables/rtml_example_stream")
        assert client.post("/variables", json={"key": "rtml_example_stream", "value": job.name}).status_code in (
            200, 201)
        wait_for("the example DAGs to be parsed",
                 lambda: all(client.get(f"/dags/{d}").status_code == 200 for d in (PRODUCER, CONSUMER)), 120, 2)
        job.produce(base + 5)  # the stream's first progress lies in window 0
        assert job.wait_progress(hook, base + 5) == base + 5
        for dag in (CONSUMER, PRODUCER):
            assert client.patch(f"/dags/{dag}", json={"is_paused": False}).status_code == 200
        run_id = wait_for("the producer's sensor to defer", lambda: _deferred_run(client), 120)
        log = client.get(f"/dags/{PRODUCER}/dagRuns/{run_id}/taskInstances/{SENSOR}/logs/1",
                         headers={"Accept": "application/json"}).json()["content"]
        lines = [e["event"] for e in log if isinstance(e, dict) and isinstance(e.get("event"), str)]
        assert any("first run" in ln and keys[0] in ln and "NOT emitted" in ln and "start=" in ln for ln in lines), lines

        job.produce(base + 5 * MINUTE - 1)  # one crossing closes windows 0..4
        wait_for("five consumer runs", lambda: len(_runs(client, set(keys))) >= 5, 180)
        created = [r["partition_key"] for r in _runs(client, set(keys))]
        assert created == keys, created
        # Each window's asset event carries its own window only, and the producer is not drawn as a consumer of
        # its own asset (no self-loop in the lineage graph).
        asset = client.get("/assets", params={"name_pattern": ASSET, "limit": 5}).json()["assets"]
        asset = next(a for a in asset if a["name"] == ASSET)
        # (Airflow 3.3.2's /assets/events answers 500 while a run it created has not started: wait for those.)
        wait_for("the five consumer runs to start", lambda: all(r.get("start_date") for r in _runs(client, set(keys))),
                 180)
        events = client.get("/assets/events", params={"asset_id": asset["id"], "source_dag_id": PRODUCER,
                                                      "source_run_id": run_id, "limit": 100}).json()["asset_events"]
        mine = {e["partition_key"]: e["extra"] for e in events if e.get("partition_key") in keys}
        assert sorted(mine) == keys, mine
        for i, key in enumerate(keys):
            assert mine[key]["window_start_ms"] == base + i * MINUTE, mine[key]
            assert mine[key]["last_window_end_ms"] == base + (i + 1) * MINUTE, mine[key]
            assert [w["start_ms"] for w in mine[key]["windows"]] == [base + i * MINUTE], mine[key]
        assert all(t["dag_id"] != PRODUCER for t in asset["consuming_tasks"]), asset["consuming_tasks"]
        assert any(t["dag_id"] == PRODUCER for t in asset["producing_tasks"]), asset["producing_tasks"]
    finally:
        client.patch(f"/dags/{PRODUCER}", json={"is_paused": True})
        client.close()
