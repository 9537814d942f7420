"""The archive: streams written by Flink into hourly ``dt=YYYY-MM-DD/hour=HH`` Parquet partitions, by event time.

Flink's filesystem sink writes each record into the partition of its event-time hour and *commits* a partition
(writes its success file ``_SUCCESS``) once the sink's watermark has passed the hour's end and the checkpoint
holding its files completed (``sink.partition-commit.trigger = partition-time``, ``delay = 1 h``). This module is
what happens next, on the batch side: a closed window's partition is checked (success file, readable Parquet,
the table's schema) and only then registered in the Hive metastore — so Airflow's own Hive partition sensors see
a partition exactly when it is complete, never a partial one.

No Airflow import here: the operator (``operators/hive.py``), the demo and the tests share it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

from airflow_rtml.exceptions import ArchiveFileCorrupt, ArchiveSchemaMismatch, PartitionNotCommitted

HOUR_MS = 3_600_000
SUCCESS_FILE = "_SUCCESS"

#: The ``WITH`` options of a Flink filesystem sink partitioned by ``dt``/``hour`` that commits each hour (writes
#: ``_SUCCESS``) the instant it is closed in event time. Flink commits when ``watermark > partition start + delay``;
#: a delay of 1 h - 2 ms makes that ``watermark >= hour end - 1 ms`` — the instant airflow-rtml's window signal
#: calls the hour closed (a watermark t promises no more records at or before t), never earlier. With ``1 h`` a
#: stream whose watermark rests exactly on the boundary would never commit the hour.
HOURLY_PARTITION_COMMIT = (
    "'sink.partition-commit.trigger' = 'partition-time', "
    "'partition.time-extractor.timestamp-pattern' = '$dt $hour:00:00',\n"
    "    'sink.partition-commit.delay' = '3599998 ms', 'sink.partition-commit.watermark-time-zone' = 'UTC',\n"
    "    'sink.partition-commit.policy.kind' = 'success-file'"
)

#: Hive type of each Arrow type the archive writes (what Flink's Parquet writer produces for our SQL types).
HIVE_TYPES = {"string": "string", "large_string": "string", "int64": "bigint", "int32": "int", "double": "double",
              "float": "float", "bool": "boolean", "timestamp[ms]": "timestamp", "timestamp[us]": "timestamp",
              "timestamp[ms, tz=UTC]": "timestamp", "timestamp[us, tz=UTC]": "timestamp"}


def hour_values(start_ms: int) -> tuple[str, str]:
    """The partition values (``dt``, ``hour``) of the event-time hour starting at ``start_ms`` (UTC)."""
    if start_ms % HOUR_MS:
        raise ValueError(f"{start_ms} is not the start of an hour (ms since the epoch, UTC)")
    t = datetime.fromtimestamp(start_ms / 1000, tz=timezone.utc)
    return t.strftime("%Y-%m-%d"), t.strftime("%H")


def hour_start_ms(values: Sequence[str]) -> int:
    dt, hour = values
    return int(datetime.strptime(f"{dt} {hour}", "%Y-%m-%d %H").replace(tzinfo=timezone.utc).timestamp() * 1000)


@dataclass
class ArchiveTable:
    """One archived stream: Hive table ``db.table`` over ``path`` (``<path>/dt=…/hour=…/part-*``).

    ``db``, ``table`` and ``path`` may be Jinja templates when the table is an operator argument (Airflow renders
    them: ``template_fields``), e.g. a database named after a Variable.
    """

    template_fields: ClassVar[tuple[str, ...]] = ("db", "table", "path")

    db: str
    table: str
    path: str
    columns: tuple[tuple[str, str], ...]  # (name, Hive type), in file order, without the partition keys

    @property
    def name(self) -> str:
        return f"{self.db}.{self.table}"

    @property
    def location(self) -> str:
        return file_uri(self.path)

    def partition_dir(self, values: Sequence[str]) -> Path:
        dt, hour = values
        return Path(self.path) / f"dt={dt}" / f"hour={hour}"

    def partition_location(self, values: Sequence[str]) -> str:
        return file_uri(self.partition_dir(values))

    def partition_ref(self, values: Sequence[str]) -> str:
        """``db.table/dt=…/hour=…``: a ``NamedHivePartitionSensor`` partition name."""
        dt, hour = values
        return f"{self.name}/dt={dt}/hour={hour}"

    def run_partition_ref(self) -> str:
        """The partition of the run's hour as a template for Airflow's Hive sensors: ``partition_names=[…]`` of a
        run scheduled by an hourly window asset (partition key ``YYYY-MM-DDTHH:00:00Z``)."""
        return f"{self.name}/dt={{{{ dag_run.partition_key[:10] }}}}/hour={{{{ dag_run.partition_key[11:13] }}}}"


def file_uri(path: str | Path) -> str:
    """``file:///abs/path`` *unescaped*: Hadoop paths keep ``=`` of ``dt=…`` literally (``Path.as_uri()`` would
    write ``%3D``, a folder that does not exist). A location that already has a scheme is returned as it is."""
    text = str(path)
    if "://" in text or text.startswith("file:"):
        return text
    return "file://" + str(Path(text).resolve())


def data_files(directory: Path) -> list[Path]:
    """The partition's data files: Flink's in-progress (``.part-…``) and marker (``_…``) files excluded."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith((".", "_")))


