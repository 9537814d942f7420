"""What Airflow 3.3's triggerer spends, in its event loop, to start each wait of a DAG with N waits.

A wait deferred from a worker (``deferrable=True``) reaches the triggerer as its trigger's kwargs: starting it
is building the trigger. A wait with ``start_from_trigger=True`` also carries the whole serialized DAG
(``RunTrigger.dag_data``), which the triggerer deserializes for *each* such wait to build the task's template
context (``TriggerRunner.create_runtime_ti`` → ``DagSerialization.from_dict``), synchronously in its loop. So
starting all N waits of one DAG costs O(N²) there. This script measures both paths exactly as the triggerer
runs them (the same Airflow calls, in-process, no stack needed), side by side, for DAGs of 10 to 1,000 waits.

    .venv/bin/python benchmarks/from_trigger_dag_cost.py [--sizes 10 100 300 1000] [--out results/....json]

Findings it explains: ``real_triggerer_waits.py`` with 1,000 waits in one DAG (start_from_trigger) — the
triggerer's loop "appears deadlocked" (> 30 s without a heartbeat), Airflow marks it unhealthy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build_dag(n: int, from_trigger: bool):
    import pendulum
    from airflow.sdk import DAG

    from airflow_rtml.sensors.watermark import StreamWatermarkSensor

    with DAG(dag_id=f"bench_{n}_{from_trigger}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             catchup=False) as dag:
        for i in range(n):
            StreamWatermarkSensor(task_id=f"wait_{i}", job_name="{{ dag_run.conf['job_name'] }}",
                                  target="{{ dag_run.conf['target_ms'] }}", poke_interval=5,
                                  **({"start_from_trigger": True} if from_trigger else {"deferrable": True}))
    return dag


def start_cost(n: int, from_trigger: bool, samples: int) -> dict:
    """Seconds the triggerer spends starting one wait of a DAG of ``n`` (median of ``samples``), and the bytes
    the supervisor ships to it per wait."""
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow_rtml.triggers.watermark import FlinkWatermarkTrigger

    dag = build_dag(n, from_trigger)
    data = DagSerialization.to_dict(dag)
    kwargs = {"threshold_ms": 1, "job_name": "j", "poll_interval": 5.0}
    times = []
    for i in range(samples):
        t0 = time.perf_counter()
        trigger = FlinkWatermarkTrigger(**kwargs)
        if from_trigger:  # what TriggerRunner.create_triggers does for a RunTrigger that carries dag_data
            task = DagSerialization.from_dict(data).get_task(f"wait_{i % n}")
            assert task.start_from_trigger
        times.append(time.perf_counter() - t0)
        del trigger
    per_wait = statistics.median(times)
    return {"n": n, "path": "start_from_trigger" if from_trigger else "deferrable", "per_wait_ms": round(per_wait * 1e3, 3),
            "all_n_s": round(per_wait * n, 2),
            "bytes_per_wait": len(json.dumps(data)) if from_trigger else len(json.dumps(kwargs))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 300, 1000])
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "from_trigger_dag_cost.json")
    args = ap.parse_args(argv)
    rows = []
    for n in args.sizes:
        for from_trigger in (False, True):
            row = start_cost(n, from_trigger, args.samples)
            rows.append(row)
            print(f"[dag-cost] N={n:5d} {row['path']:19s} {row['per_wait_ms']:9.3f} ms per wait, all N "
                  f"{row['all_n_s']:7.2f} s of the triggerer's loop, {row['bytes_per_wait']:,} bytes per wait",
                  flush=True)
    ratios = {str(n): round(next(r["per_wait_ms"] for r in rows if r["n"] == n and r["path"] == "start_from_trigger")
                            / max(next(r["per_wait_ms"] for r in rows if r["n"] == n and r["path"] == "deferrable"),
                                  1e-6), 1) for n in args.sizes}
    result = {"benchmark": "from_trigger_dag_cost", "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2),
                          "python": sys.version.split()[0]},
              "rows": rows, "from_trigger_vs_deferrable_per_wait": ratios}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[dag-cost] per-wait cost ratio start_from_trigger / deferrable: {ratios}; written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
