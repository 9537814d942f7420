"""Experiments on the real stack (issue 14): a clone starts exactly its new Flink jobs and shares the rest.

A full copy of the demo chain (``base``: its first node changed, so every node is new) runs its five stream jobs,
started by its generated DAG ``rtml_experiment_<base>``. A clone of that copy with only the feature window changed
starts exactly two more jobs, the feature job and the sample-feature join (the changed node and the stream node
downstream of it); the three shared jobs keep their ids. Stopping the clone cancels exactly its two jobs, leaves
the base's five running with their ids, and pauses its DAG (which then goes: the file no longer defines it). Everything goes through ``rtml experiment``,
the registry the stack's Airflow reads and the DAGs it generates.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from support import wait_for

from airflow_rtml.chain.dags import experiment_dag_id
from airflow_rtml.hooks.flink import JobState
from airflow_rtml.local.cli import main

BASE = f"ci{uuid.uuid4().hex[:6]}"
CLONE = f"{BASE}_wide"


def _running(hook) -> dict[str, str]:
    return {j.name: j.job_id for j in hook.list_jobs() if j.state is JobState.RUNNING}


def _slots_free(stack) -> int:
    return httpx.get(f"http://127.0.0.1:{stack.cfg.ports.flink_rest}/overview", timeout=10).json()["slots-available"]


@pytest.mark.timeout(900)
def test_a_clone_starts_exactly_its_new_jobs_shares_the_rest_and_stops_alone(stack, hook, capsys):
    before = _running(hook)
    assert _slots_free(stack) >= 7, f"this test needs 7 free slots; running: {sorted(before)}"
    prefix = "rtml-demo-"
    try:
        assert main(["experiment", "clone", "demo", BASE, "--set", "label_join.attribution_minutes=11",
                     "--start"]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        with capsys.disabled():
            print(out)
        assert "5 new Flink job(s) running" in out
        base_jobs = {n: i for n, i in _running(hook).items() if n not in before}
        assert sorted(base_jobs) == sorted(f"{prefix}{BASE}-{j}" for j in
                                           ("label-join", "features", "evaluation", "archive", "sample-features"))
        free_after_base = _slots_free(stack)

        assert main(["experiment", "clone", BASE, CLONE, "--set", "features.feature_window_minutes=20",
                     "--start"]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        with capsys.disabled():
            print(out)
        assert "2 new Flink job(s) running" in out
        now = _running(hook)
        added = sorted(set(now) - set(before) - set(base_jobs))
        assert added == sorted(f"{prefix}{CLONE.replace('_', '-')}-{j}" for j in ("features", "sample-features"))
        assert {n: now[n] for n in base_jobs} == base_jobs  # the shared jobs (and the base's others) unchanged
        assert free_after_base - _slots_free(stack) == 2  # a full copy took 5 slots, the clone 2

        # retry-safe: the same clone again registers nothing and adopts the running jobs
        assert main(["experiment", "clone", BASE, CLONE, "--set", "features.feature_window_minutes=20",
                     "--start"]) == 0
        assert "already registered" in capsys.readouterr().out
        assert _running(hook) == now

        assert main(["experiment", "stop", CLONE]) == 0, capsys.readouterr().err
        assert "2 Flink job(s)" in capsys.readouterr().out
        wait_for("the clone's jobs to be cancelled", lambda: set(_running(hook)) - set(before) == set(base_jobs), 60)
        assert {n: i for n, i in _running(hook).items() if n in base_jobs} == base_jobs
        with httpx.Client(base_url=f"{stack.cfg.airflow_url}/api/v2", timeout=30) as client:
            # paused at once; it leaves the UI at Airflow's next stale-DAG check (its file no longer defines it)
            assert client.get(f"/dags/{experiment_dag_id(CLONE)}").json()["is_paused"] is True
            assert client.get(f"/dags/{experiment_dag_id(BASE)}").json()["is_paused"] is False
    finally:
        for name in (CLONE, BASE):
            main(["experiment", "stop", name])  # the clone is stopped already: a clear "no chain" error
        for job in hook.list_jobs():
            if job.name.startswith(f"{prefix}{BASE}") and not job.state.is_terminal:
                hook.cancel_job(job.job_id)
