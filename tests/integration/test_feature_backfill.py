"""Feature backfill on the real stack (issue 13): the demo's *live* feature job (features.sql, real Flink) and the
archive job run over the same samples; then FeatureBackfillOperator replays the archived hours through the same
SQL file (real Spark builds the ordered logical partitions, real Flink replays them, the real metastore gets the
versioned partitions) and the output equals the live job's row for row — including the late records the live job
dropped, which the replay drops too. Bad input (missing partitions, a running live job ahead of the range, SQL
whose source cannot be swapped) fails before anything runs."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from event_time import create_topic
from support import cancel_jobs_named, ti_context, wait_for

from airflow_rtml.demo.chain import JOB_CONF, Chain
from airflow_rtml.exceptions import BackfillOverlapsLiveJob, BackfillPartitionsMissing, BackfillSourceNotSwappable
from airflow_rtml.offline.archive import SUCCESS_FILE, hour_values
from airflow_rtml.offline.equality import compare

HOUR_MS = 3_600_000
MIN_MS = 60_000
JOBS = "dags/jobs/demo"


def _run_sql(stack, sql: str, name: str, jars=()):
    from airflow_rtml.hooks.flink_sql import FlinkSqlGatewayHook, split_statements

    FlinkSqlGatewayHook().run_statements([f"ADD JAR '{j}'" for j in jars] + split_statements(sql),
                                         properties={**JOB_CONF, "execution.checkpointing.interval": "2s",
                                                     "pipeline.name": name})


@pytest.fixture
def live(stack, hook, monkeypatch):
    """A fresh chain whose samples topic has ``partitions`` partitions, the live feature job and the archive job
    on it; yields a builder ``start(partitions)`` -> (chain, tables, producer, H)."""
    from confluent_kafka import Producer

    from airflow_rtml.local.stack import airflow_env
    from airflow_rtml.offline.metastore import metastore_client

    for k, v in airflow_env(stack.cfg).items():
        if k.startswith(("AIRFLOW_CONN_METASTORE", "AIRFLOW_CONN_SPARK", "RTML_")):
            monkeypatch.setenv(k, v)
    started: list[Chain] = []

    def start(partitions: int):
        tag = uuid.uuid4().hex[:8]
        chain = Chain(prefix=f"rtml.bf.{tag}", job_prefix=f"rtml-bf-{tag}", bootstrap=stack.cfg.kafka_bootstrap)
        for name, topic in chain.topics.items():
            create_topic(topic, partitions if name == "samples" else 1)
        started.append(chain)
        jars = [stack.cfg.kafka_connector_jar, *stack.cfg.archive_jars]
        _run_sql(stack, chain.sql("archive", stack.cfg.project_dir / JOBS, stack.cfg.warehouse_dir),
                 chain.jobs["archive"], jars)
        _run_sql(stack, chain.sql("features", stack.cfg.project_dir / JOBS), chain.jobs["features"], jars)
        producer = Producer({"bootstrap.servers": stack.cfg.kafka_bootstrap, "linger.ms": 0})
        h = (int(time.time() * 1000) // HOUR_MS - 6) * HOUR_MS  # event time hours in the past
        return chain, chain.archive_tables(stack.cfg.warehouse_dir), producer, h

    yield start
    for chain in started:
        cancel_jobs_named(hook, *chain.jobs.values())
        with metastore_client("127.0.0.1", stack.cfg.ports.hive_metastore) as client:
            try:
                client.drop_database(chain.hive_db, False, True)
            except Exception:  # noqa: BLE001 - nothing registered
                pass


def _sample(chain, producer, ts: int, i: int, partition: int | None = None, user: str | None = None, label=None):
    rec = {"imp_id": f"s{ts}-{i}", "user": user or f"u{i % 5}", "item": f"i{i % 3}", "bucket": "control",
           "ts_ms": ts, "label": (i % 3 == 0) if label is None else label}
    rec["label"] = int(rec["label"])
    kwargs = {} if partition is None else {"partition": partition}
    producer.produce(chain.topics["samples"], json.dumps(rec).encode(), **kwargs)


def _register(tables, hour_ms: int) -> None:
    from airflow_rtml.operators.hive import ArchivePartitionOperator

    ArchivePartitionOperator(task_id="register", tables=[tables["samples"]],
                             partition_key=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(hour_ms / 1000)),
                             commit_timeout=60).execute(ti_context())


def _live_rows(stack, topic: str, lo: int, hi: int) -> list[dict]:
    """Every row the live job wrote to an upsert topic with a version in (lo, hi] (the log keeps each version)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": stack.cfg.kafka_bootstrap, "group.id": f"t-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, 0)])
        rows, seen = [], 0
        deadline = time.monotonic() + 60
        while seen < high and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None or m.error():
                continue
            seen = m.offset() + 1
            if m.value() is not None:
                row = json.loads(m.value())
                if lo < row["version_ms"] <= hi:
                    rows.append(row)
        return rows
    finally:
        c.close()


