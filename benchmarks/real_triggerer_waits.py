"""N deferred watermark waits in the real local triggerer, on one real Flink job.

Starts an event-time job, triggers ``dags/benchmarks/real_waits.py`` with N mapped ``StreamWatermarkSensor``
tasks (deferrable, 5 s poll) waiting for a target the job has not reached, measures the triggerer process
(RSS before vs. while all N wait, CPU over a 60 s window, "async thread was blocked" lines in its log), then
moves the job's watermark past the target and times until all N tasks succeeded.

Usage: ``.venv/bin/python benchmarks/real_triggerer_waits.py [--n 100]``; writes
``benchmarks/results/real_triggerer_waits.json``.
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

DAG = "bench_real_waits"


def log(msg: str) -> None:
    print(f"[real-waits {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def triggerer(stack: LocalStack) -> psutil.Process:
    for p in stack.processes_matching("airflow", "triggerer"):
        return p
    raise RuntimeError("no triggerer process found")


def states(c: httpx.Client, run_id: str) -> dict[str, int]:
    """States of the mapped ``wait`` instances (paged: the API returns at most 100 per call)."""
    out: dict[str, int] = {}
    offset = 0
    while True:
        page = c.get(f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/wait/listMapped",
                     params={"limit": 100, "offset": offset}).json().get("task_instances", [])
        for t in page:
            out[t["state"]] = out.get(t["state"], 0) + 1
        if len(page) < 100:
            return out
        offset += 100


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args()
    stack = LocalStack(progress=log)
    stack.up()
    os.environ["AIRFLOW_CONN_FLINK_DEFAULT"] = f"flink-rest://127.0.0.1:{stack.cfg.ports.flink_rest}"
    os.environ["AIRFLOW_CONN_FLINK_SQL_GATEWAY_DEFAULT"] = f"flink-sql-gateway://127.0.0.1:{stack.cfg.ports.flink_sql_gateway}"
    c = httpx.Client(base_url=f"{stack.cfg.airflow_url}/api/v2", timeout=30)
    deadline = time.monotonic() + 120
    while c.get(f"/dags/{DAG}").status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{DAG} not parsed")
        time.sleep(2)
    job = start_event_time_job(stack)
    base = 1_767_225_600_000
    job.produce(base)
    trig = triggerer(stack)
    rss_before = trig.memory_info().rss
    log_file = stack.cfg.log_dir / "airflow.log"
    blocked_before = log_file.read_text(errors="replace").count("thread was blocked")
    c.patch(f"/dags/{DAG}", json={"is_paused": False}).raise_for_status()
    run_id = f"bench-{time.time_ns()}"
    c.post(f"/dags/{DAG}/dagRuns", json={"dag_run_id": run_id, "logical_date": None,
                                          "conf": {"job_name": job.name, "target_ms": base + 3_600_000,
                                                   "n": args.n}}).raise_for_status()
    t0 = time.monotonic()
    try:
        while (s := states(c, run_id)).get("deferred", 0) < args.n:
            if time.monotonic() - t0 > 900:
                raise TimeoutError(f"not all {args.n} waits deferred: {s}")
            time.sleep(3)
        all_deferred_s = time.monotonic() - t0
        log(f"all {args.n} waits deferred after {all_deferred_s:.0f}s; measuring the triggerer for 60 s")
        cpu0, w0 = trig.cpu_times(), time.monotonic()
        rss = []
        for _ in range(12):
            time.sleep(5)
            rss.append(trig.memory_info().rss)
        cpu1, w1 = trig.cpu_times(), time.monotonic()
        cpu_pct = 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (w1 - w0)
        t_cross = time.monotonic()
        job.produce(base + 3_600_000)
        while (s := states(c, run_id)).get("success", 0) < args.n:
            if time.monotonic() - t_cross > 300:
                raise TimeoutError(f"not all waits finished: {s}")
            time.sleep(1)
        finish_s = time.monotonic() - t_cross
    finally:
        c.patch(f"/dags/{DAG}", json={"is_paused": True})
        FlinkRestHook().cancel_job(job.job_id)
    blocked = log_file.read_text(errors="replace").count("thread was blocked") - blocked_before
    rss_added = sorted(rss)[len(rss) // 2] - rss_before
    result = {"benchmark": "real_triggerer_waits", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "n": args.n,
              "poll_interval_s": 5, "jobs": 1, "all_deferred_after_s": round(all_deferred_s, 1),
              "triggerer_rss_added_mb": round(rss_added / 2**20, 1), "triggerer_cpu_pct": round(cpu_pct, 1),
              "blocked_loop_lines": blocked, "crossing_to_all_succeeded_s": round(finish_s, 1),
              "loadavg_1m_end": round(os.getloadavg()[0], 2)}
    out = ROOT / "benchmarks" / "results" / "real_triggerer_waits.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
