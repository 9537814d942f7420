"""Stream → batch through Airflow's event-driven scheduling, in the real local Airflow: an ``Asset`` whose
``AssetWatcher`` runs ``FlinkWindowEventTrigger`` in the real triggerer, and a DAG scheduled on that asset.

A real Flink job's event time is driven through Kafka across three one-minute window boundaries, one at a time:
one millisecond short of each boundary nothing fires; at ``end - 1`` exactly one asset event names the window,
and it is not repeated while the window stays closed for several poll cycles. The consumer DAG runs once per
window, and its task reads the window from the triggering asset event's payload.

The DAG file is written for this run only (unique DAG, asset and Flink job names) and removed afterwards; the
watcher is unregistered (DAG paused, file re-parsed) before the DAG is deleted, so no trigger outlives the test.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import pytest
from event_time import start_event_time_job
from support import cancel_jobs_named, wait_for

from airflow_rtml.local.airflow_api import AirflowApi
from airflow_rtml.progress import Window
from airflow_rtml.triggers.watermark import FlinkWindowEventTrigger

MINUTE = 60_000
POLL_INTERVAL = 1.0
HOLD = 4 * POLL_INTERVAL  # a condition held this long has been evaluated by several polls

DAG_FILE = '''"""Written by tests/system/test_window_asset_watcher.py for one test run, and deleted by it."""

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_rtml.triggers.watermark import FlinkWindowEventTrigger

CLOSED_WINDOWS = Asset(
    name="{asset}", uri="rtml://test/{asset}",
    watchers=[AssetWatcher(name="closed_minutes", trigger=FlinkWindowEventTrigger(
        job_name="{job_name}", window_size_ms={window_ms}, poll_interval={poll_interval}))],
)

with DAG(dag_id="{dag_id}", schedule=[CLOSED_WINDOWS], start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         catchup=False, is_paused_upon_creation=False, tags=["airflow-rtml", "test"]):

    @task
    def read_window(triggering_asset_events=None) -> dict:
        # Exactly one event per run here: the test closes one window at a time. Windows closing within one
        # scheduler loop would share a run, so a real consumer iterates over the events.
        (event,) = triggering_asset_events[CLOSED_WINDOWS]
        return event.extra["payload"]

    read_window()
'''


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()



class WatcherDag:
    """The consumer DAG of one test run and the asset its watcher feeds, seen through Airflow's REST API."""

    def __init__(self, api: AirflowApi, dag_id: str, asset: str, since_iso: str):
        self.api, self.dag_id, self.asset, self.since_iso = api, dag_id, asset, since_iso

    def asset_record(self) -> dict | None:
        assets = self.api.c.get("/assets", params={"name_pattern": self.asset}).json().get("assets", [])
        return next((a for a in assets if a["name"] == self.asset), None)

    def watchers(self) -> list[dict]:
        return (self.asset_record() or {}).get("watchers", [])

    def _get_events(self, path: str, params: dict | None = None) -> list[dict]:
        """Asset events, oldest first. Airflow 3.3.2 answers with a 500 while an event's run is still queued
        (its ``DagRunAssetReference.start_date`` may not be None): retry until that run has started."""
        def attempt():
            resp = self.api.c.get(path, params=params)
            return resp.json() if resp.status_code == 200 else None

        body = wait_for(f"a valid answer of {path}", attempt, 30)
        return sorted(body["asset_events"], key=lambda e: e["id"])

    def events(self) -> list[dict]:
        return self._get_events("/assets/events", {"asset_id": self.asset_record()["id"],
                                                   "timestamp_gte": self.since_iso, "limit": 100})

    def runs(self) -> list[dict]:
        runs = self.api.c.get(f"/dags/{self.dag_id}/dagRuns", params={"limit": 100}).json()["dag_runs"]
        return sorted(runs, key=lambda r: r["run_after"])

    def finished_runs(self) -> list[dict] | None:
        runs = self.runs()
        return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else None

    def upstream_events(self, run_id: str) -> list[dict]:
        return self._get_events(f"/dags/{self.dag_id}/dagRuns/{run_id}/upstreamAssetEvents")

    def returned(self, run_id: str) -> dict:
        resp = self.api.c.get(f"/dags/{self.dag_id}/dagRuns/{run_id}/taskInstances/read_window/xcomEntries/"
                              "return_value", params={"deserialize": True})
        assert resp.status_code == 200, resp.text
        return resp.json()["value"]

    def cursor(self) -> dict:
        """The trigger's entry in the asset's state store."""
        key = FlinkWindowEventTrigger.CURSOR_KEY
        resp = self.api.c.get(f"/assets/{self.asset_record()['id']}/state-store/{key}")
        assert resp.status_code == 200, f"no {key} in the asset's state store: {resp.text}"
        return resp.json()

    def reparse(self) -> None:
        token = self.api.c.get(f"/dags/{self.dag_id}").json()["file_token"]
        assert self.api.c.put(f"/parseDagFile/{token}").status_code == 201