def _backfill(chain, tables, start: int, end: int, **kw):
    from airflow_rtml.operators.backfill import FeatureBackfillOperator

    return FeatureBackfillOperator(
        task_id="backfill", sql=chain.sql("features", JOBS), source="samples_in", archive=tables["samples"],
        start=start, end=end, job_name=f"{chain.job_prefix}-backfill", **kw)


def _hive_rows(tables, sink: str, hour_ms: int) -> list[dict]:
    """The backfill's versioned rows of one hour: the default output table of ``sink`` (its name, beside the
    archive)."""
    from pathlib import Path

    from airflow_rtml.offline.archive import ArchiveTable, read_partition

    src = tables["samples"]
    table = ArchiveTable(src.db, sink, str(Path(src.path).parent / sink), ())
    return read_partition(table, hour_values(hour_ms)).to_pylist()


@pytest.mark.timeout(900)
def test_backfill_equals_the_live_job_row_for_row_and_drops_the_same_late_records(stack, hook, live):
    chain, tables, producer, h = live(1)
    # Two hours of samples, out of order within the live watermark delay (12 min), plus late records: behind the
    # stream by more than the delay + a window, so the live job's window for them has already fired.
    rng = __import__("random").Random(7)
    late = []
    t, i = h, 0
    while t < h + 2 * HOUR_MS:
        _sample(chain, producer, t - rng.randrange(0, 8 * MIN_MS) if t - h > 10 * MIN_MS else t, i)
        i += 1
        if i % 97 == 0 and t - h > 40 * MIN_MS:  # 25 min behind: late for the features job (its window ended
            # >= 15 min before the stream, watermark delay 12 min), yet archived (the archive sets aside > 27 min)
            late.append(t - 25 * MIN_MS)
            _sample(chain, producer, late[-1], i, user="u-late", label=1)
            i += 1
        t += 7_000
    _sample(chain, producer, h + 3 * HOUR_MS + 40 * MIN_MS, i)  # closes both hours in every job
    producer.flush()
    for hour in (h, h + HOUR_MS):
        wait_for(f"the archive to commit {hour_values(hour)}",
                 lambda hour=hour: (tables["samples"].partition_dir(hour_values(hour)) / SUCCESS_FILE).exists(), 240)
        _register(tables, hour)
    lo, hi = h, h + 2 * HOUR_MS
    live_users = wait_for("the live job's windows of both hours",
                          lambda: (r := _live_rows(stack, chain.topics["user_features"], lo, hi))
                          and max(x["version_ms"] for x in r) == hi and r, 240)
    assert late and not any(r["user"] == "u-late" for r in live_users), "the late records were not late live"

    result = _backfill(chain, tables, lo, hi).execute(ti_context())
    assert result["logical_partitions"] == 1 and result["lookahead_hours"] == []
    back_users = _hive_rows(tables, "user_features", h) + _hive_rows(tables, "user_features", h + HOUR_MS)
    report = compare(live_users, back_users, keys=["user", "version_ms"], features=["imps", "clicks", "ctr"])
    assert report.equal, report.summary()
    assert report.matched == len(live_users) > 50
    assert not any(r["user"] == "u-late" for r in back_users), "a record late live was not late in the replay"
    live_items = _live_rows(stack, chain.topics["item_features"], lo, hi)
    back_items = _hive_rows(tables, "item_features", h) + _hive_rows(tables, "item_features", h + HOUR_MS)
    assert compare(live_items, back_items, keys=["item", "version_ms"]).equal

    # Re-running the range replaces it: the same rows, none twice; the versioned partitions are registered.
    again = _backfill(chain, tables, lo, hi).execute(ti_context())
    assert again["outputs"] == result["outputs"]
    rerun = _hive_rows(tables, "user_features", h) + _hive_rows(tables, "user_features", h + HOUR_MS)
    assert compare(back_users, rerun, keys=["user", "version_ms"]).equal
    from airflow_rtml.offline.metastore import metastore_client, partition_exists

    with metastore_client("127.0.0.1", stack.cfg.ports.hive_metastore) as client:
        assert partition_exists(client, chain.hive_db, "user_features", hour_values(h + HOUR_MS))

    # Bad input, refused before anything runs.
    with pytest.raises(BackfillPartitionsMissing, match=r"samples/dt=.*hour=.*Nothing ran"):
        _backfill(chain, tables, lo, hi + 2 * HOUR_MS).execute(ti_context())
    with pytest.raises(BackfillOverlapsLiveJob, match="is running"):
        _backfill(chain, tables, lo, hi, live_job_name=chain.jobs["features"]).execute(ti_context())
    with pytest.raises(BackfillSourceNotSwappable, match="no CREATE TABLE statement for the source 'clicks_in'"):
        FeatureBackfillOperator = __import__("airflow_rtml.operators.backfill", fromlist=["x"]).FeatureBackfillOperator
        FeatureBackfillOperator(task_id="b", sql=chain.sql("features", JOBS), source="clicks_in",
                                archive=tables["samples"], start=lo, end=hi).execute(ti_context())

    # Into the live store: publishing is refused while the live job runs; once it is stopped (a new feature's
    # live job starts after its backfill), the versions go to the upsert topic in version order.
    store = f"{chain.prefix}.backfilled-user-features"
    create_topic(store)
    publish = {"publish_topics": {"user_features": store}, "bootstrap_servers": stack.cfg.kafka_bootstrap,
               "live_job_name": chain.jobs["features"]}
    with pytest.raises(BackfillOverlapsLiveJob, match="would interleave"):
        _backfill(chain, tables, lo, hi, **publish).execute(ti_context())
    cancel_jobs_named(hook, chain.jobs["features"])
    wait_for("the live job to stop", lambda: hook.find_active_job(chain.jobs["features"]) is None, 60)
    _backfill(chain, tables, lo, hi, **publish).execute(ti_context())
    published = _live_rows(stack, store, lo, hi)
    assert [r["version_ms"] for r in published] == sorted(r["version_ms"] for r in published)
    assert compare(live_users, published, keys=["user", "version_ms"], features=["imps", "clicks", "ctr"]).equal


