"""The example DAGs run end to end in the real local Airflow (scheduler, triggerer, LocalExecutor)."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from airflow_rtml.hooks.flink import FlinkRestHook, JobState


def _api(stack) -> httpx.Client:
    return httpx.Client(base_url=f"{stack.cfg.airflow_url}/api/v2", timeout=30)


def _wait_for_dag(client: httpx.Client, dag_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = client.get(f"/dags/{dag_id}")
        if resp.status_code == 200:
            return
        time.sleep(2)
    errors = client.get("/importErrors").json()
    raise AssertionError(f"DAG {dag_id} not parsed within {timeout}s; import errors: {errors}")


def _run_dag(client: httpx.Client, dag_id: str, conf: dict, timeout: float = 300) -> str:
    assert client.patch(f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    resp = client.post(f"/dags/{dag_id}/dagRuns", json={"dag_run_id": run_id, "logical_date": None, "conf": conf})
    assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = client.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
        if state in ("success", "failed"):
            break
        time.sleep(2)
    tis = client.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    assert state == "success", f"run {run_id} is {state}: " + str([(t["task_id"], t["state"]) for t in tis])
    return run_id


def _task_log(client: httpx.Client, dag_id: str, run_id: str, task_id: str) -> list[dict]:
    resp = client.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1",
                      headers={"Accept": "application/json"})
    assert resp.status_code == 200, resp.text
    return [e for e in resp.json()["content"] if isinstance(e, dict) and isinstance(e.get("event"), str)]


@pytest.mark.timeout(600)
def test_flink_job_lifecycle_dag_defers_in_the_real_triggerer(stack, monkeypatch):
    prefix = f"rtml-sys-{uuid.uuid4().hex[:6]}"
    with _api(stack) as client:
        _wait_for_dag(client, "flink_job_lifecycle")
        run_id = _run_dag(client, "flink_job_lifecycle", {"name_prefix": prefix})
        sensor_log = _task_log(client, "flink_job_lifecycle", run_id, "wait_bounded_job_finished")
        stop_log = _task_log(client, "flink_job_lifecycle", run_id, "stop_streaming_job_with_savepoint")
        stop_ti = client.get(
            f"/dags/flink_job_lifecycle/dagRuns/{run_id}/taskInstances/stop_streaming_job_with_savepoint"
        ).json()
    # The sensor deferred, the real triggerer ran FlinkJobStateTrigger and fired, the task resumed.
    events = [e["event"] for e in sensor_log]
    assert "Pausing task as DEFERRED." in [e.strip() for e in events], events
    assert "Trigger fired event" in events, events
    assert events.index("Trigger fired event") > [e.strip() for e in events].index("Pausing task as DEFERRED.")

    monkeypatch.setenv("AIRFLOW_CONN_FLINK_DEFAULT", f"flink-rest://127.0.0.1:{stack.cfg.ports.flink_rest}")
    jobs = {j.name: j for j in FlinkRestHook().list_jobs() if j.name.startswith(prefix)}
    bounded = [j for n, j in jobs.items() if "-bounded-" in n]
    streaming = [j for n, j in jobs.items() if "-streaming-" in n]
    assert len(bounded) == 1 and bounded[0].state == JobState.FINISHED
    assert len(streaming) == 1 and streaming[0].state == JobState.FINISHED  # stopped with a savepoint
    assert stop_ti["state"] == "success"
    # The deferrable stop returned the savepoint path (it polls on the worker for 10 s before deferring, and a
    # savepoint takes ~1 s here, so it completes without a deferral round trip).
    stop_events = [e["event"].strip() for e in stop_log]
    assert any(e.startswith("Savepoint of ") and " written to file:" in e for e in stop_events), stop_events
    sql_jobs = [j for n, j in jobs.items() if "-sql-" in n]
    assert len(sql_jobs) == 1 and sql_jobs[0].state == JobState.CANCELED  # submitted via the SQL Gateway


EXAMPLE_DAGS = ("flink_job_lifecycle", "batch_to_stream_from_timestamp", "stream_windows_producer",
                "process_closed_window", "rtml_demo_streams", "rtml_demo_sample_hours", "rtml_demo_train_hourly",
                "rtml_demo_eval_hours", "rtml_demo_evaluate_hourly", "bench_signal_latency_rtml",
                "bench_signal_latency_rtml_reporter", "bench_signal_latency_peer", "rtml_demo_archive_hours",
                "rtml_demo_archive_commit", "rtml_demo_offline_features", "feature_backfill", "rtml_clone_experiment",
                "rtml_demo_serve_model")


def test_every_dag_file_in_the_dags_folder_parses_in_the_real_airflow(stack):
    """Each example and benchmark DAG is known to the real Airflow and no file of dags/ has an import error."""
    with _api(stack) as client:
        for dag_id in EXAMPLE_DAGS:
            _wait_for_dag(client, dag_id)
        errors = client.get("/importErrors").json()
        assert errors["total_entries"] == 0, errors
