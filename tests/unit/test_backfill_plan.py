"""The backfill's SQL swap (issue 13) and its equality metrics, without a cluster: the swap keeps every live
statement but the source and sink DDL, keeps the live columns, WATERMARK and watermark options, and refuses SQL it
cannot swap with a message that says what form is needed."""

from __future__ import annotations

import pytest

from airflow_rtml.demo.chain import Chain
from airflow_rtml.exceptions import BackfillError, BackfillSourceNotSwappable
from airflow_rtml.offline.backfill import check_range, parse_table, parse_time, plan_replay, version_hour, warmup_needed
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
    assert ddl.metadata_columns() == ["p", "o"]
    quoted = parse_table("CREATE TABLE s (t INT) WITH ('scan.watermark.alignment.group' = 'it''s')")
    assert quoted.watermark_options() == ", 'scan.watermark.alignment.group' = 'it''s'"  # quotes stay escaped


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
    # A statement that writes without being an INSERT into a declared sink would reach a live system.
    ("CREATE TABLE s (t TIMESTAMP(3), WATERMARK FOR t AS t) WITH ('connector' = 'kafka'); CREATE TABLE live_out WITH "
     "('connector' = 'kafka', 'topic' = 'live') AS SELECT t FROM s", "s", "cannot run safely.*AS SELECT"),
    ("CREATE TABLE s (t TIMESTAMP(3), WATERMARK FOR t AS t) WITH ('connector' = 'kafka'); CREATE TABLE y (a INT) WITH "
     "('connector' = 'print'); INSERT INTO y SELECT 1 FROM s; INSERT INTO y SELECT 2 FROM s", "s",
     "submits 2 Flink jobs.*STATEMENT SET"),
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
    assert (r.matched, r.missing, r.extra, r.duplicates_backfill, r.repeats_backfill) == (2, 1, 1, 0, 1)
    assert r.missing_ratio == pytest.approx(1 / 3) and r.extra_ratio == pytest.approx(1 / 3)  # of distinct keys
    assert r.features["x"].mismatches == 1 and r.features["x"].mismatch_ratio == 0.5
    assert r.features["x"].smape == pytest.approx((0 + 2 * 2 / 10) / 2)
    assert r.features["s"].smape is None  # not numeric
    assert "NOT EQUAL" in r.summary() and "'missing_in': 'backfill'" in r.summary()
    assert compare([{"u": 1, "x": 0.1 + 0.2}], [{"u": 1, "x": 0.3}], keys=["u"]).equal  # float noise is not a mismatch


def test_windows_that_need_history_before_the_range_are_named():
    assert warmup_needed(_features_sql()) is None  # 10-minute TUMBLE windows: each starts inside the range
    assert "does not divide an hour" in warmup_needed("FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '7' MINUTE))")
    assert "HOP" in warmup_needed("FROM TABLE(HOP(TABLE s, DESCRIPTOR(ts), INTERVAL '5' MINUTE, INTERVAL '1' HOUR))")
    assert "OVER" in warmup_needed("SELECT SUM(x) OVER (PARTITION BY k ORDER BY ts RANGE INTERVAL '1' DAY PRECEDING)")


def test_quoted_comment_markers_zone_less_times_and_nested_types_are_read_right():
    sql = ("CREATE TABLE s (t TIMESTAMP(3), m MAP<STRING, BIGINT>, o BIGINT METADATA FROM 'offset' VIRTUAL COMMENT 'x', "
           "WATERMARK FOR t AS t) WITH ('connector' = 'kafka', 'topic' = 'a--b'); CREATE TABLE y (a INT) WITH "
           "('connector' = 'print'); INSERT INTO y SELECT 1 FROM s")
    src = plan_replay(sql, "s").source
    assert ("topic", "a--b") in src.option_pairs()
    assert src.column_types() == [("t", "TIMESTAMP(3)"), ("m", "MAP<STRING, BIGINT>"), ("o", "BIGINT")]
    assert parse_time("2026-01-01T00:00:00") == parse_time("2026-01-01T00:00:00Z") == 1_767_225_600_000


def test_live_redeliveries_are_not_differences_but_conflicting_duplicates_are():
    row = {"u": "a", "v": 1, "x": 1}
    assert compare([row, dict(row)], [row], keys=["u", "v"]).equal  # at-least-once: the same row twice
    r = compare([row, {**row, "x": 2}], [row], keys=["u", "v"])
    assert not r.equal and r.duplicates_live == 1


def test_a_staging_folder_the_backfill_did_not_create_is_never_deleted(tmp_path):
    from airflow_rtml.operators.backfill import _reset_staging

    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "data.csv").write_text("keep me")
    with pytest.raises(BackfillError, match="not created by a backfill.*nothing was deleted"):
        _reset_staging(precious)
    assert (precious / "data.csv").read_text() == "keep me"
    staging = tmp_path / "staging"
    _reset_staging(staging)
    (staging / "old-output").write_text("x")
    _reset_staging(staging)  # its own folder: emptied for the retry
    assert [p.name for p in staging.iterdir()] == [".rtml-backfill-staging"]


def test_a_metadata_column_the_archive_did_not_keep_is_refused_before_anything_runs(tmp_path):
    from airflow_rtml.offline.archive import ArchiveTable
    from airflow_rtml.operators.backfill import FeatureBackfillOperator

    sql = ("CREATE TABLE s (a STRING, kts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL, t AS NOW(), "
           "WATERMARK FOR t AS t) WITH ('connector' = 'kafka'); CREATE TABLE y (a STRING, version_ms BIGINT) WITH "
           "('connector' = 'print'); INSERT INTO y SELECT a, 1 FROM s")
    archive = ArchiveTable("db", "s", str(tmp_path / "s"), (("a", "string"), ("kafka_ts_ms", "bigint")))
    op = FeatureBackfillOperator(task_id="b", sql=sql, source="s", archive=archive, start=0, end=H,
                                 metastore_conn_id=None)
    with pytest.raises(BackfillError, match=r"metadata column\(s\) \['kts'\] have no column of that name"):
        op.execute({})
    assert not (tmp_path / "s").exists()  # nothing ran
