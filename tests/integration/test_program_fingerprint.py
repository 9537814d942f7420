"""Artifact identity (issue 17): every submitted job carries its program's fingerprint; adopting a job that runs
another program fails (or warns, when asked); an upgrade to the program already running can be a no-op that
adopts. Against the real Flink cluster and SQL Gateway."""

from __future__ import annotations

import uuid

import pytest
from support import cancel_jobs_named, ti_context

from airflow_rtml.exceptions import FlinkJobProgramChanged
from airflow_rtml.operators.flink import FINGERPRINT_PARAM, FlinkSubmitJobOperator

SQL = """
CREATE TEMPORARY TABLE src (x BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '1');
CREATE TEMPORARY TABLE snk (x BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO snk SELECT x FROM src WHERE x > {floor};
"""


def _op(name: str, floor: int = 0, **kw) -> FlinkSubmitJobOperator:
    return FlinkSubmitJobOperator(task_id="submit", job_name=name, sql=SQL.format(floor=floor), deferrable=False,
                                  poll_interval=0.5, **kw)


def _active(hook, name: str) -> list[str]:
    return [j.job_id for j in hook.find_jobs_by_name(name) if not j.state.is_terminal]


def test_adopt_compares_the_running_program_and_an_unchanged_upgrade_is_a_no_op(hook):
    name = f"rtml-fp-{uuid.uuid4().hex[:8]}"
    try:
        first = _op(name).execute(ti_context())
        fingerprint = first["fingerprint"]
        assert len(fingerprint) == 64 and first["adopted"] is False
        assert hook.get_job_user_config(first["job_id"])[FINGERPRINT_PARAM] == fingerprint  # recorded with the job

        again = _op(name).execute(ti_context())  # a retry renders the same SQL: adopts
        assert (again["job_id"], again["adopted"], again["program_changed"]) == (first["job_id"], True, False)

        with pytest.raises(FlinkJobProgramChanged, match="if_running='upgrade'") as caught:
            _op(name, floor=1).execute(ti_context())  # the task's SQL changed: not silently adopted
        assert caught.value.running_fingerprint == fingerprint and caught.value.fingerprint != fingerprint
        assert _active(hook, name) == [first["job_id"]]  # nothing stopped, nothing started

        warned = _op(name, floor=1, if_changed="warn").execute(ti_context())
        assert (warned["job_id"], warned["adopted"], warned["program_changed"]) == (first["job_id"], True, True)

        same = _op(name, if_running="upgrade").execute(ti_context())  # if_unchanged="adopt" is the default
        assert (same["job_id"], same["adopted"], same["savepoint_path"]) == (first["job_id"], True, None)
        assert _active(hook, name) == [first["job_id"]]  # no savepoint, no restart
    finally:
        cancel_jobs_named(hook, name)
