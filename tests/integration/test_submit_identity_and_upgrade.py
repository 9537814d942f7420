"""Lifecycle safety on the real local cluster: a job is identified by the name Flink reports for it (issue 10),
and an upgrade never leaves the stream down (issue 11).

Item 10 uses Flink's own TopSpeedWindowing example jar from Maven Central, which names itself
(``env.execute("CarTopSpeedWindowingExample")``) and so wins over ``pipeline.name``. Item 11 upgrades SQL jobs
through the real SQL Gateway: a plan change that drops a stateful operator cannot map the savepoint's state.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from support import cancel_jobs_named, ti_context

from airflow_rtml.exceptions import FlinkJobNameMismatch, FlinkUpgradeFailed
from airflow_rtml.hooks.flink import JobState
from airflow_rtml.operators.flink import FlinkSubmitJobOperator

#: Flink 2.3.0's example jar (runs on the stack's 2.2.1); the classifier selects the TopSpeedWindowing program.
TOP_SPEED_ARTIFACT = "org.apache.flink:flink-examples-streaming:2.3.0:jar:TopSpeedWindowing"
TOP_SPEED_JAR = "flink-examples-streaming-2.3.0-TopSpeedWindowing.jar"
TOP_SPEED_NAME = "CarTopSpeedWindowingExample"  # what the program passes to env.execute()


@pytest.fixture(scope="module")
def top_speed_jar(stack_config) -> Path:
    """The TopSpeedWindowing jar, fetched with Maven into the stack's git-ignored cache (as the stack fetches
    its connectors), so a clean clone gets it too. Fails the test, loudly, if it cannot be fetched.

    maven-dependency-plugin 2.10, not 3.x: Flink 2.3.0 did not publish the parent POM ``flink-examples:2.3.0``
    (Maven Central answers 404), and 3.x refuses an artifact whose POM cannot be built; 2.10 copies the jar.
    """
    jar = stack_config.cache_dir / "test-jobs" / TOP_SPEED_JAR
    if jar.exists():
        return jar
    mvn = shutil.which("mvn")
    if not mvn:
        pytest.fail("Maven (`mvn`) is not on PATH: it fetches the TopSpeedWindowing jar. Install it (apt-get install maven).")
    jar.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [mvn, "-q", "-B", f"-Dmaven.repo.local={stack_config.maven_repo}",
         "org.apache.maven.plugins:maven-dependency-plugin:2.10:copy",
         f"-Dartifact={TOP_SPEED_ARTIFACT}", f"-DoutputDirectory={jar.parent}"],
        capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0 or not jar.exists():
        pytest.fail(f"Could not fetch {TOP_SPEED_ARTIFACT} from Maven Central (rc={proc.returncode}):\n"
                    f"{(proc.stdout + proc.stderr)[-3000:]}")
    return jar


def _active(hook, *names: str) -> list[str]:
    return [j.job_id for name in names for j in hook.find_jobs_by_name(name) if not j.state.is_terminal]


def _jar_op(jar: Path, name: str, **kw) -> FlinkSubmitJobOperator:
    return FlinkSubmitJobOperator(task_id="submit_jar", job_name=name, jar=str(jar), deferrable=False,
                                  poll_interval=0.5, **kw)


def test_a_jar_that_names_itself_is_cancelled_and_a_retry_starts_no_second_copy(hook, top_speed_jar):
    ours = f"rtml-ours-{uuid.uuid4().hex[:8]}"
    assert _active(hook, TOP_SPEED_NAME) == [], "a TopSpeedWindowing job is already running: clean the cluster"
    try:
        for attempt in ("first try", "retry"):
            with pytest.raises(FlinkJobNameMismatch, match=f"job_name='{TOP_SPEED_NAME}'") as err:
                _jar_op(top_speed_jar, ours).execute(ti_context())
            assert (err.value.expected, err.value.reported) == (ours, TOP_SPEED_NAME)
            assert "env.execute" in str(err.value)
            assert hook.get_job_state(err.value.job_id) == JobState.CANCELED, attempt
            assert _active(hook, ours, TOP_SPEED_NAME) == [], f"{attempt} left a job running"

        # Under its own name the job is found: it runs, and a rerun adopts it instead of starting a copy.
        first = _jar_op(top_speed_jar, TOP_SPEED_NAME).execute(ti_context())
        assert first["state"] == "RUNNING" and not first["adopted"]
        again = _jar_op(top_speed_jar, TOP_SPEED_NAME).execute(ti_context())
        assert again["adopted"] and again["job_id"] == first["job_id"]
        assert _active(hook, TOP_SPEED_NAME) == [first["job_id"]]

        # The program replaces the global job parameters, so the job carries no record of its program: an upgrade
        # could not put it back and refuses before stopping anything.
        with pytest.raises(FlinkUpgradeFailed, match="carries no record of its program") as up:
            _jar_op(top_speed_jar, TOP_SPEED_NAME, if_running="upgrade").execute(ti_context())
        assert up.value.savepoint_path is None and up.value.restored_job_id is None
        assert _active(hook, TOP_SPEED_NAME) == [first["job_id"]]
        assert hook.get_job_state(first["job_id"]) == JobState.RUNNING
    finally:
        cancel_jobs_named(hook, ours, TOP_SPEED_NAME)


# An event-time source whose watermark follows the clock (so a restored job's watermark must come back).
SOURCE = """
CREATE TEMPORARY TABLE gen (k INT, ts AS CAST(CURRENT_TIMESTAMP AS TIMESTAMP(3)),
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH ('connector' = 'datagen', 'rows-per-second' = '20', 'fields.k.min' = '1', 'fields.k.max' = '3');
CREATE TEMPORARY TABLE sink (k INT, n BIGINT) WITH ('connector' = 'blackhole');
"""
# Two stateful aggregations; the new plan drops the second one, whose state then maps to no operator.
TWO_AGGREGATIONS = SOURCE + """
INSERT INTO sink SELECT c, COUNT(*) FROM (SELECT k, CAST(COUNT(*) AS INT) AS c FROM gen GROUP BY k) GROUP BY c;
"""
ONE_AGGREGATION = SOURCE + "INSERT INTO sink SELECT k, COUNT(*) FROM gen GROUP BY k;"


def _sql_op(name: str, sql: str, **kw) -> FlinkSubmitJobOperator:
    return FlinkSubmitJobOperator(task_id="submit_sql", job_name=name, sql=sql, deferrable=False, poll_interval=0.5,
                                  **kw)


def _aggregations(hook, job_id: str) -> int:
    return sum(n.get("description", "").count("GroupAggregate") for n in hook.get_job_plan(job_id)["nodes"])


def test_an_upgrade_that_cannot_restore_puts_the_old_program_back_and_names_flinks_cause(hook):
    name = f"rtml-badup-{uuid.uuid4().hex[:8]}"
    try:
        old = _sql_op(name, TWO_AGGREGATIONS).execute(ti_context())
        assert _aggregations(hook, old["job_id"]) == 2

        for attempt in ("first try", "retry"):
            with pytest.raises(FlinkUpgradeFailed) as err:
                _sql_op(name, ONE_AGGREGATION, if_running="upgrade").execute(ti_context())
            e = err.value
            # Flink's real cause (from /jobs/:id/exceptions), not the gateway's "Could not start the JobMaster".
            assert "Cannot map checkpoint/savepoint state" in e.cause and "allowNonRestoredState" in e.cause
            assert e.savepoint_path and Path(e.savepoint_path.removeprefix("file:")).exists()
            assert e.savepoint_path in str(e) and e.restored_job_id in str(e)
            assert e.failed_job_id and hook.get_job_state(e.failed_job_id) == JobState.FAILED
            # The stream is not down: the old program runs again, restored from that savepoint, exactly once.
            assert _active(hook, name) == [e.restored_job_id], attempt
            info = hook.get_checkpoints(e.restored_job_id)
            assert info.restored_is_savepoint and info.restored_from == e.savepoint_path
            assert _aggregations(hook, e.restored_job_id) == 2
            assert hook.get_job(e.restored_job_id).tasks_running

        # Dropping the unmapped state stays an explicit choice; with it the same upgrade goes through, verified.
        new = _sql_op(name, ONE_AGGREGATION, if_running="upgrade", allow_non_restored_state=True) \
            .execute(ti_context())
        assert new["restored_from_savepoint"] is True and _aggregations(hook, new["job_id"]) == 1
        assert _active(hook, name) == [new["job_id"]]
    finally:
        cancel_jobs_named(hook, name)


def test_a_successful_upgrade_is_verified_restore_and_watermark_in_the_result(hook):
    name = f"rtml-goodup-{uuid.uuid4().hex[:8]}"
    try:
        old = _sql_op(name, ONE_AGGREGATION).execute(ti_context())
        assert old["restored_from_savepoint"] is None and old["watermark_before_ms"] is None
        new = _sql_op(name, ONE_AGGREGATION, if_running="upgrade", if_unchanged="restart").execute(ti_context())
        assert new["job_id"] != old["job_id"] and new["savepoint_path"]
        info = hook.get_checkpoints(new["job_id"])
        assert new["restored_from_savepoint"] is True
        assert info.restored_is_savepoint and info.restored_from == new["savepoint_path"]
        before, after = new["watermark_before_ms"], new["watermark_after_ms"]
        assert before is not None and before > 1_600_000_000_000, new  # an epoch-ms watermark, read before the stop
        assert after is not None and after >= before and new["watermark_resumed"] is True, new
        assert _active(hook, name) == [new["job_id"]]
    finally:
        cancel_jobs_named(hook, name)


def test_an_upgrade_of_a_job_without_event_time_says_there_is_no_watermark(hook):
    name = f"rtml-nowm-{uuid.uuid4().hex[:8]}"
    sql = """CREATE TEMPORARY TABLE gen (n BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '10');
             CREATE TEMPORARY TABLE sink (n BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO sink SELECT n FROM gen;"""
    try:
        _sql_op(name, sql).execute(ti_context())
        new = _sql_op(name, sql, if_running="upgrade", if_unchanged="restart").execute(ti_context())
        assert new["restored_from_savepoint"] is True
        assert (new["watermark_before_ms"], new["watermark_resumed"]) == (None, None), new
    finally:
        cancel_jobs_named(hook, name)
