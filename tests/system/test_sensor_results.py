"""One result type on every path (issue 17), in the real local Airflow: the example DAG ``stream_wait_results``
waits on a real Flink job in the real triggerer, on a worker, and with the default target of a manually triggered
run (no logical date, no data interval); its ``use_results`` task reads the three results through XCom and fails
unless each is the documented dict. (Round 1 ended a deferred success in the triggerer, whose XCom a task then
read back as a JSON *string*.)"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from support import wait_for

DAG_ID = "stream_wait_results"
MINUTE = 60_000


def _ti(client: httpx.Client, run_id: str, task_id: str) -> dict:
    return client.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}").json()


@pytest.mark.timeout(600)
def test_a_wait_returns_the_same_dict_from_the_triggerer_the_worker_and_a_manual_run(stack, job, hook):
    now = int(time.time() * 1000)
    ahead = now + 5 * MINUTE  # the stream is ahead of the wall clock: a manual run's run_after is passed
    job.produce(ahead)
    assert job.wait_progress(hook, ahead) == ahead
    client = httpx.Client(base_url=f"{stack.cfg.airflow_url}/api/v2", timeout=30)
    try:
        wait_for("the example DAG to be parsed", lambda: client.get(f"/dags/{DAG_ID}").status_code == 200, 120, 2)
        assert client.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200
        run_id = f"test-{uuid.uuid4().hex[:8]}"
        conf = {"job_name": job.name, "deferred_target_ms": ahead + 2 * MINUTE, "reached_target_ms": ahead}
        resp = client.post(f"/dags/{DAG_ID}/dagRuns", json={"dag_run_id": run_id, "logical_date": None, "conf": conf})
        assert resp.status_code == 200, resp.text
        wait_for("the triggerer waits to defer", lambda: all(
            _ti(client, run_id, t)["state"] == "deferred" for t in ("wait_in_triggerer", "wait_from_trigger")), 180)
        # The start-from-trigger wait was deferred by the scheduler: no worker ever ran it (no hostname, no pid),
        # while the other deferred wait started on a worker first.
        started_on_worker = _ti(client, run_id, "wait_in_triggerer")
        from_trigger = _ti(client, run_id, "wait_from_trigger")
        assert started_on_worker["hostname"] and not from_trigger["hostname"] and not from_trigger["pid"], from_trigger
        job.produce(ahead + 2 * MINUTE)  # crosses the deferred wait's target
        state = wait_for("the run to finish", lambda: (s := client.get(f"/dags/{DAG_ID}/dagRuns/{run_id}").json()[
            "state"]) in ("success", "failed") and s, 240)
        tis = {t: _ti(client, run_id, t)["state"] for t in
               ("wait_in_triggerer", "wait_on_worker", "wait_for_run_after", "wait_from_trigger", "use_results")}
        assert state == "success", tis
        xcom = client.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/use_results/xcomEntries/return_value")
        assert xcom.json()["value"] == {"in_triggerer": ahead + 2 * MINUTE, "on_worker": ahead, "for_run_after": ahead,
                                        "from_trigger": ahead + 2 * MINUTE}
    finally:
        client.patch(f"/dags/{DAG_ID}", json={"is_paused": True})
        client.close()
