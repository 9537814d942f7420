"""The README's example DAG runs as copied (issue 17), in the real local Airflow on the real Flink and Kafka.

``dags/examples/snippets/hourly_training.py`` and its Flink job ``jobs/training_samples.sql`` are copied into the
stack's dags folder with three names made unique (the DAG id, the Flink job name, the Kafka topic): nothing else
is changed. Unpaused, the DAG is scheduled as it would be in production (``catchup=False``: one run, for the hour
that ended last on the wall clock). The test then drives the stream's event time through that hour:

- the submit task starts the SQL job through the SQL Gateway (the Kafka connector from the stack's variable,
  the broker from the ``kafka_default`` connection rendered into the SQL file);
- the hour-complete wait defers and stays deferred while the stream's watermark is short of the hour's end
  (never early);
- once records past the hour's end (+ the job's 5 s out-of-orderness) arrive and a checkpoint commits them, the
  wait succeeds with the documented dict, and ``train`` receives the hour as its data interval.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer
from event_time import BOOTSTRAP, create_topic
from support import cancel_jobs_named, wait_for

from airflow_rtml.local.airflow_api import AirflowApi

REPO = Path(__file__).resolve().parents[2]
SNIPPET = REPO / "dags" / "examples" / "snippets" / "hourly_training.py"
JOB_SQL = SNIPPET.parent / "jobs" / "training_samples.sql"
HOLD = 10  # seconds the wait must stay deferred once the stream is just short of the hour's end


def _copy(text: str, renames: dict[str, str], what: str) -> str:
    for old, new in renames.items():
        assert old in text, f"{what} no longer contains {old!r}: update this test's renames"
        text = text.replace(old, new)
    return text


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.mark.timeout(900)
def test_the_readme_dag_runs_as_copied_on_the_local_stack(stack, hook):
    # Not within 4 minutes of an hour boundary: the scheduler would create a second run mid-test.
    if (minute := datetime.now().minute) >= 56:
        time.sleep((60 - minute) * 60 + 30)
    sfx = uuid.uuid4().hex[:8]
    dag_id, job_name, topic = f"rtml_test_hourly_training_{sfx}", f"rtml-snip-{sfx}", f"rtml-snip-{sfx}-impressions"
    folder = stack.cfg.dags_folder / f"rtml_test_snippet_{sfx}"
    (folder / "jobs").mkdir(parents=True)
    (folder / "jobs" / JOB_SQL.name).write_text(
        _copy(JOB_SQL.read_text(), {"training-samples": job_name, "training-impressions": topic}, JOB_SQL.name))
    create_topic(topic)
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 0})

    def produce(ts: int) -> None:
        producer.produce(topic, json.dumps({"ts": ts, "user_id": "u1", "item_id": "i1"}).encode())
        producer.flush(10)

    api = AirflowApi(stack.cfg.airflow_url)
    try:
        (folder / SNIPPET.name).write_text(
            _copy(SNIPPET.read_text(), {'"hourly_training"': f'"{dag_id}"', '"training-samples"': f'"{job_name}"'},
                  SNIPPET.name))
        api.wait_parsed((dag_id,), timeout=180)
        api.pause(dag_id, False)
        run = wait_for("the scheduled run of the last hour", lambda: next(iter(
            api.c.get(f"/dags/{dag_id}/dagRuns").json().get("dag_runs", [])), None), 120, 2)
        assert run["run_type"] == "scheduled", run
        run_id, start_ms, end_ms = run["dag_run_id"], _ms(run["data_interval_start"]), _ms(run["data_interval_end"])
        assert end_ms - start_ms == 3_600_000, run  # CronDataIntervalTimetable: the hour that ended, not empty

        def ti(task_id: str) -> dict:
            return api.c.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}").json()

        produce(start_ms + 60_000)
        produce(end_ms - 10_000)  # watermark = end - 15 s: short of the hour's end
        wait_for("the hour-complete wait to defer", lambda: ti("samples_hour_complete")["state"] == "deferred", 240)
        time.sleep(HOLD)
        assert ti("samples_hour_complete")["state"] == "deferred", "the wait ended before the hour was complete"
        assert api.run_state(dag_id, run_id) == "running"

        produce(end_ms + 10_000)  # watermark = end + 5 s: the hour is complete once a checkpoint commits it
        state = wait_for("the run to finish", lambda: (s := api.run_state(dag_id, run_id)) in ("success", "failed")
                         and s, 240)
        tis = api.c.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        assert state == "success", [(t["task_id"], t["state"]) for t in tis]

        result = api.xcom(dag_id, run_id, "samples_hour_complete")
        assert isinstance(result, dict), result
        assert result["stream"] == job_name and result["threshold_ms"] == end_ms - 1, result
        assert result["progress_ms"] >= end_ms - 1 and result["checkpoint_id"] is not None, result
        trained = api.xcom(dag_id, run_id, "train")
        assert (_ms(trained["start"]), _ms(trained["end"])) == (start_ms, end_ms), trained
    finally:
        try:
            if api.c.get(f"/dags/{dag_id}").status_code == 200:
                api.pause(dag_id, True)
                api.stop_runs(dag_id)
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # first: a DAG deleted while its file exists comes back
            api.c.delete(f"/dags/{dag_id}")
            cancel_jobs_named(hook, job_name)
            api.c.close()
