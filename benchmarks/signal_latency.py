"""Signal latency: watermark crossing → downstream task running, in the real local Airflow.

For each crossing a DAG run waits (``dags/benchmarks/signal_latency.py``) for a Flink job's progress to reach
a target; the benchmark then produces the one Kafka record whose event time moves the job's watermark to
``target - 1`` (the crossing) and measures until the downstream task's ``start_date``. Ours
(``StreamWatermarkSensor``, deferrable, 0.5 s poll, Flink metrics refreshed every 1 s) and the peer a user
would write today (reschedule-mode ``PythonSensor``, default 60 s poke interval) run side by side on the same
job, the same stack and the same machine.

Usage: ``.venv/bin/python benchmarks/signal_latency.py [--crossings 20] [--reporter-crossings 20] [--peer-crossings 6]
[--out signal_latency.json]`` (brings the local stack up if needed, on the metadata DB it was last started with;
leaves it up). Writes ``benchmarks/results/<out>``. The scheduler's idle sleep is Airflow's
``AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME`` as exported when the stack was started (default 1 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the event-time job helper shared with the tests

import support  # noqa: E402
from event_time import start_event_time_job  # noqa: E402

from airflow_rtml.hooks.flink import FlinkRestHook  # noqa: E402
from airflow_rtml.local.stack import LocalStack  # noqa: E402

MINUTE = 60_000
OURS, PEER = "bench_signal_latency_rtml", "bench_signal_latency_peer"
OURS_REPORTER = "bench_signal_latency_rtml_reporter"  # the same sensor on connection flink_reporter


def log(msg: str) -> None:
    print(f"[signal-latency {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_for(what: str, check, timeout: float, interval: float = 0.2):
    return support.wait_for(what, check, timeout, interval)


def ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


class Airflow:
    def __init__(self, url: str):
        self.c = httpx.Client(base_url=f"{url}/api/v2", timeout=30)

    def trigger(self, dag: str, conf: dict) -> str:
        run_id = f"bench-{time.time_ns()}"
        r = self.c.post(f"/dags/{dag}/dagRuns", json={"dag_run_id": run_id, "logical_date": None, "conf": conf})
        r.raise_for_status()
        return run_id

    def ti(self, dag: str, run: str, task: str) -> dict:
        return self.c.get(f"/dags/{dag}/dagRuns/{run}/taskInstances/{task}").json()


def pct(values: list[float], q: float) -> float | None:
    """The q-th percentile (inclusive method); None for no values (e.g. ``--crossings 0``)."""
    if not values:
        return None
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def summary(values: list[float]) -> dict | None:
    """p50/p95/min/max of the samples, or None when that part of the run was skipped."""
    if not values:
        return None
    return {"n": len(values), "p50_s": round(pct(values, 50), 2), "p95_s": round(pct(values, 95), 2),
            "min_s": round(min(values), 2), "max_s": round(max(values), 2)}


def scheduler_idle_sleep(stack: LocalStack) -> float:
    """The running scheduler's ``[scheduler] scheduler_idle_sleep_time`` (its environment; Airflow's default 1 s)."""
    proc = stack.process_of(stack.service("airflow-scheduler"))
    env = proc.environ() if proc is not None else {}
    return float(env.get("AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME", "1"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crossings", type=int, default=20)
    ap.add_argument("--peer-crossings", type=int, default=6)
    ap.add_argument("--reporter-crossings", type=int, default=20,
                    help="crossings for ours on the TaskManager-reporter watermark source (0: skip)")
    ap.add_argument("--out", default="signal_latency.json",
                    help="result file under benchmarks/results/ (e.g. signal_latency.postgres.json for a run on "
                         "`rtml local up --db postgres`)")
    args = ap.parse_args()

    stack = LocalStack(progress=log)
    stack.up()
    os.environ["AIRFLOW_CONN_FLINK_DEFAULT"] = f"flink-rest://127.0.0.1:{stack.cfg.ports.flink_rest}"
    os.environ["AIRFLOW_CONN_FLINK_SQL_GATEWAY_DEFAULT"] = f"flink-sql-gateway://127.0.0.1:{stack.cfg.ports.flink_sql_gateway}"
    hook = FlinkRestHook()
    af = Airflow(stack.cfg.airflow_url)
    wait_for("the benchmark DAGs to be parsed",
             lambda: all(af.c.get(f"/dags/{d}").status_code == 200 for d in (OURS, OURS_REPORTER, PEER)), 120, 2)
    job = start_event_time_job(stack, checkpoint_interval="10s")
    log(f"event-time job {job.name} ({job.job_id}) running")
    base = (int(time.time() * 1000) // MINUTE) * MINUTE
    job.produce(base)
    load_start = os.getloadavg()
    ours: list[float] = []
    ours_reporter: list[float] = []
    peer: list[float] = []
    try:
        for dag in (OURS, OURS_REPORTER, PEER):
            af.c.patch(f"/dags/{dag}", json={"is_paused": False}).raise_for_status()
        n = 0
        for dag, samples, count in ((OURS, ours, args.crossings), (OURS_REPORTER, ours_reporter,
                                                                     args.reporter_crossings)):
            for i in range(count):
                n += 1
                target = base + n * MINUTE
                run = af.trigger(dag, {"job_name": job.name, "target_ms": target})
                wait_for("the sensor to defer", lambda r=run, d=dag: af.ti(d, r, "wait").get("state") == "deferred",
                         120)
                time.sleep(1.5)  # the trigger is polling
                t0 = time.time()
                job.produce(target - 1)
                start = wait_for("downstream to start",
                                 lambda r=run, d=dag: ts(af.ti(d, r, "downstream").get("start_date")), 120, 0.1)
                samples.append(start - t0)
                log(f"{dag} {i + 1:2d}/{count}: crossing → downstream running {start - t0:5.2f}s")

        targets = [base + (n + 1 + k) * MINUTE for k in range(args.peer_crossings)]
        runs = [af.trigger(PEER, {"job_name": job.name, "target_ms": t}) for t in targets]
        wait_for("the peer sensors to poke once",
                 lambda: all(af.ti(PEER, r, "wait").get("state") == "up_for_reschedule" for r in runs), 180, 1)
        crossed: dict[str, float] = {}
        for run, target in zip(runs, targets, strict=True):
            crossed[run] = time.time()
            job.produce(target - 1)
            time.sleep(60 / args.peer_crossings)  # crossings spread over one poke interval
        for run in runs:
            start = wait_for("peer downstream to start",
                             lambda r=run: ts(af.ti(PEER, r, "downstream").get("start_date")), 240, 1)
            peer.append(start - crossed[run])
            log(f"peer: crossing → downstream running {start - crossed[run]:5.2f}s")
    finally:
        for dag in (OURS, OURS_REPORTER, PEER):
            af.c.patch(f"/dags/{dag}", json={"is_paused": True})
        hook.cancel_job(job.job_id)

    result = {
        "benchmark": "signal_latency",
        "what": "watermark crossing (Kafka record produced) → downstream task start_date, real local Airflow",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cores": psutil.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": platform.python_version(), "loadavg_1m_start": round(load_start[0], 2),
                    "loadavg_1m_end": round(os.getloadavg()[0], 2)},
        "settings": {"flink_metrics_refresh_s": 1, "ours_poll_interval_s": 0.5, "peer_poke_interval_s": 60,
                     "executor": "LocalExecutor", "database": stack.cfg.airflow_db,
                     "scheduler_idle_sleep_time_s": scheduler_idle_sleep(stack)},
        "ours_StreamWatermarkSensor_deferrable": summary(ours),
        "ours_reporter_source": summary(ours_reporter),
        "peer_PythonSensor_reschedule_60s": summary(peer),
        "samples_s": {"ours": [round(v, 2) for v in ours], "ours_reporter": [round(v, 2) for v in ours_reporter],
                      "peer": [round(v, 2) for v in peer]},
    }
    out = ROOT / "benchmarks" / "results" / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"ours {result['ours_StreamWatermarkSensor_deferrable']}; reporter source {result['ours_reporter_source']}; "
        f"peer {result['peer_PythonSensor_reschedule_60s']} → {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
