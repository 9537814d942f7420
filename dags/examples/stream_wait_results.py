"""Example: what a watermark wait hands downstream, on each path it can take.

Three waits on the Flink job named by the run's ``job_name`` param, each returning the same dict
(``StreamWatermarkSensor``'s ``WatermarkWaitResult``: ``stream``, ``job_id``, ``progress_ms``, ``threshold_ms``,
``checkpoint_id``, ``last_event_time_ms``):

- ``wait_in_triggerer`` for ``deferred_target_ms``: deferrable, so it waits in the triggerer;
- ``wait_on_worker`` for ``reached_target_ms``: ``deferrable=False``, an Airflow sensor poking on a worker;
- ``wait_for_run_after`` without ``target``: the run's data interval end, or for a manually triggered run (no
  logical date in Airflow 3, hence no data interval) the run's ``run_after``;
- ``wait_from_trigger`` for ``deferred_target_ms`` too, with ``start_from_trigger=True``: the scheduler defers it
  straight into the triggerer, which renders its templated fields; no worker slot is taken before the wait.

``use_results`` reads all three through XCom and fails unless each is a dict with the documented keys.
Trigger it with a conf such as ``{"job_name": "my-job", "deferred_target_ms": 1767265200000,
"reached_target_ms": 1767261600000}``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

from airflow_rtml.sensors.watermark import StreamWatermarkSensor

RESULT_KEYS = {"stream", "job_id", "progress_ms", "threshold_ms", "checkpoint_id", "last_event_time_ms"}

with DAG(
    dag_id="stream_wait_results",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"job_name": "rtml-example-events", "deferred_target_ms": 0, "reached_target_ms": 0},
    doc_md=__doc__,
    tags=["airflow-rtml", "example"],
):
    wait_in_triggerer = StreamWatermarkSensor(
        task_id="wait_in_triggerer",
        job_name="{{ params.job_name }}",
        target="{{ params.deferred_target_ms }}",
        deferrable=True,
        poke_interval=0.5,
        timeout=timedelta(minutes=10),
    )
    wait_on_worker = StreamWatermarkSensor(
        task_id="wait_on_worker",
        job_name="{{ params.job_name }}",
        target="{{ params.reached_target_ms }}",
        deferrable=False,
        poke_interval=0.5,
        timeout=600,
    )
    wait_for_run_after = StreamWatermarkSensor(
        task_id="wait_for_run_after",
        job_name="{{ params.job_name }}",
        deferrable=True,
        poke_interval=0.5,
        timeout=600,
    )
    wait_from_trigger = StreamWatermarkSensor(
        task_id="wait_from_trigger",
        job_name="{{ params.job_name }}",
        target="{{ params.deferred_target_ms }}",
        start_from_trigger=True,
        poke_interval=0.5,
        timeout=timedelta(minutes=10),
    )

    @task
    def use_results(in_triggerer, on_worker, for_run_after, from_trigger) -> dict:
        results = {"in_triggerer": in_triggerer, "on_worker": on_worker, "for_run_after": for_run_after,
                   "from_trigger": from_trigger}
        for name, result in results.items():
            if not isinstance(result, dict) or set(result) != RESULT_KEYS:
                raise TypeError(f"the {name} wait returned {type(result).__name__} {result!r}, not the documented dict")
        return {name: result["progress_ms"] for name, result in results.items()}

    use_results(wait_in_triggerer.output, wait_on_worker.output, wait_for_run_after.output, wait_from_trigger.output)
