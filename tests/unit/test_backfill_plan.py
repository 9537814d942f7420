"""The backfill's SQL swap (issue 13) and its equality metrics, without a cluster: the swap keeps every live
statement but the source and sink DDL, keeps the live columns, WATERMARK and watermark options, and refuses SQL it
cannot swap with a message that says what form is needed."""

from __future__ import annotations

import pytest

from airflow_rtml.demo.chain import Chain
from airflow_rtml.exceptions import BackfillError, BackfillSourceNotSwappable
from airflow_rtml.offline.backfill import check_range, parse_table, plan_replay, version_hour
from airflow_rtml.offline.equality import compare
from airflow_rtml.sql_script import split_statements

H = 3_600_000


def _features_sql() -> str:
    return Chain().sql("features", "dags/jobs/demo")


def test_the_demo_feature_sql_is_replayed_with_only_source_and_sinks_swapped():
    live = split_statements(_features_sql())
    plan = plan_replay(_features_sql(), "samples_in")
    assert list(plan.sinks) == ["user_features", "item_features"]
    replay = plan.sql(["/a/lp=0/part-0.json", "/a/lp=1/part-0.json"], {"user_features": "/o/u", "item_features": "/o/i"})
    # Everything that is not the source or a sink is the live statement, unchanged (the windows, the INSERTs).
    assert [s for s in replay if "TUMBLE" in s] == [s for s in live if "TUMBLE" in s]
    lp0, lp1, view, users, items = replay[:5]
    assert "'path' = 'file:///a/lp=0/part-0.json'" in lp0 and "'format' = 'json'" in lp0
    assert "WATERMARK FOR ts AS ts - INTERVAL '720' SECOND(3)" in lp0  # the live declaration
    assert "'scan.watermark.emit.strategy' = 'on-event'" in lp0  # the live watermark options too
    assert "kafka" not in lp0 + lp1 + users + items  # nothing of the replay reads or writes a live topic
    assert view.startswith("CREATE TEMPORARY VIEW samples_in AS") and "UNION ALL" in view
    assert "'path' = 'file:///o/u'" in users and "PRIMARY KEY (`user`)" in users


def test_a_kafka_metadata_column_becomes_the_physical_column_the_archive_kept():
    ddl = parse_table("CREATE TEMPORARY TABLE s (a STRING, p INT METADATA FROM 'partition' VIRTUAL, "
                      "o BIGINT METADATA FROM 'offset', ts AS TO_TIMESTAMP_LTZ(t, 3), t BIGINT, "
                      "WATERMARK FOR ts AS ts) WITH ('connector' = 'kafka', 'scan.watermark.idle-timeout' = '5 s')")
    assert "METADATA" not in ddl.physical_columns()
    assert ddl.column_types() == [("a", "STRING"), ("p", "INT"), ("o", "BIGINT"), ("t", "BIGINT")]
    assert ddl.watermark_options() == ", 'scan.watermark.idle-timeout' = '5 s'"


@pytest.mark.parametrize(("sql", "source", "message"), [
    ("CREATE TABLE x (a INT) WITH ('connector' = 'kafka'); INSERT INTO y SELECT a FROM x", "samples_in",
     r"no CREATE TABLE statement for the source 'samples_in' \(tables declared: \['x'\]\)(?s:.*)CREATE TEMPORARY TABLE"),
    ("CREATE TABLE s (a INT, ts AS NOW()) WITH ('connector' = 'kafka'); CREATE TABLE y (a INT) WITH ('connector' "
     "= 'print'); INSERT INTO y SELECT a FROM s", "s", "declares no WATERMARK"),
    ("CREATE TABLE s (a INT, WATERMARK FOR t AS t) WITH ('connector' = 'kafka'); INSERT INTO cat.db.y SELECT a FROM s",
     "s", r"INSERT target\(s\) \['cat.db.y'\] are not declared"),
    ("CREATE TABLE s (t TIMESTAMP(3), WATERMARK FOR t AS t) WITH ('connector' = 'kafka'); CREATE TABLE d (k INT) WITH "
     "('connector' = 'jdbc'); CREATE TABLE y (a INT) WITH ('connector' = 'print'); INSERT INTO y SELECT 1 FROM s, d",
     "s", r"also reads \['d'\].*keep=\['d'\]"),
    ("CREATE TABLE s (t TIMESTAMP(3), WATERMARK FOR t AS t) WITH ('connector' = 'kafka')", "s", "no INSERT INTO"),
])
def test_sql_that_cannot_be_swapped_is_refused_saying_what_is_needed(sql, source, message):
    with pytest.raises(BackfillSourceNotSwappable, match=message):
        plan_replay(sql, source)


def test_a_kept_table_is_left_alone():
    sql = ("CREATE TABLE s (t TIMESTAMP(3), WATERMARK FOR t AS t) WITH ('connector' = 'kafka'); CREATE TABLE d (k INT) "
           "WITH ('connector' = 'jdbc'); CREATE TABLE y (a INT) WITH ('connector' = 'print'); "
           "INSERT INTO y SELECT 1 FROM s, d")
    out = plan_replay(sql, "s", keep=["d"]).sql(["/f.json"], {"y": "/o"})
    assert "CREATE TABLE d (k INT) WITH ('connector' = 'jdbc')" in out


def test_ranges_are_whole_hours_and_versions_belong_to_the_hour_before_them():
    check_range(0, H)
    with pytest.raises(BackfillError, match="not whole hours"):
        check_range(0, H + 1)
    with pytest.raises(BackfillError, match="empty"):
        check_range(H, H)
    assert version_hour(H) == 0 and version_hour(H + 1) == H and version_hour(H - 600_000) == 0


def test_equality_reports_chronon_metrics():
    live = [{"u": "a", "v": 1, "x": 10, "s": "p"}, {"u": "b", "v": 1, "x": 4, "s": "q"}, {"u": "c", "v": 1, "x": 1, "s": "r"}]
    same = compare(live, [dict(r) for r in live], keys=["u", "v"])
    assert same.equal and same.matched == 3 and same.features["x"].smape == 0.0
    back = [{"u": "a", "v": 1, "x": 10, "s": "p"}, {"u": "b", "v": 1, "x": 6, "s": "q"}, {"u": "d", "v": 1, "x": 1, "s": "r"},
            {"u": "d", "v": 1, "x": 1, "s": "r"}]
    r = compare(live, back, keys=["u", "v"])
    assert not r.equal
    assert (r.matched, r.missing, r.extra, r.duplicates_backfill) == (2, 1, 1, 1)
    assert r.missing_ratio == pytest.approx(1 / 3) and r.extra_ratio == pytest.approx(1 / 3)  # of distinct keys
    assert r.features["x"].mismatches == 1 and r.features["x"].mismatch_ratio == 0.5
    assert r.features["x"].smape == pytest.approx((0 + 2 * 2 / 10) / 2)
    assert r.features["s"].smape is None  # not numeric
    assert "NOT EQUAL" in r.summary() and "'missing_in': 'backfill'" in r.summary()
    assert compare([{"u": 1, "x": 0.1 + 0.2}], [{"u": 1, "x": 0.3}], keys=["u"]).equal  # float noise is not a mismatch
