"""SQL jobs through the real Flink SQL Gateway, keyed state across an upgrade, jar= submission, and faults
(SQL errors, a bad jar, an unwritable savepoint directory, a frozen JobManager) on the real local cluster."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest
from support import cancel_jobs_named, ti_context
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from airflow_rtml.exceptions import (
    FlinkConfigurationError,
    FlinkJarUploadFailed,
    FlinkSavepointFailed,
    FlinkSqlError,
)
from airflow_rtml.hooks.flink import JobState
from airflow_rtml.hooks.flink_sql import FlinkSqlGatewayHook
from airflow_rtml.local.stack import FlinkJobManager
from airflow_rtml.operators.flink import FlinkStopJobOperator, FlinkSubmitJobOperator
from airflow_rtml.triggers.flink import FlinkJobStateTrigger, FlinkSavepointTrigger

JOB = str(Path(__file__).parent / "jobs" / "streaming_sql_job.py")


GEN_TO_BLACKHOLE = """
-- a comment; with a semicolon
CREATE TEMPORARY TABLE gen (n BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '{rate}'{bounded});
CREATE TEMPORARY TABLE sink (n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO sink SELECT n FROM gen;
"""


def _sql_op(name: str, sql: str, **kw) -> FlinkSubmitJobOperator:
    return FlinkSubmitJobOperator(task_id="submit_sql", job_name=name, sql=sql, deferrable=False, poll_interval=0.5,
                                  **kw)


def test_sql_job_through_the_gateway_submit_adopt_and_stop_with_drain(hook):
    name = f"rtml-sql-{uuid.uuid4().hex[:8]}"
    sql = GEN_TO_BLACKHOLE.format(rate=50, bounded="")
    try:
        t0 = time.monotonic()
        first = _sql_op(name, sql).execute(ti_context())
        submit_s = time.monotonic() - t0
        assert first["state"] == "RUNNING" and not first["adopted"]
        assert hook.get_job(first["job_id"]).name == name  # pipeline.name came from job_name

        again = _sql_op(name, sql).execute(ti_context())
        assert again["adopted"] and again["job_id"] == first["job_id"]
        assert [j.job_id for j in hook.find_jobs_by_name(name) if not j.state.is_terminal] == [first["job_id"]]

        path = FlinkStopJobOperator(task_id="stop", job_name=name, drain=True).execute(ti_context("stop"))
        assert Path(path.removeprefix("file:")).exists()
        assert hook.get_job_state(first["job_id"]) == JobState.FINISHED
        print(f"latency: SQL submit→RUNNING {submit_s:.1f}s")
    finally:
        cancel_jobs_named(hook, name)


def test_sql_errors_name_flinks_reason_and_submit_nothing(hook):
    name = f"rtml-sqlerr-{uuid.uuid4().hex[:8]}"
    bad_syntax = "CREATE TEMPORARY TABLE snk (n BIGINT) WITH ('connector' = 'blackhole');\nINSERT INTO snk SELEC 1"
    with pytest.raises(FlinkSqlError, match="SQL parse failed") as err:
        _sql_op(name, bad_syntax).execute(ti_context())
    assert err.value.statement.startswith("INSERT INTO snk SELEC 1")
    with pytest.raises(FlinkSqlError, match="Cannot find table .*nosuchtable"):
        _sql_op(name, "INSERT INTO nosuchtable SELECT 1").execute(ti_context())
    with pytest.raises(FlinkConfigurationError, match="exactly one Flink job, found 2"):
        _sql_op(name, "INSERT INTO a SELECT 1; INSERT INTO b SELECT 2").execute(ti_context())
    assert hook.find_jobs_by_name(name) == []


def test_gateway_hook_returns_rows_of_a_query_and_its_connection_test(hook):
    gw = FlinkSqlGatewayHook()
    ok, msg = gw.test_connection()
    assert ok, msg
    [result] = gw.run_statements(["SELECT 40 + 2 AS answer"], properties={"execution.runtime-mode": "batch"})
    assert result.columns == ["answer"] and result.rows == [[42]] and result.job_id


def _read_counts(topic: str, timeout: float = 20) -> list[int]:
    """Every count the counting job has written to ``topic`` so far, in order (one partition)."""
    consumer = Consumer({"bootstrap.servers": "127.0.0.1:9092", "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    counts: list[int] = []
    try:
        try:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
        except KafkaException:
            return counts  # the topic does not exist yet
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while high > 0 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            if msg.value():
                counts.append(json.loads(msg.value())["n"])
            if msg.offset() >= high - 1:
                break
    finally:
        consumer.close()
    return counts


def test_upgrade_through_a_savepoint_keeps_keyed_state(hook, stack):
    """A SQL COUNT(*) GROUP BY keeps its count in keyed state; after an upgrade the count continues."""
    name = f"rtml-count-{uuid.uuid4().hex[:8]}"
    topic = f"rtml-counts-{uuid.uuid4().hex[:8]}"
    sql = f"""
    CREATE TEMPORARY TABLE clicks (k INT) WITH ('connector' = 'datagen', 'rows-per-second' = '20',
        'fields.k.min' = '1', 'fields.k.max' = '1');
    CREATE TEMPORARY TABLE counts (k INT, n BIGINT, PRIMARY KEY (k) NOT ENFORCED) WITH (
        'connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '127.0.0.1:9092',
        'key.format' = 'json', 'value.format' = 'json');
    INSERT INTO counts SELECT k, COUNT(*) AS n FROM clicks GROUP BY k;
    """
    jars = [str(stack.cfg.kafka_connector_jar)]
    try:
        old = _sql_op(name, sql, sql_jars=jars).execute(ti_context())
        deadline = time.monotonic() + 60
        while max(_read_counts(topic) or [0]) < 40:
            assert time.monotonic() < deadline, "the counting job wrote no counts"
            time.sleep(1)
        new = _sql_op(name, sql, sql_jars=jars, if_running="upgrade", if_unchanged="restart").execute(ti_context())
        assert new["savepoint_path"] and new["job_id"] != old["job_id"]
        info = hook.get_checkpoints(new["job_id"])
        assert info.restored_is_savepoint and info.restored_from == new["savepoint_path"]
        time.sleep(4)  # the new job writes a few more counts
        counts = _read_counts(topic)
        before = len([c for c in counts if c <= 40])
        # Restored state: the count never starts over at 1, it goes on from where the old job stopped.
        assert counts[0] == 1 and counts.count(1) == 1, counts[:5]
        assert counts == sorted(counts), "the count went backwards: state was not restored"
        assert max(counts) > 40 + 20 and before >= 40
    finally:
        cancel_jobs_named(hook, name)


def test_jar_submission_with_the_distributions_python_driver_jar(hook, stack):
    name = f"rtml-jar-{uuid.uuid4().hex[:8]}"
    try:
        result = FlinkSubmitJobOperator(
            task_id="submit_jar", job_name=name, jar=str(stack.cfg.flink_python_jar),
            entry_class="org.apache.flink.client.python.PythonDriver", args=["-py", JOB, name],
            deferrable=False, poll_interval=0.5,
        ).execute(ti_context())
        assert result["state"] == "RUNNING" and hook.get_job(result["job_id"]).name == name
    finally:
        cancel_jobs_named(hook, name)


def test_jar_faults_raise_jar_upload_failed(hook, tmp_path):
    with pytest.raises(FlinkJarUploadFailed, match="does not exist"):
        hook.upload_jar(tmp_path / "missing.jar")
    bad = tmp_path / "not-a-jar.jar"
    bad.write_text("this is not a zip file")
    jar_id = hook.upload_jar(bad)
    try:
        with pytest.raises(FlinkJarUploadFailed, match="Error while opening jar file"):
            hook.run_jar(jar_id)
    finally:
        hook.delete_jar(jar_id)
    assert jar_id not in [j["id"] for j in hook.list_jars()]


def test_unwritable_savepoint_dir_fails_the_stop_and_the_job_keeps_running(hook, tmp_path):
    name = f"rtml-spdir-{uuid.uuid4().hex[:8]}"
    blocker = tmp_path / "a-file"
    blocker.write_text("a directory cannot be created below a file, not even by root")
    try:
        job = _sql_op(name, GEN_TO_BLACKHOLE.format(rate=10, bounded="")).execute(ti_context())
        with pytest.raises(FlinkSavepointFailed, match="savepoint directory is writable") as err:
            FlinkStopJobOperator(task_id="stop", job_name=name,
                                 savepoint_dir=(blocker / "savepoints").as_uri()).execute(ti_context("stop"))
        assert err.value.job_id == job["job_id"] and err.value.cause
        assert hook.get_job_state(job["job_id"]) == JobState.RUNNING
    finally:
        cancel_jobs_named(hook, name)


def test_deferred_stop_path_polls_the_same_savepoint_operation(hook):
    """The deferrable stop's trigger against the real cluster: success with the path, and a second trigger on
    the same trigger id (a restarted triggerer) finds the same completed savepoint."""
    name = f"rtml-dstop-{uuid.uuid4().hex[:8]}"
    try:
        job = _sql_op(name, GEN_TO_BLACKHOLE.format(rate=10, bounded="")).execute(ti_context())
        trigger_id = uuid.uuid4().hex
        hook.stop_with_savepoint(job["job_id"], trigger_id=trigger_id)

        async def first(trigger):
            async for event in trigger.run():
                return event.payload

        deadline = time.time() + 120
        event = asyncio.run(first(FlinkSavepointTrigger(job["job_id"], trigger_id, poll_interval=0.3,
                                                        deadline=deadline)))
        assert event["status"] == "success" and Path(event["location"].removeprefix("file:")).exists()
        again = asyncio.run(first(FlinkSavepointTrigger(job["job_id"], trigger_id, deadline=deadline)))
        assert again["location"] == event["location"]
    finally:
        cancel_jobs_named(hook, name)


def _jobmanager_tree(stack) -> list[psutil.Process]:
    proc = stack.process_of(FlinkJobManager(stack.cfg))
    assert proc is not None, "the JobManager is not running"
    return [proc, *proc.children(recursive=True)]


def test_a_frozen_jobmanager_does_not_fail_a_waiting_trigger_before_its_deadline(hook, stack, monkeypatch):
    """SIGSTOP freezes the JobManager (requests time out, as during a restart or a long GC pause); the wait
    keeps retrying and still ends with the job's real outcome once it answers again."""
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_DEFAULT",
                       f"flink-rest://127.0.0.1:{stack.cfg.ports.flink_rest}?timeout=1")
    name = f"rtml-freeze-{uuid.uuid4().hex[:8]}"
    job = _sql_op(name, GEN_TO_BLACKHOLE.format(rate=40, bounded=", 'number-of-rows' = '600'")).execute(ti_context())
    result: dict = {}

    def wait() -> None:
        trigger = FlinkJobStateTrigger(job["job_id"], ["FINISHED"], poll_interval=0.5, deadline=time.time() + 180)

        async def first():
            async for event in trigger.run():
                return event.payload

        result["event"] = asyncio.run(first())

    waiter = threading.Thread(target=wait)
    waiter.start()
    tree = _jobmanager_tree(stack)
    time.sleep(1)
    for p in tree:
        os.kill(p.pid, signal.SIGSTOP)
    try:
        time.sleep(8)
        assert waiter.is_alive() and "event" not in result, "the wait ended while the JobManager was frozen"
    finally:
        for p in tree:
            os.kill(p.pid, signal.SIGCONT)
    waiter.join(timeout=150)
    assert result["event"]["status"] == "success" and result["event"]["state"] == "FINISHED", result
