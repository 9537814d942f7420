"""Stream → batch, offline side: register a closed, committed event-time window's archive partitions in Hive.

Run :class:`ArchivePartitionOperator` in the DAG that a window event (``StreamWindowSensor`` with
``commit_aware=True``, one run per closed hour) schedules. It registers the hour's partition of each archive
table in the Hive metastore — once, and only after checking that Flink committed it (``_SUCCESS``) and that every
file is readable Parquet with the table's schema. Downstream batch steps then wait with Airflow's own
``NamedHivePartitionSensor`` / ``HivePartitionSensor`` (apache-airflow-providers-apache-hive): they see a
partition exactly when it is complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TypedDict

from airflow.sdk import BaseOperator, Context

from airflow_rtml.exceptions import OfflineError
from airflow_rtml.offline.archive import ArchiveTable, check_files, hour_values, wait_committed
from airflow_rtml.offline.metastore import ensure_database, ensure_table, register_partition


class PartitionResult(TypedDict):
    """One table's outcome (the operator returns a list of these, its XCom)."""

    table: str  # db.table
    partition: str  # db.table/dt=…/hour=… (a NamedHivePartitionSensor name)
    location: str
    files: int
    rows: int
    registered: bool  # False: it was already registered (a retry, or a second run of the window)


class ArchivePartitionOperator(BaseOperator):
    """Register the archive partitions of one closed event-time hour in the Hive metastore, exactly once.

    First, for every table: wait up to ``commit_timeout`` for Flink's success file and check every data file
    (readable Parquet, the table's columns) — one failing table registers none. Then, per table: create the database and the external table if missing (an existing table with
    other columns raises :class:`~airflow_rtml.exceptions.ArchiveSchemaMismatch` before anything is registered),
    then register the partition (``ifNotExists``: a retry or a second run is a no-op that returns
    ``registered=False``). Returns a list of :class:`PartitionResult`; the asset event of each outlet carries
    ``window_start_ms``, ``window_end_ms`` and ``partitions`` (partition name → rows).

    Templated fields: ``tables``, ``partition_key`` (Airflow renders each table's db, table and path too).

    :param tables: the archive tables whose partition of this hour to register.
    :param partition_key: the hour, as the window asset's partition key (ISO start, e.g.
        ``2026-01-01T00:00:00Z``); default: the run's ``partition_key`` (a run scheduled by a window event).
    :param commit_timeout: how long to wait for the success file after the window's signal (Flink writes it when
        the checkpoint completes, which can be a moment after the signal).
    :param metastore_conn_id: a ``hive_metastore`` connection (the Hive provider's), e.g. ``metastore_default``.
    """

    template_fields: Sequence[str] = ("tables", "partition_key")

    def __init__(self, *, tables: Sequence[ArchiveTable], partition_key: str = "{{ dag_run.partition_key }}",
                 commit_timeout: timedelta | float = timedelta(seconds=60),
                 metastore_conn_id: str = "metastore_default", **kwargs: Any):
        super().__init__(**kwargs)
        if not tables:
            raise ValueError("tables must name at least one ArchiveTable")
        self.tables = list(tables)
        self.partition_key = partition_key
        self.commit_timeout = commit_timeout.total_seconds() if isinstance(commit_timeout, timedelta) else float(commit_timeout)
        self.metastore_conn_id = metastore_conn_id

    def execute(self, context: Context) -> list[PartitionResult]:
        from airflow.providers.apache.hive.hooks.hive import HiveMetastoreHook

        from airflow_rtml.sensors.watermark import window_from_partition_key

        if not self.partition_key or self.partition_key in ("None", ""):
            raise OfflineError(
                "ArchivePartitionOperator needs the hour to register: this run has no partition_key. To fix this, "
                "schedule the DAG on the window asset (PartitionedAssetTimetable) or pass partition_key=.")
        window = window_from_partition_key(self.partition_key, timedelta(hours=1))
        values = hour_values(window.start_ms)
        out: list[PartitionResult] = []
        checked = []  # every table is checked before any is registered: a bad one registers none of them
        for table in self.tables:
            files = wait_committed(table, values, timeout_s=self.commit_timeout)
            checked.append((table, files, check_files(table, files)))
        with HiveMetastoreHook(metastore_conn_id=self.metastore_conn_id).get_metastore_client() as client:
            for table, files, rows in checked:
                ensure_database(client, table.db, f"{table.location.rsplit('/', 1)[0]}")
                ensure_table(client, table.db, table.table, table.columns, table.location)
                added = register_partition(client, table.db, table.table, values,
                                           table.partition_location(values),
                                           {"rtml.rows": str(rows), "rtml.files": str(len(files))})
                self.log.info("%s: %s (%d file(s), %d row(s))", table.partition_ref(values),
                              "registered" if added else "already registered, nothing changed", len(files), rows)
                out.append(PartitionResult(table=table.name, partition=table.partition_ref(values),
                                           location=str(table.partition_dir(values)), files=len(files), rows=rows,
                                           registered=added))
        # Each outlet's asset event says which partitions of which hour are now visible (and how big).
        events = context.get("outlet_events") if hasattr(context, "get") else None
        for outlet in (getattr(self, "outlets", None) or []) if events is not None else []:
            events[outlet].extra.update({"window_start_ms": window.start_ms, "window_end_ms": window.end_ms,
                                         "partitions": {r["partition"]: r["rows"] for r in out}})
        return out