@pytest.fixture
def watcher_dag(stack):
    """Write the consumer DAG file; after the test, unregister its watcher and remove the DAG.

    Order matters: Airflow drops an asset's watcher trigger only when it parses the asset's file and finds the
    scheduled DAG paused; a DAG file deleted while unpaused would leave its trigger polling forever."""
    suffix = uuid.uuid4().hex[:8]
    dag_id, asset = f"rtml_test_window_watcher_{suffix}", f"rtml_test_closed_windows_{suffix}"
    path = stack.cfg.dags_folder / f"{dag_id}.py"
    api = AirflowApi(stack.cfg.airflow_url)
    holder: dict = {}

    def write(job_name: str) -> WatcherDag:
        holder["since"] = _now_iso()
        path.write_text(DAG_FILE.format(asset=asset, dag_id=dag_id, job_name=job_name, window_ms=MINUTE,
                                        poll_interval=POLL_INTERVAL))
        api.wait_parsed((dag_id,), timeout=120)
        return WatcherDag(api, dag_id, asset, holder["since"])

    yield write

    try:
        if path.exists() and api.c.get(f"/dags/{dag_id}").status_code == 200:
            dag = WatcherDag(api, dag_id, asset, holder["since"])
            api.pause(dag_id, True)
            dag.reparse()
            wait_for("the watcher to be unregistered after pausing its DAG", lambda: not dag.watchers(), 90)
    finally:
        path.unlink(missing_ok=True)
        api.c.delete(f"/dags/{dag_id}")
        api.c.close()


@pytest.mark.timeout(300)
def test_asset_watcher_fires_once_per_closed_window_in_the_real_triggerer(stack, hook, watcher_dag):
    job = start_event_time_job(stack)
    try:
        base = (int(time.time() * 1000) // MINUTE) * MINUTE
        windows = [Window(base + i * MINUTE, base + (i + 1) * MINUTE) for i in range(3)]
        job.produce(base + 5)  # the stream's first progress lies in window 0: the watcher starts there
        assert job.wait_progress(hook, base + 5) == base + 5, "the Flink job did not report its first watermark"

        dag = watcher_dag(job.name)
        watchers = wait_for("the asset watcher to be registered (the DAG is unpaused on creation)",
                             dag.watchers, 60)
        assert [w["name"] for w in watchers] == ["closed_minutes"], watchers

        for i, window in enumerate(windows):
            job.produce(window.end_ms - 2)  # one millisecond short of closed: nothing fires
            assert job.wait_progress(hook, window.end_ms - 2) == window.end_ms - 2
            time.sleep(HOLD)
            assert len(dag.events()) == i, f"window {i} fired before its boundary: {dag.events()}"

            job.produce(window.end_ms - 1)  # closes window i (progress >= end - 1)
            wait_for(f"the asset event of window {i}", lambda: len(dag.events()) > i, 60)
            wait_for(f"the consumer run of window {i}", lambda: len(dag.runs()) > i, 60)
            time.sleep(HOLD)  # the window stays closed for several polls: no second event, no second run
            assert len(dag.events()) == i + 1, f"window {i} fired more than once: {dag.events()}"

        time.sleep(2 * HOLD)  # anything duplicated would show up by now
        events = dag.events()
        payloads = [e["extra"]["payload"] for e in events]
        assert [e["extra"]["from_trigger"] for e in events] == [True] * 3
        assert payloads == [
            {"stream": job.name, "job_id": job.job_id, "window_start_ms": w.start_ms, "window_end_ms": w.end_ms,
             "window_start": w.to_dict()["start"], "window_end": w.to_dict()["end"], "progress_ms": w.end_ms - 1,
             "watermark_ms": w.end_ms - 1}  # watermark_ms: the pre-issue-10 name of progress_ms, kept
            for w in windows
        ], payloads
        cursor = dag.cursor()  # where a restarted trigger resumes: after the last window it fired
        assert (cursor["value"], cursor["last_updated_by"]["kind"]) == (windows[-1].end_ms, "watcher"), cursor

        runs = wait_for("the consumer runs to finish", dag.finished_runs, 120, 2)
        assert [r["state"] for r in runs] == ["success"] * 3, [(r["dag_run_id"], r["state"]) for r in runs]
        assert [r["run_type"] for r in runs] == ["asset_triggered"] * 3
        for run, event, payload in zip(runs, events, payloads):
            assert [e["id"] for e in dag.upstream_events(run["dag_run_id"])] == [event["id"]]
            assert dag.returned(run["dag_run_id"]) == payload  # the task read its window from the event
    finally:
        cancel_jobs_named(hook, job.name)
