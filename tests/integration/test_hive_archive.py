"""The archive on the real stack (issue 12): the demo's archive job (real Flink) writes hourly Parquet partitions
by event time; a partition is registered in the real Hive metastore exactly once and only after Flink committed
it; Airflow's own NamedHivePartitionSensor sees it then and not before; real Spark reads exactly it; bad input
(a missing partition, a corrupt file, another schema, a conflicting registration) fails clearly and changes
nothing."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from event_time import create_topic
from support import cancel_jobs_named, ti_context, wait_for

from airflow_rtml.demo.chain import ARCHIVED_BY_ARCHIVE_JOB, JOB_CONF, Chain
from airflow_rtml.exceptions import ArchiveSchemaMismatch, PartitionLocationConflict, PartitionNotCommitted
from airflow_rtml.offline.archive import SUCCESS_FILE, data_files, hour_values
from airflow_rtml.offline.metastore import ensure_table, metastore_client, register_partition

HOUR_MS = 3_600_000
JOBS = "dags/jobs/demo"


@pytest.fixture
def archive(stack, hook, monkeypatch):
    """The demo's archive job over a fresh chain's topics; yields (chain, tables, producer, H) and cancels it."""
    from confluent_kafka import Producer

    from airflow_rtml.hooks.flink_sql import FlinkSqlGatewayHook, split_statements

    monkeypatch.setenv("AIRFLOW_CONN_METASTORE_DEFAULT", f"hive-metastore://127.0.0.1:{stack.cfg.ports.hive_metastore}")
    tag = uuid.uuid4().hex[:8]
    chain = Chain(prefix=f"rtml.arch.{tag}", job_prefix=f"rtml-arch-{tag}", bootstrap=stack.cfg.kafka_bootstrap)
    for topic in chain.topics.values():
        create_topic(topic)
    tables = chain.archive_tables(stack.cfg.warehouse_dir)
    jars = [stack.cfg.kafka_connector_jar, *stack.cfg.archive_jars]
    sql = chain.sql("archive", stack.cfg.project_dir / JOBS, stack.cfg.warehouse_dir)
    FlinkSqlGatewayHook().run_statements([f"ADD JAR '{j}'" for j in jars] + split_statements(sql),
                                         properties={**JOB_CONF, "execution.checkpointing.interval": "2s",
                                                     "pipeline.name": chain.jobs["archive"]})
    producer = Producer({"bootstrap.servers": stack.cfg.kafka_bootstrap})
    h = (int(time.time() * 1000) // HOUR_MS - 5) * HOUR_MS  # an hour in the past: event time, not the clock
    try:
        yield chain, tables, producer, h
    finally:
        cancel_jobs_named(hook, chain.jobs["archive"])
        with metastore_client("127.0.0.1", stack.cfg.ports.hive_metastore) as client:
            try:
                client.drop_database(chain.hive_db, False, True)  # external tables: the files stay for a post-mortem
            except Exception:  # noqa: BLE001 - nothing registered
                pass


def _produce(chain: Chain, producer, start_ms: int, n: int, step_ms: int) -> None:
    t = chain.topics
    for i in range(n):
        ts = start_ms + i * step_ms
        imp = f"i{ts}"
        producer.produce(t["impressions"], json.dumps({"imp_id": imp, "user": f"u{i % 3}", "item": "x",
                                                       "bucket": "control", "ts": ts}).encode())
        producer.produce(t["clicks"], json.dumps({"imp_id": imp, "ts": ts + 1}).encode())
        producer.produce(t["samples"], json.dumps({"imp_id": imp, "user": f"u{i % 3}", "item": "x", "bucket": "control",
                                                   "ts_ms": ts, "label": i % 2}).encode())
    producer.flush()


def _operator(chain, tables, key: str, commit_timeout: float = 1.0):
    from airflow_rtml.operators.hive import ArchivePartitionOperator

    return ArchivePartitionOperator(task_id="register", tables=[tables[n] for n in ARCHIVED_BY_ARCHIVE_JOB],
                                    partition_key=key, commit_timeout=commit_timeout)


def _sensor(names, timeout: float = 2.0):
    from airflow.providers.apache.hive.sensors.named_hive_partition import NamedHivePartitionSensor

    return NamedHivePartitionSensor(task_id="wait", partition_names=names, poke_interval=0.5, timeout=timeout,
                                    mode="poke")


def _key(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


@pytest.mark.timeout(400)
def test_a_partition_is_registered_once_and_only_after_flink_committed_it(stack, archive):
    chain, tables, producer, h = archive
    values = hour_values(h)
    names = [tables[n].partition_ref(values) for n in ARCHIVED_BY_ARCHIVE_JOB]
    _produce(chain, producer, h, 120, 30_000)  # hour H fully; the watermark stays inside H (< its end - delays)
    samples_dir = tables["samples"].partition_dir(values)
    wait_for("the archive job to write hour H's files (uncommitted)", lambda: data_files(samples_dir), 120)
    time.sleep(6)  # several checkpoints: the hour is still open, nothing may commit it
    assert not (samples_dir / SUCCESS_FILE).exists(), "Flink committed an hour whose watermark had not passed it"
    with pytest.raises(PartitionNotCommitted, match=r"impressions/dt=.*no _SUCCESS"):
        _operator(chain, tables, _key(h)).execute(ti_context())
    assert _sensor(names).poke({}) is False  # never registered early

    _produce(chain, producer, h + 2 * HOUR_MS, 1, 1)  # event time moves 2 h on: H closes in every stream
    for n in ARCHIVED_BY_ARCHIVE_JOB:
        wait_for(f"Flink to commit {n} hour H", lambda n=n: (tables[n].partition_dir(values) / SUCCESS_FILE).exists(), 120)

    first = _operator(chain, tables, _key(h), commit_timeout=30).execute(ti_context())
    assert [r["registered"] for r in first] == [True, True, True]
    assert {r["table"].split(".")[1]: r["rows"] for r in first} == {"impressions": 120, "clicks": 120, "samples": 120}
    assert _sensor(names).poke({}) is True
    again = _operator(chain, tables, _key(h)).execute(ti_context())  # a retry, or a second run of the window
    assert [r["registered"] for r in again] == [False, False, False]
    assert [r["rows"] for r in again] == [r["rows"] for r in first]

    # Real Spark reads exactly the registered partition (the open hour H+2 is not registered: not visible).
    counts = _spark_sql(stack, f"SELECT hour, count(*), count(DISTINCT imp_id), min(kafka_offset), max(kafka_offset) "
                               f"FROM {chain.hive_db}.samples GROUP BY hour")
    assert counts == [[values[1], 120, 120, 0, 119]], counts

    # A corrupt file in a registered partition: both readers fail naming it (ours before Spark is even started).
    from airflow_rtml.exceptions import ArchiveFileCorrupt
    from airflow_rtml.offline.archive import read_partition

    bad = tables["samples"].partition_dir(values) / "part-corrupt-0"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ArchiveFileCorrupt, match="part-corrupt-0"):
        read_partition(tables["samples"], values)
    rc, err = _spark_sql(stack, f"SELECT count(*) FROM {chain.hive_db}.samples", expect_failure=True)
    assert rc != 0 and "part-corrupt-0" in err, err[-2000:]


@pytest.mark.timeout(120)
def test_a_missing_partition_times_out_naming_it(stack, archive, capfd):
    from airflow.sdk.exceptions import AirflowSensorTimeout

    chain, tables, _, h = archive
    name = tables["samples"].partition_ref(hour_values(h))
    with pytest.raises(AirflowSensorTimeout):
        _sensor([name], timeout=2).execute({"ti": None})
    out, err = capfd.readouterr()
    assert f"Poking for {name}" in out + err  # the sensor's log names what it waited for


@pytest.mark.timeout(120)
def test_another_schema_or_another_location_is_refused_and_changes_nothing(stack, archive):
    chain, tables, _, h = archive
    t = tables["samples"]
    values = hour_values(h)
    with metastore_client("127.0.0.1", stack.cfg.ports.hive_metastore) as client:
        from airflow_rtml.offline.metastore import ensure_database, partition_exists

        ensure_database(client, t.db, t.location.rsplit("/", 1)[0])
        assert ensure_table(client, t.db, t.table, t.columns, t.location) is True
        assert ensure_table(client, t.db, t.table, t.columns, t.location) is False
        with pytest.raises(ArchiveSchemaMismatch, match=r"has columns .* the archive writes .*'label', 'string'"):
            ensure_table(client, t.db, t.table, [(n, "string" if n == "label" else ty) for n, ty in t.columns],
                         t.location)
        assert register_partition(client, t.db, t.table, values, t.partition_location(values)) is True
        with pytest.raises(PartitionLocationConflict, match="already registered at"):
            register_partition(client, t.db, t.table, values, t.partition_location(values) + "-elsewhere")
        assert partition_exists(client, t.db, t.table, values)
        assert len(client.get_partitions(t.db, t.table, 10)) == 1  # registered twice: still one partition


def _spark_sql(stack, query: str, expect_failure: bool = False):
    """Run ``query`` in a real Spark session (the stack's Spark venv) on the stack's metastore; rows as lists
    (``expect_failure``: the exit code and stderr instead)."""
    from airflow_rtml.offline.spark import spark_conf

    conf = " ".join(f".config({k!r}, {v!r})" for k, v in spark_conf(stack.cfg.hive_metastore_uri).items())
    code = (f"import json; from pyspark.sql import SparkSession; s = SparkSession.builder.master('local[1]'){conf}"
            f".enableHiveSupport().getOrCreate(); print('ROWS=' + json.dumps([list(r) for r in s.sql({query!r})"
            f".collect()])); s.stop()")
    proc = subprocess.run([str(stack.cfg.spark_python), "-c", code], capture_output=True, text=True, timeout=240,
                          env={"SPARK_LOCAL_IP": "127.0.0.1", "PATH": "/usr/bin:/bin",
                               "JAVA_HOME": __import__("airflow_rtml.local.config", fromlist=["java_home"]).java_home()})
    if expect_failure:
        return proc.returncode, proc.stderr + proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith("ROWS=")]
    assert proc.returncode == 0 and rows, f"Spark failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(rows[0][5:])
