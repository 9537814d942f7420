"""N deferred watermark waits in the real local triggerer, on one real Flink job: how they get there, side by side.

Two ways a DAG author gets N waits on one stream, both measured in the same stack:

- ``worker-first`` (today's default): N mapped ``StreamWatermarkSensor`` tasks (``deferrable=True``,
  ``dags/benchmarks/real_waits.py``); each starts on a worker slot, takes its one look, then defers;
- ``from-trigger``: N ``StreamWatermarkSensor(start_from_trigger=True)`` tasks in one DAG (a file this script
  writes as ``dags/rtml_bench_from_trigger_<N>.py`` and removes again); the scheduler defers each straight into the
  triggerer. Not mapped: Airflow 3.3 hands a mapped task's trigger none of its expanded arguments.

For each: the time from triggering the run until all N are deferred, the triggerer process (RSS added while all N
wait, CPU over a 30 s window, "async thread was blocked" lines in its log), then the time from moving the job's
watermark past the target until all N tasks succeeded (every wait resumes on a worker to return its result).

Usage: ``.venv/bin/python benchmarks/real_triggerer_waits.py [--n 300 1000] [--paths worker-first from-trigger]``;
writes ``benchmarks/results/real_triggerer_waits.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from event_time import start_event_time_job  # noqa: E402

from airflow_rtml.hooks.flink import FlinkRestHook  # noqa: E402
from airflow_rtml.local.stack import LocalStack  # noqa: E402

MAPPED_DAG = "bench_real_waits"
FROM_TRIGGER_DAG = "rtml_bench_from_trigger"
HOUR_MS = 3_600_000

FROM_TRIGGER_FILE = '''"""Written by benchmarks/real_triggerer_waits.py for one run ({n} waits that start in the triggerer)."""
import pendulum
from airflow.sdk import DAG

from airflow_rtml.sensors.watermark import StreamWatermarkSensor

with DAG(dag_id="{dag}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
         max_active_tasks=2000, tags=["airflow-rtml", "benchmark"]):
    for i in range({n}):
        StreamWatermarkSensor(task_id=f"wait_{{i}}", job_name="{{{{ dag_run.conf['job_name'] }}}}",
                              target="{{{{ dag_run.conf['target_ms'] }}}}", start_from_trigger=True, poke_interval=5)
'''


def log(msg: str) -> None:
    print(f"[real-waits {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def triggerer(stack: LocalStack) -> psutil.Process:
    proc = stack.process_of(stack.service("airflow-triggerer"))
    if proc is None:
        raise RuntimeError("no triggerer process found")
    return proc


def states(c: httpx.Client, dag: str, run_id: str, mapped: bool) -> dict[str, int]:
    """States of the run's wait task instances (paged: the API returns at most 100 per call)."""
    path = f"/dags/{dag}/dagRuns/{run_id}/taskInstances" + ("/wait/listMapped" if mapped else "")
    out: dict[str, int] = {}
    offset = 0
    while True:
        page = c.get(path, params={"limit": 100, "offset": offset}).json().get("task_instances", [])
        for t in page:
            out[t["state"]] = out.get(t["state"], 0) + 1
        if len(page) < 100:
            return out
        offset += 100


def wait_parsed(c: httpx.Client, dag: str, tasks: int | None = None, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        r = c.get(f"/dags/{dag}/tasks")
        if r.status_code == 200 and (tasks is None or r.json().get("total_entries") == tasks):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dag} not parsed (with {tasks} tasks)")
        time.sleep(2)