@pytest.mark.timeout(900)
def test_logical_partitions_keep_each_kafka_partitions_order(stack, hook, live):
    chain, tables, producer, h = live(4)
    rng = __import__("random").Random(11)
    sent: dict[int, list[str]] = {p: [] for p in range(4)}
    i = 0
    for t in range(h, h + HOUR_MS, 3_000):  # out of order within each partition (< the delay), none late
        for p in range(4):
            ts = max(h, t - rng.randrange(0, 5 * MIN_MS))
            _sample(chain, producer, ts, i, partition=p)
            sent[p].append(f"s{ts}-{i}")
            i += 1
    for p in range(4):
        _sample(chain, producer, h + 2 * HOUR_MS + 40 * MIN_MS, i + p, partition=p)
    producer.flush()
    wait_for("the archive to commit hour H",
             lambda: (tables["samples"].partition_dir(hour_values(h)) / SUCCESS_FILE).exists(), 240)
    _register(tables, h)
    live_users = wait_for("the live job's windows of hour H",
                          lambda: (r := _live_rows(stack, chain.topics["user_features"], h, h + HOUR_MS))
                          and max(x["version_ms"] for x in r) == h + HOUR_MS and r, 240)

    staging = stack.cfg.warehouse_dir / "_backfill" / f"t-{uuid.uuid4().hex[:6]}"
    result = _backfill(chain, tables, h, h + HOUR_MS, staging_dir=str(staging)).execute(ti_context())
    assert result["logical_partitions"] == 4 and result["input_records"] == i
    from airflow_rtml.offline.backfill import logical_partition_files

    for f in logical_partition_files(staging / "input"):
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        p = rows[0]["kafka_partition"]
        assert {r["kafka_partition"] for r in rows} == {p}
        assert [r["kafka_offset"] for r in rows] == list(range(len(rows))), f"{f}: not in offset order"
        assert [r["imp_id"] for r in rows][:len(sent[p])] == sent[p]  # exactly the order the topic held
    back = _hive_rows(tables, "user_features", h)
    report = compare(live_users, back, keys=["user", "version_ms"], features=["imps", "clicks", "ctr"])
    assert report.equal, report.summary()