#: The per-window data-quality report (``WindowQualityCheckOperator``), beside the partition's data. Its leading
#: ``_`` keeps it out of every reader (Hive, Spark, pyarrow and :func:`data_files` skip such files).
DQC_REPORT_FILE = "_DQC.json"


def write_window_report(table: ArchiveTable, values: Sequence[str], report: dict) -> Path:
    """Write the data-quality report of one partition (atomically: a reader never sees half of it)."""
    directory = table.partition_dir(values)
    path, tmp = directory / DQC_REPORT_FILE, directory / f".{DQC_REPORT_FILE}.tmp"
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def read_window_report(table: ArchiveTable, values: Sequence[str]) -> dict | None:
    """The data-quality report of one partition, or None when it was not checked (yet)."""
    try:
        return json.loads((table.partition_dir(values) / DQC_REPORT_FILE).read_text())
    except FileNotFoundError:
        return None


def wait_committed(table: ArchiveTable, values: Sequence[str], timeout_s: float = 60.0,
                   poll_s: float = 0.5) -> list[Path]:
    """The committed data files of a partition; wait up to ``timeout_s`` for its success file.

    The closed + committed window signal can reach Airflow a moment before Flink's committer (which runs on the
    checkpoint-complete notification) writes ``_SUCCESS``; a partition without it is never registered.
    """
    directory = table.partition_dir(values)
    deadline = time.monotonic() + timeout_s
    while not (directory / SUCCESS_FILE).exists():
        if time.monotonic() >= deadline:
            files = data_files(directory)
            raise PartitionNotCommitted(
                f"{table.partition_ref(values)}: no {SUCCESS_FILE} in {directory} after {timeout_s:g}s "
                f"({len(files)} data file(s) there, {'none' if not files else 'not committed'}). The partition is "
                f"not registered. To fix this, check that the archive job runs with checkpointing and "
                f"'sink.partition-commit.policy.kind' = 'success-file', and that its watermark passed the hour."
            )
        time.sleep(poll_s)
    return data_files(directory)


def file_schema(path: Path) -> list[tuple[str, str]]:
    """(column, Hive type) pairs of one Parquet file; :class:`ArchiveFileCorrupt` naming it if unreadable."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid/OSError for every kind of damage
        raise ArchiveFileCorrupt(f"{path} is not a readable Parquet file ({type(exc).__name__}: {exc}). "
                                 f"To fix this, remove or rewrite the file and re-run.") from exc
    return [(f.name, HIVE_TYPES.get(str(f.type), str(f.type))) for f in schema]


def check_files(table: ArchiveTable, files: Sequence[Path]) -> int:
    """Check every file is readable Parquet with the table's columns; return the number of rows."""
    import pyarrow.parquet as pq

    want = [(n.lower(), t.lower()) for n, t in table.columns]
    rows = 0
    for f in files:
        have = [(n.lower(), t.lower()) for n, t in file_schema(f)]
        if have != want:
            raise ArchiveSchemaMismatch(
                f"{f} has columns {have}; table {table.name} has {want}. The partition is not registered. To fix "
                f"this, archive the new schema into a new table (the archive job's sink and the table must agree)."
            )
        rows += pq.ParquetFile(f).metadata.num_rows
    return rows


def read_partition(table: ArchiveTable, values: Sequence[str], columns: Sequence[str] | None = None):
    """The committed rows of one partition as a ``pyarrow.Table`` (only that partition's files are opened)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = table.partition_dir(values)
    if not (directory / SUCCESS_FILE).exists():
        raise PartitionNotCommitted(f"{table.partition_ref(values)} is not committed (no {SUCCESS_FILE} in {directory})")
    parts = []
    for f in data_files(directory):
        file_schema(f)  # a corrupt file is named, not reported as a generic read error
        parts.append(pq.read_table(f, columns=list(columns) if columns else None))
    if not parts:
        names = list(columns) if columns else [n for n, _ in table.columns]
        return pa.table({n: pa.array([], type=pa.null()) for n in names})
    return pa.concat_tables(parts)


def warehouse_root() -> Path:
    """The warehouse folder of the local stack (``RTML_WAREHOUSE``), or ``/tmp/rtml-warehouse``."""
    return Path(os.environ.get("RTML_WAREHOUSE", "/tmp/rtml-warehouse"))