def measure(stack: LocalStack, c: httpx.Client, path: str, n: int, base: int) -> dict:
    """One run of ``n`` waits on a fresh event-time job, the path's way."""
    mapped = path == "worker-first"
    # One DAG id per size: Airflow adds the tasks of a rewritten DAG file to a run of it that is still open.
    dag = MAPPED_DAG if mapped else f"{FROM_TRIGGER_DAG}_{n}"
    generated = stack.cfg.dags_folder / f"{FROM_TRIGGER_DAG}_{n}.py"
    if not mapped:
        generated.write_text(FROM_TRIGGER_FILE.format(n=n, dag=dag))
    run_id = None
    job = start_event_time_job(stack)
    try:
        wait_parsed(c, dag, None if mapped else n)
        job.produce(base)
        trig = triggerer(stack)
        rss_before = trig.memory_info().rss
        log_file = stack.service("airflow-triggerer").log_file
        blocked_before = log_file.read_text(errors="replace").count("thread was blocked")
        c.patch(f"/dags/{dag}", json={"is_paused": False}).raise_for_status()
        run_id = f"bench-{time.time_ns()}"
        c.post(f"/dags/{dag}/dagRuns", json={"dag_run_id": run_id, "logical_date": None,
                                             "conf": {"job_name": job.name, "target_ms": base + HOUR_MS, "n": n}}
               ).raise_for_status()
        t0 = time.monotonic()
        while (s := states(c, dag, run_id, mapped)).get("deferred", 0) < n:
            if time.monotonic() - t0 > 1800:
                raise TimeoutError(f"not all {n} waits deferred: {s}")
            time.sleep(1)
        all_deferred_s = time.monotonic() - t0
        log(f"{path}: all {n} waits deferred after {all_deferred_s:.1f}s; watching the triggerer for 30 s")
        cpu0, w0 = trig.cpu_times(), time.monotonic()
        rss = []
        for _ in range(6):
            time.sleep(5)
            rss.append(trig.memory_info().rss)
        cpu1, w1 = trig.cpu_times(), time.monotonic()
        cpu_pct = 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (w1 - w0)
        t_cross = time.monotonic()
        job.produce(base + HOUR_MS)
        while (s := states(c, dag, run_id, mapped)).get("success", 0) < n:
            if time.monotonic() - t_cross > 1800:
                raise TimeoutError(f"not all waits finished: {s}")
            if s.get("failed"):
                raise RuntimeError(f"waits failed: {s}")
            time.sleep(1)
        finish_s = time.monotonic() - t_cross
        log(f"{path}: crossing -> all {n} succeeded in {finish_s:.1f}s")
    finally:
        if run_id is not None and c.get(f"/dags/{dag}/dagRuns/{run_id}").json().get("state") == "running":
            c.patch(f"/dags/{dag}/dagRuns/{run_id}", json={"state": "failed"})  # an aborted run holds no waits
        c.patch(f"/dags/{dag}", json={"is_paused": True})
        FlinkRestHook().cancel_job(job.job_id)
        generated.unlink(missing_ok=True)
        # A run marked failed keeps its deferred task instances, and their triggers: 712 of an aborted 1,000-wait
        # run were still loaded by the next triggerer. Deleting the DAG removes them (a committed DAG file is
        # parsed again).
        c.delete(f"/dags/{dag}")
    return {"path": path, "n": n, "all_deferred_after_s": round(all_deferred_s, 1),
            "triggerer_rss_added_mb": round((sorted(rss)[len(rss) // 2] - rss_before) / 2**20, 1),
            "triggerer_cpu_pct": round(cpu_pct, 1),
            "blocked_loop_lines": log_file.read_text(errors="replace").count("thread was blocked") - blocked_before,
            "crossing_to_all_succeeded_s": round(finish_s, 1), "loadavg_1m_end": round(os.getloadavg()[0], 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[300, 1000])
    ap.add_argument("--paths", nargs="+", default=["worker-first", "from-trigger"],
                    choices=["worker-first", "from-trigger"])
    args = ap.parse_args()
    stack = LocalStack(progress=log)
    stack.up()
    os.environ["AIRFLOW_CONN_FLINK_DEFAULT"] = f"flink-rest://127.0.0.1:{stack.cfg.ports.flink_rest}"
    os.environ["AIRFLOW_CONN_FLINK_SQL_GATEWAY_DEFAULT"] = f"flink-sql-gateway://127.0.0.1:{stack.cfg.ports.flink_sql_gateway}"
    c = httpx.Client(base_url=f"{stack.cfg.airflow_url}/api/v2", timeout=60)
    runs = []
    base = 1_767_225_600_000
    for n in args.n:
        for path in args.paths:  # side by side, in the same stack, one after the other
            runs.append(measure(stack, c, path, n, base))
            base += 10 * HOUR_MS
    result = {"benchmark": "real_triggerer_waits", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "poll_interval_s": 5, "jobs": 1, "airflow_parallelism": 8, "runs": runs}
    for n in args.n:
        by = {r["path"]: r for r in runs if r["n"] == n}
        if {"worker-first", "from-trigger"} <= set(by):
            result.setdefault("all_deferred_speedup", {})[str(n)] = round(
                by["worker-first"]["all_deferred_after_s"] / max(by["from-trigger"]["all_deferred_after_s"], 0.1), 1)
    out = ROOT / "benchmarks" / "results" / "real_triggerer_waits.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
