"""Benchmark DAG for benchmarks/real_triggerer_waits.py: N deferred watermark waits on one real Flink job.

Paused unless the benchmark runs it. ``conf``: ``job_name``, ``target_ms``, ``n``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_rtml.sensors.watermark import StreamWatermarkSensor

with DAG(dag_id="bench_real_waits", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         catchup=False, max_active_tasks=2000, tags=["airflow-rtml", "benchmark"]):

    @task
    def targets(dag_run=None) -> list[int]:
        return [int(dag_run.conf["target_ms"])] * int(dag_run.conf["n"])

    StreamWatermarkSensor.partial(
        task_id="wait", job_name="{{ dag_run.conf['job_name'] }}", deferrable=True, poke_interval=5,
    ).expand(target=targets())
