"""Errors of the submit operator that say what to do (issue 17), against the real Flink cluster and SQL Gateway."""

from __future__ import annotations

import uuid

import pytest
from event_time import BOOTSTRAP, JOB_SQL
from support import ti_context

from airflow_rtml.exceptions import FlinkJobAlreadyRunning, FlinkJobFailed, FlinkSqlError
from airflow_rtml.operators.flink import FlinkSubmitJobOperator


def test_if_running_fail_raises_already_running_not_a_failure(job, hook):
    with pytest.raises(FlinkJobAlreadyRunning, match="nothing was submitted") as caught:
        FlinkSubmitJobOperator(task_id="again", job_name=job.name, sql="INSERT INTO x SELECT 1", if_running="fail",
                               deferrable=False).execute(ti_context())
    assert isinstance(caught.value, FlinkJobFailed)  # round-1 `except FlinkJobFailed` still catches it
    assert (caught.value.job_id, caught.value.state, caught.value.job_name) == (job.job_id, "RUNNING", job.name)
    assert [j.job_id for j in hook.find_jobs_by_name(job.name) if not j.state.is_terminal] == [job.job_id]


def test_a_missing_kafka_connector_says_to_pass_sql_jars(hook):
    name = f"rtml-noconn-{uuid.uuid4().hex[:6]}"
    sql = JOB_SQL.format(topic=f"{name}-events", bootstrap=BOOTSTRAP, name=name)
    with pytest.raises(FlinkSqlError, match="connector.*'kafka'") as caught:
        FlinkSubmitJobOperator(task_id="no_jar", job_name=name, sql=sql, deferrable=False).execute(ti_context())
    message = str(caught.value)
    assert "sql_jars=" in message and "RTML_FLINK_KAFKA_CONNECTOR_JAR" in message, message
    assert hook.find_jobs_by_name(name) == []
