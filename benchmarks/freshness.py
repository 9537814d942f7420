"""Freshness and throughput of the demo chain on the local stack.

1. **Freshness**: runs ``rtml demo`` for ``--hours`` event-time hours and reports, per hour, the time from the
   window's close (the watermark crossing as first observed by the commit-aware window sensor) to the model
   version being registered (the ``rtml_demo_model`` asset event), p50 / p95.
2. **Throughput**: the event rate the label-join job sustains on this machine: a backlog of ``--backlog-hours``
   event-time hours is produced first (unpaced), then the job is started and timed until its progress passes
   the backlog's end.

Usage: ``.venv/bin/python benchmarks/freshness.py [--hours 3] [--backlog-hours 5]``; writes
``benchmarks/results/freshness.json``. Brings the stack up if needed and leaves it as it found it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from event_time import create_topic  # noqa: E402

from airflow_rtml.demo.chain import JOB_CONF, Chain  # noqa: E402
from airflow_rtml.demo.run import _progress, run_demo  # noqa: E402
from airflow_rtml.demo.source import DemoConfig, run_source  # noqa: E402
from airflow_rtml.hooks.flink import FlinkRestHook  # noqa: E402
from airflow_rtml.local.stack import LocalStack  # noqa: E402
from airflow_rtml.operators.flink import FlinkSubmitJobOperator  # noqa: E402


def log(msg: str) -> None:
    print(f"[freshness {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def throughput(stack: LocalStack, backlog_hours: int) -> dict:
    tag = uuid.uuid4().hex[:6]
    chain = Chain(prefix=f"rtml.bench.{tag}", job_prefix=f"rtml-bench-{tag}", bootstrap=stack.cfg.kafka_bootstrap)
    for topic in chain.topics.values():
        create_topic(topic)
    cfg = replace(DemoConfig(), impressions_topic=chain.topics["impressions"], clicks_topic=chain.topics["clicks"])
    log(f"producing a backlog of {backlog_hours} event-time hours")
    ledgers = run_source(cfg, backlog_hours, bootstrap=chain.bootstrap, pace=False)
    records = sum(sum(led.impressions.values()) + sum(led.clicks.values()) + led.malformed + led.late
                  for led in ledgers)
    end_ms = cfg.start_ms + backlog_hours * 3_600_000
    os.environ["AIRFLOW_CONN_FLINK_DEFAULT"] = f"flink-rest://127.0.0.1:{stack.cfg.ports.flink_rest}"
    os.environ["AIRFLOW_CONN_FLINK_SQL_GATEWAY_DEFAULT"] = f"flink-sql-gateway://127.0.0.1:{stack.cfg.ports.flink_sql_gateway}"
    from support import ti_context

    name = chain.jobs["label_join"]
    result = FlinkSubmitJobOperator(
        task_id="bench", job_name=name, sql=chain.sql("label_join", ROOT / "dags" / "jobs" / "demo"),
        sql_jars=[str(stack.cfg.kafka_connector_jar)], flink_conf=JOB_CONF, deferrable=False, poll_interval=0.2,
    ).execute(ti_context())
    t0 = time.monotonic()
    target = end_ms - 3 * 60_000  # the backlog's last minutes (the watermark trails by the lateness)
    while (_progress(stack, name) or 0) < target:
        if time.monotonic() - t0 > 600:
            raise TimeoutError("the label join did not work off the backlog within 10 minutes")
        time.sleep(0.5)
    seconds = time.monotonic() - t0
    FlinkRestHook().cancel_job(result["job_id"])
    log(f"label join: {records} records in {seconds:.1f}s = {records / seconds:,.0f} records/s")
    return {"job": "label_join (interval join + dead-letter + late routing)", "records": records,
            "seconds": round(seconds, 1), "records_per_s": round(records / seconds)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=int, default=3)
    ap.add_argument("--backlog-hours", type=int, default=5)
    args = ap.parse_args()
    stack = LocalStack(progress=log)
    started = stack.up()
    load_start = os.getloadavg()[0]
    try:
        summary = run_demo(hours=args.hours, progress=log)
        fresh = list(summary["freshness_s"].values())
        tput = throughput(stack, args.backlog_hours)
    finally:
        if started:
            stack.down()
    result = {
        "benchmark": "freshness",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cores": psutil.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": platform.python_version(), "loadavg_1m_start": round(load_start, 2),
                    "loadavg_1m_end": round(os.getloadavg()[0], 2)},
        "settings": {"speedup": 60, "hours": args.hours, "window_sensor_poll_s": 1, "commit_aware": True,
                     "checkpoint_interval_s": 5, "flink_metrics_refresh_s": 1},
        "freshness_s": {"per_hour": summary["freshness_s"], "p50": round(statistics.median(fresh), 1),
                        "max": round(max(fresh), 1), "n": len(fresh)},
        "throughput": tput,
        "demo_summary": summary,
    }
    out = ROOT / "benchmarks" / "results" / "freshness.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"freshness p50 {result['freshness_s']['p50']}s max {result['freshness_s']['max']}s; "
        f"throughput {tput['records_per_s']:,} records/s → {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
