"""A stop-with-savepoint whose worker died mid-way, then retried (issue 11): the retry completes the *same* Flink
savepoint operation, so the job is stopped once and exactly one savepoint exists.

The first try runs ``FlinkStopJobOperator.execute`` in a worker process of its own, which is SIGKILLed as soon as
the job leaves RUNNING (the stop request is in, the task has not recorded its result). The retry is the same task
instance (same dag, task, run, map index: what an Airflow retry is) in this process. Asked by ``job_name``, the
job is no longer active by then: before the fix the retry failed with ``FlinkJobNotFound``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support import TaskInstanceStub, cancel_jobs_named, ti_context, wait_for

from airflow_rtml.hooks.flink import JobState
from airflow_rtml.operators.flink import FlinkStopJobOperator, FlinkSubmitJobOperator

JOB = str(Path(__file__).parents[1] / "integration" / "jobs" / "streaming_sql_job.py")

_WORKER = """
import json, sys
from types import SimpleNamespace
from airflow_rtml.operators.flink import FlinkStopJobOperator
ids = json.loads(sys.argv[1])
ti = SimpleNamespace(**ids, xcoms={}, xcom_push=lambda key, value: None)
FlinkStopJobOperator(task_id=ids["task_id"], savepoint_dir=sys.argv[2], deferrable=False, poll_interval=5,
                     **json.loads(sys.argv[3])).execute({"ti": ti})
print("WORKER FINISHED", flush=True)
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("by", ["job_name", "job_id"])
def test_a_stop_with_savepoint_retried_after_its_worker_died_makes_one_savepoint(hook, fault_report, tmp_path, by):
    name = f"rtml-stopfault-{uuid.uuid4().hex[:8]}"
    savepoints = tmp_path / "savepoints"
    try:
        job = FlinkSubmitJobOperator(task_id="submit", job_name=name, python=JOB, args=[name], deferrable=False,
                                     poll_interval=0.5).execute(ti_context())
        wait_for("a first checkpoint", lambda: hook.get_checkpoints(job["job_id"]).completed >= 1, 60, 0.5)
        ids = {"dag_id": "faults", "task_id": "stop", "run_id": f"r-{uuid.uuid4().hex[:6]}", "map_index": -1}
        target = {"job_name": name} if by == "job_name" else {"job_id": job["job_id"]}
        worker = subprocess.Popen([sys.executable, "-c", _WORKER, json.dumps(ids), str(savepoints), json.dumps(target)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
        wait_for("the stop request to reach Flink", lambda: hook.get_job_state(job["job_id"]) != JobState.RUNNING
                 or worker.poll() is not None, 60, 0.05)
        assert worker.poll() is None, f"the worker ended before the fault: {worker.communicate()[0][-2000:]}"
        os.kill(worker.pid, signal.SIGKILL)  # the fault: the task's process dies mid-way
        out = worker.communicate()[0]
        assert worker.returncode == -signal.SIGKILL and "WORKER FINISHED" not in out, out[-2000:]

        retry = FlinkStopJobOperator(task_id="stop", savepoint_dir=str(savepoints), deferrable=False, poll_interval=0.5,
                                     **target)
        path = retry.execute({"ti": TaskInstanceStub(**ids, xcoms={})})
        wait_for("the job to finish", lambda: hook.get_job_state(job["job_id"]) == JobState.FINISHED, 60, 0.5)
        written = sorted(p for p in savepoints.iterdir() if p.name.startswith("savepoint-"))
        assert path is not None and [Path(path.removeprefix("file:")).resolve()] == [p.resolve() for p in written]
        fault_report(f"Worker killed (SIGKILL) mid stop-with-savepoint, the task retried (job by {by})",
                     "the retry polls the same savepoint operation: the job stopped once, one savepoint, its path "
                     "returned", lost=0 if path else 1, duplicated=len(written) - 1, early=0,
                     savepoints=len(written))
    finally:
        cancel_jobs_named(hook, name)
