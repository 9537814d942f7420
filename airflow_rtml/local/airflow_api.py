"""The one client of Airflow's REST API (v2) in this package: the calls the demo, ``rtml experiment`` and the
system tests make to the local stack's Airflow (its simple auth manager lets every local call in)."""

from __future__ import annotations

import json
import time
from datetime import datetime

import httpx


class AirflowApi:
    """The few calls of Airflow's REST API (v2) the demo, the tests and ``rtml experiment`` need."""

    def __init__(self, url: str):
        self.c = httpx.Client(base_url=f"{url}/api/v2", timeout=30)

    def set_variable(self, key: str, value: dict) -> None:
        self.c.delete(f"/variables/{key}")
        self.c.post("/variables", json={"key": key, "value": json.dumps(value)}).raise_for_status()

    def wait_parsed(self, dags: tuple[str, ...], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.c.get(f"/dags/{d}").status_code == 200 for d in dags):
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAGs {dags} not parsed within {timeout:.0f}s: {self.c.get('/importErrors').json()}")
            time.sleep(2)

    def pause(self, dag: str, paused: bool) -> None:
        self.c.patch(f"/dags/{dag}", json={"is_paused": paused}).raise_for_status()

    def stop_runs(self, dag: str) -> None:
        """Mark the DAG's unfinished runs failed: a paused continuous DAG keeps its deferred run, which would
        hold its one active slot (waiting on a previous chain) when the DAG is unpaused again."""
        for state in ("running", "queued"):
            runs = self.c.get(f"/dags/{dag}/dagRuns", params={"state": state, "limit": 100}).json()
            for run in runs.get("dag_runs", []):
                self.c.patch(f"/dags/{dag}/dagRuns/{run['dag_run_id']}", json={"state": "failed"})

    def trigger(self, dag: str, conf: dict | None = None) -> str:
        run_id = f"rtml-demo-{time.time_ns()}"
        body = {"dag_run_id": run_id, "logical_date": None, **({"conf": conf} if conf else {})}
        self.c.post(f"/dags/{dag}/dagRuns", json=body).raise_for_status()
        return run_id

    def xcom(self, dag: str, run_id: str, task_id: str, key: str = "return_value"):
        resp = self.c.get(f"/dags/{dag}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
        return resp.json().get("value") if resp.status_code == 200 else None

    def partition_runs(self, dag: str, keys: set[str], since_iso: str) -> list[dict]:
        """Successful runs of ``dag`` for these partition keys, created since ``since_iso`` (this demo's)."""
        runs = self.c.get(f"/dags/{dag}/dagRuns", params={"limit": 200, "run_after_gte": since_iso}).json()
        return [r for r in runs.get("dag_runs", []) if r["state"] == "success" and r.get("partition_key") in keys]

    def failed_tasks(self, dag: str, run_id: str) -> list[str]:
        tis = self.c.get(f"/dags/{dag}/dagRuns/{run_id}/taskInstances").json().get("task_instances", [])
        return [t["task_id"] for t in tis if t["state"] == "failed"]

    def asset_events(self, name: str, since_iso: str) -> list[dict]:
        assets = self.c.get("/assets", params={"name_pattern": name}).json().get("assets", [])
        ids = [a["id"] for a in assets if a["name"] == name]
        if not ids:
            return []
        resp = self.c.get("/assets/events", params={"asset_id": ids[0], "timestamp_gte": since_iso, "limit": 500})
        return resp.json().get("asset_events", [])

    def run_state(self, dag: str, run_id: str) -> str:
        return self.c.get(f"/dags/{dag}/dagRuns/{run_id}").json().get("state", "?")

    def request_parse(self, dag: str) -> None:
        """Ask the DAG processor to parse the file that defines ``dag`` now (as the UI's "Reparse" does), so DAGs
        that file adds or drops show up in seconds instead of at its next scheduled parse."""
        resp = self.c.get(f"/dags/{dag}")
        resp.raise_for_status()
        self.c.put(f"/parseDagFile/{resp.json()['file_token']}").raise_for_status()

    def wait_fresh(self, dag: str, since: datetime, timeout: float) -> None:
        """Wait until ``dag`` exists, is not stale, and was parsed after ``since`` (an aware datetime of this host's
        clock, taken after what the parse must see was written; the local stack's Airflow shares the clock): a DAG
        row left from before (a stopped experiment of the same name) is not what runs."""
        deadline = time.monotonic() + timeout
        while True:
            resp = self.c.get(f"/dags/{dag}")
            if resp.status_code == 200:
                body = resp.json()
                parsed = body.get("last_parsed_time")
                if not body.get("is_stale") and parsed and datetime.fromisoformat(parsed.replace("Z", "+00:00")) > since:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAG {dag} not parsed afresh within {timeout:.0f}s "
                                   f"(import errors: {self.c.get('/importErrors').json().get('import_errors')})")
            time.sleep(1)

    def wait_run(self, dag: str, run_id: str, timeout: float) -> str:
        """Wait until the run ends (``success`` or ``failed``); its state, or the last one seen at the deadline."""
        deadline = time.monotonic() + timeout
        state = self.run_state(dag, run_id)
        while state not in ("success", "failed") and time.monotonic() < deadline:
            time.sleep(1)
            state = self.run_state(dag, run_id)
        return state
