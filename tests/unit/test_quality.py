"""Per-window data-quality rules, and the operator on real Parquet partitions: a committed window only, a blocking
failure skips the window's downstream naming the rule, a warning only notifies, volume against earlier windows."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import ti_context

from airflow_rtml.exceptions import DataQualityConfigError, PartitionNotCommitted
from airflow_rtml.offline.archive import SUCCESS_FILE, ArchiveTable, hour_values, read_partition
from airflow_rtml.quality import Check, MeanBetween, NullRatio, RowCount, ValueRange, VolumeVsBaseline, evaluate

HOUR = 3_600_000
H0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def samples(n: int, clicked: int, null_users: int = 0) -> pa.Table:
    return pa.table({"user": [None] * null_users + [f"u{i}" for i in range(n - null_users)],
                     "label": [1] * clicked + [0] * (n - clicked), "ts_ms": list(range(n))})


def test_each_rule_measures_and_compares():
    t = samples(100, clicked=10, null_users=5)
    report = evaluate([RowCount(min_rows=50), NullRatio(column="user", max_ratio=0.01, severity="warn"),
                       ValueRange(column="label", min=0, max=1), MeanBetween(column="label", min=0.05, max=0.2),
                       Check(name="even", fn=lambda tb: tb.num_rows % 2 == 0)], t)
    by = {r.rule: r for r in report.results}
    assert by["row_count"].passed and by["row_count"].value == 100
    assert not by["null_ratio(user)"].passed and by["null_ratio(user)"].value == 0.05
    assert by["value_range(label)"].passed and by["mean(label)"].value == 0.1
    assert by["even"].passed
    assert report.blocked == [] and report.warnings == ["null_ratio(user)"]


def test_volume_against_the_median_of_earlier_windows():
    rule = VolumeVsBaseline(min_ratio=0.7, windows=3)
    assert evaluate([rule], samples(50, 5), [100, 100]).results[0].passed  # no baseline yet (2 < 3)
    low = evaluate([rule], samples(50, 5), [90, 100, 110, 1000]).results[0]  # median of the last 3 = 110
    assert not low.passed and low.value == round(50 / 110, 4) and "baseline 110" in low.message
    assert evaluate([rule], samples(100, 5), [90, 100, 110]).results[0].passed


def test_a_users_rule_that_raises_fails_alone():
    report = evaluate([Check(name="boom", fn=lambda tb: 1 / 0), RowCount(min_rows=1)], samples(3, 1))
    assert [r.passed for r in report.results] == [False, True]
    assert "ZeroDivisionError" in report.results[0].message


def test_bad_rules_are_refused_with_the_fix():
    with pytest.raises(DataQualityConfigError, match="no column 'nope'"):
        evaluate([NullRatio(column="nope")], samples(3, 1))
    with pytest.raises(DataQualityConfigError, match="appear twice"):
        evaluate([RowCount(min_rows=1), RowCount(max_rows=5)], samples(3, 1))
    with pytest.raises(DataQualityConfigError, match="severity"):
        RowCount(min_rows=1, severity="fatal")
    with pytest.raises(DataQualityConfigError, match="name= and fn="):
        Check(fn=lambda tb: True)


# --------------------------------------------------------------------------- the operator on real partitions
def _table(tmp_path) -> ArchiveTable:
    return ArchiveTable("demo", "samples", str(tmp_path / "samples"), (("user", "string"), ("label", "int"),
                                                                        ("ts_ms", "bigint")))


def _write(table: ArchiveTable, start_ms: int, rows: pa.Table, committed: bool = True) -> None:
    d = table.partition_dir(hour_values(start_ms))
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, d / "part-0.parquet")
    if committed:
        (d / SUCCESS_FILE).touch()


def _iso(ms: int) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _operator(table, **kw):
    from airflow_rtml.operators.quality import WindowQualityCheckOperator

    return WindowQualityCheckOperator(task_id="dqc", table=table, commit_timeout=0.5, **kw)


def test_a_blocking_failure_skips_the_window_naming_the_rule_and_notifies(tmp_path):
    from airflow.sdk.exceptions import AirflowSkipException

    table = _table(tmp_path)
    for k in range(3):
        _write(table, H0 + k * HOUR, samples(100, 10))
    _write(table, H0 + 3 * HOUR, samples(100, 4))  # half the clicks dropped at the source
    seen = []
    rules = [VolumeVsBaseline(min_ratio=0.5, windows=3),
             MeanBetween(column="label", min=0.07, name="label_join_rate")]
    op = _operator(table, rules=rules, partition_key=_iso(H0 + 3 * HOUR), notifiers=[seen.append])
    ctx = ti_context("dqc")
    with pytest.raises(AirflowSkipException, match=r"blocked by data-quality rule\(s\) label_join_rate: "
                                                   r"label_join_rate \(block\) failed: mean 0.0400"):
        op.execute(ctx)
    assert ctx["ti"].xcoms["dqc"]["blocked"] == ["label_join_rate"]
    assert len(seen) == 1 and seen[0]["dqc"]["blocked"] == ["label_join_rate"]
    # every other hour passes: only the anomalous window is blocked
    for k in range(1, 3):
        ok = _operator(table, rules=rules, partition_key=_iso(H0 + k * HOUR)).execute(ti_context("dqc"))
        assert ok["blocked"] == [] and ok["rows"] == 100
    # the per-window report beside the data: a later step tells a blocked window from one not checked yet
    from airflow_rtml.offline.archive import read_window_report

    assert read_window_report(table, hour_values(H0 + 3 * HOUR))["blocked"] == ["label_join_rate"]
    assert read_window_report(table, hour_values(H0 + 1 * HOUR))["blocked"] == []
    assert read_window_report(table, hour_values(H0)) is None  # never checked
    assert read_partition(table, hour_values(H0 + 3 * HOUR)).num_rows == 100  # readers skip the report file


def test_a_warning_only_notifies(tmp_path):
    table = _table(tmp_path)
    _write(table, H0, samples(10, 1, null_users=2))
    seen = []
    result = _operator(table, rules=[NullRatio(column="user", max_ratio=0.1, severity="warn")],
                       partition_key=_iso(H0), notifiers=[seen.append]).execute(ti_context("dqc"))
    assert result["warnings"] == ["null_ratio(user)"] and result["blocked"] == [] and len(seen) == 1


def test_an_uncommitted_window_is_never_checked(tmp_path):
    table = _table(tmp_path)
    _write(table, H0, samples(10, 1), committed=False)
    with pytest.raises(PartitionNotCommitted, match="no _SUCCESS"):
        _operator(table, rules=[RowCount(min_rows=1)], partition_key=_iso(H0)).execute(ti_context("dqc"))


def test_duplicate_rule_names_fail_when_the_dag_is_parsed(tmp_path):
    with pytest.raises(DataQualityConfigError):
        _operator(_table(tmp_path), rules=[RowCount(min_rows=1), RowCount(max_rows=2)])


def test_the_rules_import_no_airflow():
    code = ("import sys, airflow_rtml.quality; bad = [m for m in sys.modules if m.split('.')[0] == 'airflow']; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_users_check_may_return_numpy_or_arrow_values_and_a_bad_one_fails_alone():
    import numpy as np
    import pyarrow.compute as pc

    t = samples(10, 1)
    report = evaluate([Check(name="np_false", fn=lambda tb: np.array([1, 2]).sum() > 100),
                       Check(name="arrow_mean", fn=lambda tb: pc.mean(tb.column("label")), max=0.5),
                       Check(name="none", fn=lambda tb: None, min=0),
                       Check(name="unbounded", fn=lambda tb: 3)], t)
    by = {r.rule: r for r in report.results}
    assert not by["np_false"].passed and by["np_false"].message == "returned False"
    assert by["arrow_mean"].passed and by["arrow_mean"].value == 0.1
    assert not by["none"].passed and "TypeError" in by["none"].message
    assert not by["unbounded"].passed and "needs min= or max=" in by["unbounded"].message


def test_nan_is_outside_every_range():
    t = pa.table({"x": [0.5, float("nan"), 0.7]})
    r = evaluate([ValueRange(column="x", min=0, max=1)], t).results[0]
    assert not r.passed and "1 of 3" in r.message


def test_feature_crossing_counts_rows_joined_with_a_feature_from_their_future():
    from airflow_rtml.quality import FeatureCrossing

    table = pa.table({"ts_ms": [10, 20, 30, 40], "user_version_ms": [5, 20, 31, None]})
    r = FeatureCrossing(version_column="user_version_ms", time_column="ts_ms").evaluate(table, [])
    assert not r.passed and r.value == 1 and r.rule == "feature_crossing(user_version_ms)"  # 31 > 30; equal is fine
    ok = pa.table({"ts_ms": [10, 20], "user_version_ms": [None, 20]})
    assert FeatureCrossing(version_column="user_version_ms", time_column="ts_ms").evaluate(ok, []).passed
    with pytest.raises(DataQualityConfigError, match="no column 'nope'"):
        FeatureCrossing(version_column="nope", time_column="ts_ms").evaluate(ok, [])


def test_a_sql_rule_runs_over_the_window_and_a_bad_query_fails_alone():
    from airflow_rtml.quality import SqlCheck

    table = samples(100, 10)
    rate = SqlCheck(name="ctr", sql="SELECT avg(label) FROM rows", min=0.05, max=0.2)
    assert rate.evaluate(table, []).passed and rate.evaluate(table, []).value == pytest.approx(0.1)
    assert SqlCheck(name="any_click", sql="SELECT bool_or(label = 1) FROM rows").evaluate(table, []).passed
    low = SqlCheck(name="ctr_low", sql="SELECT avg(label) FROM rows", min=0.5).evaluate(table, [])
    assert not low.passed and "0.1, expected >= 0.5" in low.message
    report = evaluate([SqlCheck(name="broken", sql="SELECT nope FROM rows", max=1), RowCount(min_rows=1),
                       SqlCheck(name="two", sql="SELECT 1, 2", max=3)], table)
    assert report.blocked == ["broken", "two"] and "Binder Error" in report.results[0].message
    assert "2 column(s)" in report.results[2].message
    with pytest.raises(DataQualityConfigError, match="name= and sql="):
        SqlCheck(sql="SELECT 1")
