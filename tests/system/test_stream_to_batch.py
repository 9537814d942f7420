"""Stream → batch once per closed window, in the real local Airflow: the example DAGs
``stream_windows_producer`` (StreamWindowSensor, deferred in the real triggerer) and ``process_closed_window``
(PartitionedAssetTimetable), fed by a real Flink job whose event time the test drives through Kafka.

It also kills the triggerer with SIGKILL while the sensor is deferred and closes three windows while it is down:
the stack's supervisor stops the dead triggerer's log server and starts a new triggerer, the wait resumes, and
each window's downstream run happens exactly once.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import psutil
import pytest
from event_time import start_event_time_job
from support import wait_for

from airflow_rtml.local.stack import listening_pid

MINUTE = 60_000
PRODUCER, CONSUMER = "stream_windows_producer", "process_closed_window"


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))



def _consumer_runs(client: httpx.Client, keys: set[str]) -> list[dict]:
    runs = client.get(f"/dags/{CONSUMER}/dagRuns", params={"limit": 100}).json()["dag_runs"]
    return [r for r in runs if r.get("partition_key") in keys]


def _deferred_producer_ti(client: httpx.Client) -> dict | None:
    runs = client.get(f"/dags/{PRODUCER}/dagRuns", params={"state": "running", "limit": 5}).json()["dag_runs"]
    for run in runs:
        ti = client.get(f"/dags/{PRODUCER}/dagRuns/{run['dag_run_id']}/taskInstances/wait_for_closed_windows").json()
        if ti.get("state") == "deferred":
            return ti
    return None


def _kill_triggerer(stack) -> tuple[psutil.Process, list[psutil.Process]]:
    """SIGKILL the stack's triggerer by PID, only it: its log server child lives on, as after a real crash."""
    svc = stack.service("airflow-triggerer")
    victim = stack.process_of(svc)
    assert victim is not None, "no running triggerer found"
    children = victim.children(recursive=True)
    os.kill(victim.pid, signal.SIGKILL)
    return victim, children


def _triggerer_back(stack, victim: psutil.Process, children: list[psutil.Process]) -> psutil.Process:
    """The supervisor stopped what the dead triggerer left and started a new one, healthy, with its log server on
    the triggerer's log port again."""
    svc = stack.service("airflow-triggerer")
    new = wait_for("the supervisor to start a new triggerer",
                   lambda: (p := stack.process_of(svc)) and p.pid != victim.pid and p, 120, 0.5)
    wait_for("the new triggerer to be healthy", lambda: svc.health()[0] and stack.process_of(svc), 180, 1)
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, \
            f"the dead triggerer's child {child.pid} was left running"
    port = stack.cfg.ports.airflow_triggerer_logs
    holder = wait_for(f"a log server of the new triggerer on {port}", lambda: listening_pid(port), 60, 0.5)
    assert holder in {c.pid for c in new.children(recursive=True)} | {new.pid}, (holder, new.pid)
    # The supervisor marks the service healthy again on its next pass (once a second, after its health check).
    row = wait_for("status to report the triggerer healthy again",
                   lambda: (r := next(r for r in stack.status() if r.name == svc.name)).healthy and r, 60, 0.5)
    assert row.restarts >= 1, row
    return new


@pytest.mark.timeout(900)
def test_each_closed_window_runs_the_downstream_dag_exactly_once_across_a_triggerer_kill(stack, hook):
    job = start_event_time_job(stack)
    base = (int(time.time() * 1000) // MINUTE) * MINUTE  # unique windows for this run: keys never repeat
    keys = [_iso(base + i * MINUTE) for i in range(3)]
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

        # Window 0 is one millisecond short of closed: the sensor defers and nothing runs downstream.
        job.produce(base + MINUTE - 2)
        wait_for("the producer's sensor to defer", lambda: _deferred_producer_ti(client), 120)
        time.sleep(5)
        assert _consumer_runs(client, set(keys)) == []

        # The fault: the triggerer is killed mid-wait (SIGKILL, by PID), and all three windows close while it is
        # down. Nothing restarts it but the stack's supervisor; the wait resumes from the database.
        victim, children = _kill_triggerer(stack)
        killed_at = time.monotonic()
        job.produce(base + 3 * MINUTE - 1)  # closes windows 0, 1 and 2 (progress >= end - 1)
        # The supervisor waits 1 s before a restart and a triggerer takes seconds more to start.
        assert time.monotonic() - killed_at < 2.0, "the windows did not close while the triggerer was down"
        _triggerer_back(stack, victim, children)
        wait_for("runs for windows 0, 1 and 2", lambda: len(_consumer_runs(client, set(keys))) >= 3, 240)
        wait_for("the consumer runs to finish",
                  lambda: all(r["state"] == "success" for r in _consumer_runs(client, set(keys))), 180)
        time.sleep(5)  # anything duplicated would show up by now
        runs = _consumer_runs(client, set(keys) | {_iso(base + 3 * MINUTE)})
        assert sorted(r["partition_key"] for r in runs) == keys, [(r["partition_key"], r["state"]) for r in runs]

        # The Streams view (issue 15) lists the windows the producer emitted for this stream, each with the one
        # consumer run it scheduled, read from the real metadata DB while the producer waits for window 3.
        def view() -> dict | None:
            resp = httpx.get(f"{stack.cfg.airflow_url}/rtml/api/streams", timeout=30)
            assert resp.status_code == 200, resp.text
            return next((s for s in resp.json()["streams"] if s["stream"] == job.name and len(s["windows"]) >= 3),
                        None)

        stream = wait_for("the Streams view to list the emitted windows", view, 120, 2)
        shown = {w["window_start_ms"]: w for w in stream["windows"]}
        by_key = {r["partition_key"]: r["dag_run_id"] for r in runs}
        for i, key in enumerate(keys):
            window = shown[base + i * MINUTE]
            assert window["window_end_ms"] == base + (i + 1) * MINUTE and window["partition_key"] == key, window
            assert [(r["dag_id"], r["run_id"], r["state"]) for r in window["runs"]] == \
                [(CONSUMER, by_key[key], "success")], window
            assert window["by"]["dag_id"] == PRODUCER, window
    finally:
        client.patch(f"/dags/{PRODUCER}", json={"is_paused": True})
        for run in hook.find_jobs_by_name(job.name):
            if not run.state.is_terminal:
                hook.cancel_job(run.job_id)
        client.close()
