"""Benchmark DAGs for benchmarks/signal_latency.py (paused unless the benchmark runs them).

Each waits until a Flink job's progress reaches ``conf.target_ms``, then runs ``downstream``: ours with the
deferrable ``StreamWatermarkSensor`` (on each watermark source); the peer as a user would write it today — a reschedule-mode
``PythonSensor`` (default 60 s interval) reading the watermark metric over REST.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import DAG, task

from airflow_rtml.sensors.watermark import StreamWatermarkSensor

ARGS = {"start_date": pendulum.datetime(2026, 1, 1, tz="UTC"), "schedule": None, "catchup": False,
        "max_active_runs": 50, "tags": ["airflow-rtml", "benchmark"]}


@task
def downstream() -> float:
    import time

    return time.time()


# Ours, once per watermark source: the JobManager's REST API, and the TaskManager's Prometheus reporter.
for dag_id, conn_id in (("bench_signal_latency_rtml", "flink_default"),
                        ("bench_signal_latency_rtml_reporter", "flink_reporter")):
    with DAG(dag_id=dag_id, **ARGS):
        StreamWatermarkSensor(
            task_id="wait", job_name="{{ dag_run.conf['job_name'] }}", target="{{ dag_run.conf['target_ms'] }}",
            deferrable=True, poke_interval=0.5, flink_conn_id=conn_id,
        ) >> downstream()


def _watermark_reached(job_name: str, target_ms: str) -> bool:
    import httpx

    base = "http://127.0.0.1:8081"
    jobs = [j for j in httpx.get(f"{base}/jobs/overview").json()["jobs"]
            if j["name"] == job_name and j["state"] == "RUNNING"]
    if not jobs:
        return False
    job_id = jobs[0]["jid"]
    vertex = httpx.get(f"{base}/jobs/{job_id}").json()["vertices"][-1]["id"]
    values = [float(m["value"]) for m in httpx.get(f"{base}/jobs/{job_id}/vertices/{vertex}/watermarks").json()]
    return bool(values) and min(values) >= int(target_ms) - 1


with DAG(dag_id="bench_signal_latency_peer", **ARGS):
    PythonSensor(
        task_id="wait", python_callable=_watermark_reached, mode="reschedule", poke_interval=60,
        op_args=["{{ dag_run.conf['job_name'] }}", "{{ dag_run.conf['target_ms'] }}"],
    ) >> downstream()
