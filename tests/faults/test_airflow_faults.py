"""Two triggerers on PostgreSQL, one killed by PID (SIGKILL) while it holds deferred watermark waits.

Airflow's triggerers share the ``trigger`` table: a triggerer whose heartbeat is older than
``[triggerer] triggerer_health_check_threshold`` (30 s) loses its triggers to a live one. The test defers six
waits on one Flink job, kills the triggerer holding them, and checks that a live triggerer takes them over, that
nothing runs downstream before the crossing, and that each wait's downstream task runs exactly once after it.
Needs the stack on PostgreSQL (``rtml local up --db postgres``, the default): SQLite cannot serve two triggerers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from event_time import start_event_time_job
from support import cancel_jobs_named, wait_for

from airflow_rtml.local.stack import MARKER, PostgresServer, airflow_env, session_of

DAG_ID = "bench_signal_latency_rtml"  # StreamWatermarkSensor (deferrable) >> downstream
MINUTE = 60_000
WAITS = 6
SECOND_TRIGGERER_LOG_PORT = 8795


def _holders(db: PostgresServer, runs: list[str]) -> dict[int | None, int]:
    """Triggerer job id → how many of ``runs``' deferred waits it holds."""
    with db._connect(db.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT t.triggerer_id, count(*) FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
                    "WHERE ti.dag_id = %s AND ti.run_id = ANY(%s) GROUP BY t.triggerer_id", (DAG_ID, runs))
        return dict(cur.fetchall())


def _triggerer_jobs(db: PostgresServer) -> list[int]:
    """Live triggerer job ids, oldest first."""
    with db._connect(db.database) as conn, conn.cursor() as cur:
        # A SIGKILLed triggerer's row stays 'running': only a recent heartbeat counts as alive.
        cur.execute("SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running' "
                    "AND latest_heartbeat > now() - interval '20 seconds' ORDER BY start_date")
        return [row[0] for row in cur.fetchall()]


def _start_second_triggerer(stack) -> subprocess.Popen:
    env = {**os.environ, **airflow_env(stack.cfg), MARKER: str(stack.cfg.home),
           "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(SECOND_TRIGGERER_LOG_PORT)}
    log = (stack.cfg.log_dir / "airflow-triggerer-2.log").open("ab")
    return subprocess.Popen([str(Path(sys.executable).with_name("airflow")), "triggerer"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                            cwd=str(stack.cfg.home))


def _stop_all(procs: list[psutil.Process]) -> None:
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=30)
    for p in alive:
        p.kill()


@pytest.mark.timeout(900)
def test_two_triggerers_one_killed_while_holding_waits(stack, hook, fault_report):
    if stack.cfg.airflow_db != "postgres":
        pytest.fail("this fault needs Airflow on PostgreSQL (two triggerers): rtml local up --db postgres")
    db = stack.service("postgres")
    client = httpx.Client(base_url=f"{stack.cfg.airflow_url}/api/v2", timeout=30)
    job = start_event_time_job(stack, checkpoint_interval="5s")
    second = psutil.Process(_start_second_triggerer(stack).pid)
    runs: list[str] = []
    stats: dict = {}
    early = duplicated = lost = 0
    try:
        wait_for("two running triggerers", lambda: len(_triggerer_jobs(db)) >= 2, 120, 1)
        base = (int(time.time() * 1000) // MINUTE) * MINUTE
        job.produce(base)
        target = base + 10 * MINUTE
        assert client.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200
        for i in range(WAITS):
            r = client.post(f"/dags/{DAG_ID}/dagRuns", json={
                "dag_run_id": f"fault-2trig-{time.time_ns()}-{i}", "logical_date": None,
                "conf": {"job_name": job.name, "target_ms": target}})
            assert r.status_code == 200, r.text
            runs.append(r.json()["dag_run_id"])

        def ti(run: str, task: str) -> dict:
            return client.get(f"/dags/{DAG_ID}/dagRuns/{run}/taskInstances/{task}").json()

        wait_for("every wait deferred and held by a triggerer",
                 lambda: all(ti(r, "wait").get("state") == "deferred" for r in runs)
                 and sum(n for t, n in _holders(db, runs).items() if t is not None) == WAITS, 180, 1)
        holders = _holders(db, runs)
        stats["held_before"] = {str(k): v for k, v in holders.items()}
        victim_job = max(holders, key=lambda k: holders[k] if k is not None else -1)
        jobs = _triggerer_jobs(db)
        # The newest running triggerer job is the second process; any older one is the stack's own.
        victim = second if victim_job == jobs[-1] else stack.process_of(stack.service("airflow-triggerer"))
        stats["killed"] = "the second triggerer" if victim is second else "the stack's triggerer"
        killed = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        # Waits held by a dead triggerer move to a live one after the health-check threshold (30 s).
        wait_for("the waits to move to a live triggerer",
                 lambda: victim_job not in _holders(db, runs) and
                 sum(n for t, n in _holders(db, runs).items() if t is not None) == WAITS, 240, 2)
        stats["moved_after_s"] = round(time.monotonic() - killed, 1)
        stats["held_after"] = {str(k): v for k, v in _holders(db, runs).items()}
        early += sum(1 for r in runs if ti(r, "downstream").get("state") in ("queued", "running", "success"))
        job.produce(target - 1)  # the crossing
        wait_for("every downstream task to succeed",
                 lambda: all(ti(r, "downstream").get("state") == "success" for r in runs), 240, 1)
        lost = sum(1 for r in runs if ti(r, "downstream").get("state") != "success")
        duplicated = sum(max(0, ti(r, "downstream").get("try_number", 1) - 1) for r in runs)
        fault_report("Two triggerers on PostgreSQL; the one holding the waits killed (SIGKILL)",
                     f"{WAITS} deferred waits move to a live triggerer; no downstream before the crossing; each "
                     "downstream task runs once after it", lost=lost, duplicated=duplicated, early=early, **stats)
    finally:
        client.patch(f"/dags/{DAG_ID}", json={"is_paused": True})
        for r in runs:
            if client.get(f"/dags/{DAG_ID}/dagRuns/{r}").json().get("state") in ("running", "queued"):
                client.patch(f"/dags/{DAG_ID}/dagRuns/{r}", json={"state": "failed"})
        leftovers = session_of(second.pid)  # the second triggerer and its log server (its own session)
        if leftovers:
            _stop_all(leftovers)
        cancel_jobs_named(hook, job.name)
        stack.up(install=False)  # the stack's triggerer is back (the supervisor restarts it if it was killed)
        client.close()
