"""The archive's batch-side checks (issue 12): a partition is read or registered only when Flink committed it, every
file is readable Parquet with the table's schema, and a bad file is named."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_rtml.exceptions import ArchiveFileCorrupt, ArchiveSchemaMismatch, PartitionNotCommitted
from airflow_rtml.offline.archive import (
    SUCCESS_FILE,
    ArchiveTable,
    check_files,
    data_files,
    file_uri,
    hour_start_ms,
    hour_values,
    read_partition,
    wait_committed,
)
from airflow_rtml.offline.metastore import same_location

H = 1_767_225_600_000  # 2026-01-01T00:00:00Z
COLS = (("imp_id", "string"), ("ts_ms", "bigint"), ("kafka_offset", "bigint"))


def _table(tmp_path) -> ArchiveTable:
    return ArchiveTable("db", "samples", str(tmp_path / "samples"), COLS)


def _write(table: ArchiveTable, values, name: str, rows: dict, commit: bool = True):
    d = table.partition_dir(values)
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), d / name)
    if commit:
        (d / SUCCESS_FILE).write_text("")
    return d / name


def _rows(n: int, start: int = 0) -> dict:
    return {"imp_id": [f"i{i}" for i in range(start, start + n)], "ts_ms": pa.array([H + i for i in range(n)], pa.int64()),
            "kafka_offset": pa.array(list(range(start, start + n)), pa.int64())}


def test_hour_values_are_utc_partition_values_and_round_trip():
    assert hour_values(H + 13 * 3_600_000) == ("2026-01-01", "13")
    assert hour_start_ms(("2026-01-01", "13")) == H + 13 * 3_600_000
    with pytest.raises(ValueError, match="not the start of an hour"):
        hour_values(H + 1)


def test_locations_keep_the_equals_sign_of_hive_partition_folders(tmp_path):
    # Path.as_uri() would write dt%3D…: a folder Hadoop does not find.
    uri = file_uri(tmp_path / "t" / "dt=2026-01-01" / "hour=00")
    assert uri.endswith("/t/dt=2026-01-01/hour=00") and uri.startswith("file:///")
    assert same_location("file:/a/b/dt=1", "file:///a/b/dt=1/") and not same_location("file:/a/b", "file:/a/c")


def test_flinks_in_progress_and_marker_files_are_not_data(tmp_path):
    t = _table(tmp_path)
    _write(t, ("2026-01-01", "00"), "part-1-0", _rows(2))
    d = t.partition_dir(("2026-01-01", "00"))
    (d / ".part-2-0.inprogress.abc").write_text("x")
    assert [p.name for p in data_files(d)] == ["part-1-0"]


def test_a_partition_without_its_success_file_is_never_read_nor_registered(tmp_path):
    t = _table(tmp_path)
    values = ("2026-01-01", "00")
    _write(t, values, "part-1-0", _rows(3), commit=False)
    with pytest.raises(PartitionNotCommitted, match=r"db\.samples/dt=2026-01-01/hour=00: no _SUCCESS .* \(1 data file"):
        wait_committed(t, values, timeout_s=0.3, poll_s=0.1)
    with pytest.raises(PartitionNotCommitted):
        read_partition(t, values)


def test_a_committed_partition_reads_exactly_its_files(tmp_path):
    t = _table(tmp_path)
    values = ("2026-01-01", "00")
    _write(t, values, "part-1-0", _rows(3))
    _write(t, values, "part-1-1", _rows(2, start=3))
    _write(t, ("2026-01-01", "01"), "part-1-2", _rows(50, start=5))  # the next hour: never opened
    files = wait_committed(t, values, timeout_s=0.1)
    assert check_files(t, files) == 5
    assert sorted(read_partition(t, values).column("imp_id").to_pylist()) == sorted(f"i{i}" for i in range(5))


def test_a_corrupt_file_is_named(tmp_path):
    t = _table(tmp_path)
    values = ("2026-01-01", "00")
    good = _write(t, values, "part-1-0", _rows(3))
    bad = good.with_name("part-1-1")
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])  # truncated
    with pytest.raises(ArchiveFileCorrupt, match="part-1-1 is not a readable Parquet file"):
        check_files(t, data_files(t.partition_dir(values)))
    with pytest.raises(ArchiveFileCorrupt, match="part-1-1"):
        read_partition(t, values)


def test_a_schema_change_is_refused_before_anything_is_registered(tmp_path):
    t = _table(tmp_path)
    values = ("2026-01-01", "00")
    rows = _rows(2)
    rows["kafka_offset"] = pa.array(["0", "1"])  # the job now writes the offset as a string
    _write(t, values, "part-1-0", rows)
    with pytest.raises(ArchiveSchemaMismatch, match=r"part-1-0 has columns .*'kafka_offset', 'string'.* has .*'bigint'"):
        check_files(t, data_files(t.partition_dir(values)))


def test_the_run_partition_template_names_the_hour_of_the_runs_partition_key():
    import jinja2

    t = ArchiveTable("db", "samples", "/w/samples", COLS)
    rendered = jinja2.Template(t.run_partition_ref()).render(dag_run={"partition_key": "2026-01-01T13:00:00Z"})
    assert rendered == "db.samples/dt=2026-01-01/hour=13"
