"""Feature backfill from Airflow: replay an event-time range of the archive through the live feature SQL.

:class:`FeatureBackfillOperator` runs, in one task, the steps of :mod:`airflow_rtml.offline.backfill`:
check the range's archive partitions (all of them, before anything runs) → a Spark job that writes the ordered
logical partitions → the live SQL with its source and sinks swapped, as a bounded Flink streaming job → the
versioned output (entity, version) written into hourly Hive partitions of the version's data hour and registered.
Re-running a range replaces its partitions; it never duplicates a row.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypedDict

from airflow.sdk import BaseOperator, Context

from airflow_rtml.hooks.flink import JobState

from airflow_rtml.exceptions import BackfillError, BackfillOverlapsLiveJob, BackfillPartitionsMissing, FlinkSqlError
from airflow_rtml.offline.archive import HOUR_MS, SUCCESS_FILE, ArchiveTable, hour_values, warehouse_root
from airflow_rtml.offline.backfill import (
    ReplayPlan,
    check_range,
    hours,
    logical_partition_files,
    parse_time,
    plan_replay,
    warmup_needed,
)

#: Hive type of each Flink SQL type a feature sink may declare (the versioned table's columns).
HIVE_OF_SQL = {"STRING": "string", "VARCHAR": "string", "BIGINT": "bigint", "INT": "int", "INTEGER": "int",
               "DOUBLE": "double", "FLOAT": "float", "BOOLEAN": "boolean", "SMALLINT": "int", "TINYINT": "int"}
LOGICAL_PARTITIONS_JOB = Path(__file__).resolve().parent.parent / "offline" / "jobs" / "logical_partitions.py"


class BackfillResult(TypedDict):
    """What a backfill did (the operator's XCom)."""

    start_ms: int
    end_ms: int
    input_hours: list[str]  # archive partitions read (warm-up + range)
    lookahead_hours: list[str]  # committed partitions after the range read for the watermark only
    logical_partitions: int
    input_records: int
    job_id: str
    outputs: dict[str, dict[str, int]]  # table -> partition -> rows
    seconds: dict[str, float]  # per step


def _hours_of(td: timedelta | float | int) -> int:
    seconds = td.total_seconds() if isinstance(td, timedelta) else float(td)
    return -(-int(seconds * 1000) // HOUR_MS)  # whole hours, rounded up


class FeatureBackfillOperator(BaseOperator):
    """Backfill a feature's history through the live job's own SQL, in the live order, versioned.

    Steps (each logs its progress and time): (1) the replay plan is checked — the source has a swappable
    ``CREATE TABLE ... WITH (...)`` with a ``WATERMARK``, every sink is declared; (2) every archive partition of
    the warm-up and the range must be committed and registered, or :class:`~airflow_rtml.exceptions.BackfillPartitionsMissing`
    lists the missing ones; (3) if ``live_job_name`` runs and its watermark passed the range's start,
    :class:`~airflow_rtml.exceptions.BackfillOverlapsLiveJob` (unless ``allow_live_overlap``); (4) Spark writes one
    ordered file per logical partition; (5) Flink runs the swapped SQL over them (streaming mode, bounded; a
    leftover run of a previous attempt is cancelled first); (6) the sinks' rows with a version in
    ``(start, end]`` are written into hourly partitions of ``output_tables`` (the version's data hour, see
    :func:`~airflow_rtml.offline.backfill.version_hour`), replacing what a previous run wrote, and registered.

    Templated fields: ``sql``, ``start``, ``end``, ``archive``, ``output_tables``, ``job_name``, ``staging_dir``,
    ``live_job_name``, ``allow_live_overlap`` (a rendered ``"True"``/``"false"`` counts as the boolean),
    ``publish_topics``, ``bootstrap_servers``.

    :param sql: the live feature job's SQL, rendered (the *same* text the live job runs), or a path ending in
        ``.sql`` (read as a template).
    :param source: the table of the SQL to replay from the archive (e.g. ``samples_in``).
    :param archive: the archive table holding that stream's history (with Kafka partition and offset).
    :param start: the range's start (inclusive), a whole hour: ms, ISO-8601 or datetime.
    :param end: the range's end (exclusive), a whole hour.
    :param output_tables: sink table of the SQL → the versioned Hive table for its rows. Default: a table of the
        sink's name in the archive's database, under the archive's warehouse folder.
    :param version_column: the sinks' version column (ms since the epoch; the window end).
    :param warmup: history before ``start`` the feature needs (e.g. its window length for windows that do not
        start on the hour); read, but no version at or before ``start`` is written.
    :param lookahead: archive after ``end`` read for the watermark only (so records near the end are late or
        not exactly as live); partitions not yet committed are skipped, and the log says so.
    :param keep_tables: other tables of the SQL that may keep reading their live connector.
    :param live_job_name: the live feature job's name, to refuse overlapping a running job's output.
    :param allow_live_overlap: run even if that job already passed ``start``.
    :param order_column: the archive's offset column (``''``: no offsets, order by ``time_column`` with
        ``tie_break``, partition by ``key_column`` hashed into ``partitions``).
    :param partition_column: the archive's Kafka-partition column.
    :param key_column: without offsets: the live topic's key.
    :param partitions: without offsets: the live topic's partition count.
    :param time_column: without offsets: the event-time column.
    :param tie_break: without offsets: columns that break event-time ties.
    :param job_name: the replay's Flink job name (default: ``<task_id>-<start>-<end>``).
    :param staging_dir: where the logical partitions and the raw replay output go (replaced on each run).
    :param parallelism: the replay job's default parallelism.
    :param flink_conf: extra session properties for the replay job.
    :param sql_jars: jars the SQL needs (``ADD JAR``), e.g. a connector of a kept table.
    :param timeout: how long the replay job may run.
    :param flink_conn_id: the ``flink_rest`` connection.
    :param sql_gateway_conn_id: the ``flink_sql_gateway`` connection.
    :param spark_conn_id: the Spark provider's connection (``spark_default``).
    :param spark_conf: ``conf`` for spark-submit (default :func:`airflow_rtml.offline.spark.spark_conf`).
    :param spark_env: ``env_vars`` for spark-submit (default :func:`airflow_rtml.offline.spark.spark_env`).
    :param metastore_conn_id: the ``hive_metastore`` connection; ``None`` checks the success files only.
    :param publish_topics: sink → the live job's upsert topic: also publish the backfilled versions there, in
        version order, keyed by the sink's primary key — the live store, for a *new* feature whose live job starts
        after the backfill (refused while ``live_job_name`` runs). A re-run publishes the same rows again (identical
        upserts of the same versions; the Hive table is the copy that is replaced).
    :param bootstrap_servers: Kafka bootstrap servers of ``publish_topics``.
    """

    template_fields: Sequence[str] = ("sql", "start", "end", "archive", "output_tables", "job_name", "staging_dir",
                                      "live_job_name", "allow_live_overlap", "publish_topics", "bootstrap_servers")
    template_ext: Sequence[str] = (".sql",)
    ui_color = "#e8f0fe"

    def __init__(
        self, *, sql: str, source: str, archive: ArchiveTable, start: Any, end: Any,
        output_tables: Mapping[str, ArchiveTable] | None = None, version_column: str = "version_ms",
        warmup: timedelta | float = 0, lookahead: timedelta | float = timedelta(hours=1),
        keep_tables: Sequence[str] = (), live_job_name: str | None = None, allow_live_overlap: bool = False,
        order_column: str = "kafka_offset", partition_column: str = "kafka_partition", key_column: str | None = None,
        partitions: int | None = None, time_column: str = "ts_ms", tie_break: Sequence[str] = (),
        job_name: str | None = None, staging_dir: str | None = None, parallelism: int = 1,
        flink_conf: Mapping[str, str] | None = None, sql_jars: Sequence[str] = (),
        timeout: timedelta | float = timedelta(hours=1), flink_conn_id: str = "flink_default",
        sql_gateway_conn_id: str = "flink_sql_gateway_default", spark_conn_id: str = "spark_default",
        spark_conf: Mapping[str, str] | None = None, spark_env: Mapping[str, str] | None = None,
        metastore_conn_id: str | None = "metastore_default", publish_topics: Mapping[str, str] | None = None,
        bootstrap_servers: str | None = None, **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.sql, self.source, self.archive, self.start, self.end = sql, source, archive, start, end
        self.output_tables = dict(output_tables or {})
        self.version_column = version_column
        self.warmup_hours, self.lookahead_hours = _hours_of(warmup), _hours_of(lookahead)
        self.keep_tables, self.live_job_name, self.allow_live_overlap = list(keep_tables), live_job_name, allow_live_overlap
        self.order_column, self.partition_column, self.key_column = order_column, partition_column, key_column
        self.partitions, self.time_column, self.tie_break = partitions, time_column, list(tie_break)
        self.job_name, self.staging_dir, self.parallelism = job_name, staging_dir, parallelism
        self.flink_conf, self.sql_jars = dict(flink_conf or {}), list(sql_jars)
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        self.flink_conn_id, self.sql_gateway_conn_id = flink_conn_id, sql_gateway_conn_id
        self.spark_conn_id, self.spark_conf, self.spark_env = spark_conn_id, spark_conf, spark_env
        self.metastore_conn_id = metastore_conn_id
        self.publish_topics, self.bootstrap_servers = dict(publish_topics or {}), bootstrap_servers
        if self.publish_topics and not bootstrap_servers:
            raise ValueError("publish_topics= needs bootstrap_servers= (the Kafka cluster of the live topics)")
        if self.publish_topics and not live_job_name:
            raise ValueError("publish_topics= needs live_job_name=: backfilled versions are published only while the "
                             "live job that writes those topics is not running")
        if not order_column and not (key_column and partitions):
            raise ValueError("order_column='' (history without offsets) needs key_column= and partitions=")

    # ------------------------------------------------------------------ steps
    def execute(self, context: Context) -> BackfillResult:
        start_ms, end_ms = parse_time(self.start), parse_time(self.end)
        check_range(start_ms, end_ms)
        plan = plan_replay(self.sql, self.source, keep=self.keep_tables)
        why = warmup_needed(self.sql)
        if why and not self.warmup_hours:
            raise BackfillError(f"The feature SQL needs history before the range: {why}. Its first versions would be "
                                f"computed from part of their data. To fix this, pass warmup= (at least the longest "
                                f"window or OVER range), e.g. warmup=timedelta(days=1).")
        outputs = self._outputs(plan)
        archived = {n.lower() for n, _ in self.archive.columns}
        unfilled = [c for c in plan.source.metadata_columns() if archived and c not in archived]
        if unfilled:
            raise BackfillError(f"The source's metadata column(s) {unfilled} have no column of that name in archive "
                                f"{self.archive.name} (columns {sorted(archived)}): the replay would read them as NULL. "
                                f"To fix this, archive them under the same name, or compute them from what is archived.")
        first = start_ms - self.warmup_hours * HOUR_MS
        wanted = hours(first, end_ms)
        self.log.info("Backfill of %s through %d sink(s) %s: range [%s, %s), %d archive hour(s) (%d of warm-up)",
                      plan.source.name, len(plan.sinks), list(plan.sinks), _iso(start_ms), _iso(end_ms), len(wanted),
                      self.warmup_hours)
        self._check_partitions(wanted)
        ahead = [h for h in hours(end_ms, end_ms + self.lookahead_hours * HOUR_MS) if self._committed(h)]
        if len(ahead) < self.lookahead_hours:
            self.log.warning("Look-ahead: %d of %d hour(s) after the range are committed; records near the end are "
                             "judged late without the later ones (as if the stream had ended there).",
                             len(ahead), self.lookahead_hours)
        self._check_live_job(start_ms)
        job_name = self.job_name or f"{self.task_id}-{_iso(start_ms)}-{_iso(end_ms)}".replace(":", "")
        self._cancel_leftovers(job_name)  # first: a leftover replay would keep writing into the staging folder
        staging = Path(self.staging_dir or warehouse_root() / "_backfill" / self.archive.db / job_name)
        _reset_staging(staging)  # a retry starts clean: nothing of an earlier attempt is read again
        seconds: dict[str, float] = {}

        t = time.monotonic()
        self._logical_partitions([*wanted, *ahead], staging / "input")
        files = logical_partition_files(staging / "input")
        records = sum(_lines(f) for f in files)
        seconds["logical_partitions"] = round(time.monotonic() - t, 3)
        self.log.info("Spark wrote %d logical partition(s), %d record(s), in %.1fs", len(files), records,
                      seconds["logical_partitions"])

        t = time.monotonic()
        sinks_out = {name: staging / "output" / name for name in plan.sinks}
        job_id = self._replay(plan.sql(files, sinks_out), job_name)
        seconds["replay"] = round(time.monotonic() - t, 3)

        t = time.monotonic()
        written = {}
        for name, table in outputs.items():
            counts, rows = self._write_versions(table, sinks_out[name], start_ms, end_ms,
                                                plan.sinks[name].primary_key())
            written[table.name] = counts
            if name in self.publish_topics:
                self._publish(rows, self.publish_topics[name], plan.sinks[name].primary_key())
        seconds["versions"] = round(time.monotonic() - t, 3)
        result = BackfillResult(start_ms=start_ms, end_ms=end_ms, input_hours=[_iso(h) for h in wanted],
                                lookahead_hours=[_iso(h) for h in ahead], logical_partitions=len(files),
                                input_records=records, job_id=job_id, outputs=written, seconds=seconds)
        events = context.get("outlet_events") if hasattr(context, "get") else None
        for outlet in (getattr(self, "outlets", None) or []) if events is not None else []:
            events[outlet].extra.update({"window_start_ms": start_ms, "window_end_ms": end_ms,
                                         "backfill": {k: sum(v.values()) for k, v in written.items()}})
        self.log.info("Backfill done: %s", json.dumps(result, sort_keys=True))
        return result

    def _outputs(self, plan: ReplayPlan) -> dict[str, ArchiveTable]:
        out = {}
        for name, ddl in plan.sinks.items():
            if name in self.output_tables:
                out[name] = self.output_tables[name]
                continue
            cols = []
            for col, sql_type in ddl.column_types():
                base = sql_type.split("(")[0].strip().upper()
                if base not in HIVE_OF_SQL:
                    raise BackfillError(f"Sink {name}: column {col} has type {sql_type}, which has no default Hive "
                                        f"type here. To fix this, pass output_tables={{{name!r}: ArchiveTable(...)}}.")
                cols.append((col, HIVE_OF_SQL[base]))
            if self.version_column not in {c for c, _ in cols}:
                raise BackfillError(f"Sink {name} has no version column {self.version_column!r} (columns {cols}). "
                                    f"To fix this, pass version_column= (the window end, ms).")
            out[name] = ArchiveTable(self.archive.db, name, str(Path(self.archive.path).parent / name), tuple(cols))
        missing = sorted(set(self.output_tables) - set(plan.sinks))
        if missing:
            raise BackfillError(f"output_tables names {missing}, which the SQL does not write (sinks: {list(plan.sinks)}).")
        return out

    def _committed(self, hour_ms: int) -> bool:
        return (self.archive.partition_dir(hour_values(hour_ms)) / SUCCESS_FILE).exists()

    def _check_partitions(self, wanted: list[int]) -> None:
        missing = [self.archive.partition_ref(hour_values(h)) for h in wanted if not self._committed(h)]
        if self.metastore_conn_id and not missing:
            from airflow.providers.apache.hive.hooks.hive import HiveMetastoreHook

            from airflow_rtml.offline.metastore import partition_exists

            with HiveMetastoreHook(metastore_conn_id=self.metastore_conn_id).get_metastore_client() as client:
                missing = [self.archive.partition_ref(hour_values(h)) for h in wanted
                           if not partition_exists(client, self.archive.db, self.archive.table, hour_values(h))]
            what = "registered in the metastore"
        else:
            what = f"committed (no {SUCCESS_FILE})"
        if missing:
            raise BackfillPartitionsMissing(
                f"{len(missing)} of {len(wanted)} archive partition(s) of the range are not {what}: "
                f"{', '.join(missing)}. Nothing ran. To fix this, archive and register those hours first (DAG "
                f"rtml_demo_archive does it per closed hour), or pick a range that is archived.")

    def _check_live_job(self, start_ms: int) -> None:
        if not self.live_job_name:
            return
        from airflow_rtml.hooks.flink import FlinkRestHook
        from airflow_rtml.operators.flink import stream_watermark

        hook = FlinkRestHook(self.flink_conn_id)
        job = hook.find_active_job(self.live_job_name)
        if job is None:
            self.log.info("Live job %s is not running: no overlap", self.live_job_name)
            return
        if self.publish_topics:
            raise BackfillOverlapsLiveJob(
                f"Live job {self.live_job_name} ({job.job_id}) is running and writes the topics to publish to "
                f"({sorted(self.publish_topics.values())}): the backfilled versions would interleave with its own. "
                f"To fix this, publish before starting the live job, or drop publish_topics= (Hive only).")
        watermark = stream_watermark(hook, job.job_id)
        if watermark is not None and watermark < start_ms:
            self.log.info("Live job %s runs at %s, before the range: no overlap", self.live_job_name, _iso(watermark))
            return
        where = "an unknown watermark" if watermark is None else f"watermark {_iso(watermark)}"
        msg = (f"Live job {self.live_job_name} ({job.job_id}) is running with {where}, at or past the range's start "
               f"{_iso(start_ms)}: its output and the backfill's would overlap.")
        allow = self.allow_live_overlap
        if isinstance(allow, str):
            allow = allow.strip().lower() in ("true", "1", "yes")
        if not allow:
            raise BackfillOverlapsLiveJob(f"{msg} To fix this, backfill a range before its progress, stop the live "
                                          f"job first, or pass allow_live_overlap=True if that is intended.")
        self.log.warning("%s Continuing: allow_live_overlap=True.", msg)

    def _logical_partitions(self, hour_starts: list[int], out: Path) -> None:
        from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

        from airflow_rtml.offline import spark

        args = ["--out", str(out), "--partition-column", self.partition_column, "--order-column", self.order_column,
                "--time-column", self.time_column, "--tie-break", ",".join(self.tie_break)]
        if self.key_column:
            args += ["--key-column", self.key_column, "--partitions", str(self.partitions)]
        out.parent.mkdir(parents=True, exist_ok=True)
        inputs = out.parent / "inputs.txt"  # months of hours do not fit a readable command line
        inputs.write_text("".join(f"{self.archive.partition_dir(hour_values(h))}\n" for h in hour_starts))
        args += ["--inputs-file", str(inputs)]
        self.log.info("Spark: %d archive partition(s) %s .. %s -> %s", len(hour_starts), _iso(hour_starts[0]),
                      _iso(hour_starts[-1]), out)
        SparkSubmitHook(conn_id=self.spark_conn_id, conf=dict(self.spark_conf or spark.spark_conf()),
                        env_vars=dict(self.spark_env or spark.spark_env()), name=f"rtml-backfill-{self.task_id}",
                        application_args=args).submit(application=str(LOGICAL_PARTITIONS_JOB))

    def _cancel_leftovers(self, job_name: str) -> None:
        from airflow_rtml.hooks.flink import FlinkRestHook
        from airflow_rtml.operators.flink import _cancel_and_wait

        hook = FlinkRestHook(self.flink_conn_id)
        for job in hook.find_jobs_by_name(job_name):
            if not job.state.is_terminal:
                self.log.warning("Cancelling %s (%s), left running by an earlier attempt", job_name, job.job_id)
                if _cancel_and_wait(hook, job.job_id, self.log) not in (JobState.CANCELED, JobState.FINISHED,
                                                                         JobState.FAILED, None):
                    raise BackfillError(f"Replay job {job_name} ({job.job_id}) of an earlier attempt did not stop; "
                                        f"its output would mix with this run's. To fix this, cancel it in Flink.")

    def _replay(self, statements: list[str], job_name: str) -> str:
        from airflow_rtml.hooks.flink import FlinkRestHook, JobState
        from airflow_rtml.hooks.flink_sql import FlinkSqlGatewayHook
        from airflow_rtml.operators.flink import _cancel_and_wait

        hook = FlinkRestHook(self.flink_conn_id)
        props = {"table.local-time-zone": "UTC", "execution.runtime-mode": "streaming",
                 "execution.checkpointing.interval": "2s", "parallelism.default": str(self.parallelism),
                 **self.flink_conf, "pipeline.name": job_name}
        results = FlinkSqlGatewayHook(self.sql_gateway_conn_id).run_statements(
            [f"ADD JAR '{j}'" for j in self.sql_jars] + statements, properties=props,
            session_name=f"airflow-rtml {job_name}")
        job_ids = [r.job_id for r in results if r.job_id]
        if len(job_ids) != 1:
            raise FlinkSqlError(f"The replay submitted {len(job_ids)} jobs ({job_ids}); expected one (wrap several "
                                f"INSERTs in EXECUTE STATEMENT SET).", statement=statements[-1])
        job_id = job_ids[0]
        self.log.info("Replay job %s (%s) submitted: %s", job_name, job_id, hook.job_url(job_id))
        deadline, last_log, state = time.monotonic() + self.timeout, 0.0, None
        while True:
            state = hook.get_job_state(job_id)
            if state is JobState.FINISHED:
                return job_id
            if state.is_terminal:
                raise BackfillError(f"Replay job {job_name} ({job_id}) ended {state.value}: "
                                    f"{hook.get_root_cause(job_id) or 'no root cause reported'}")
            if time.monotonic() > deadline:
                _cancel_and_wait(hook, job_id, self.log)
                raise BackfillError(f"Replay job {job_name} ({job_id}) still {state.value} after {self.timeout:.0f}s; "
                                    f"cancelled. To fix this, raise timeout= or parallelism=.")
            if time.monotonic() - last_log > 30:
                self.log.info("Replay job %s: %s", job_id, state.value)
                last_log = time.monotonic()
            time.sleep(1)

    def _write_versions(self, table: ArchiveTable, raw: Path, start_ms: int, end_ms: int,
                        key_columns: Sequence[str] = ()) -> dict[str, int]:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.json as pj
        import pyarrow.parquet as pq

        types = {"string": pa.string(), "bigint": pa.int64(), "int": pa.int32(), "double": pa.float64(),
                 "float": pa.float32(), "boolean": pa.bool_()}
        schema = pa.schema([(n, types[t]) for n, t in table.columns])
        parts = []
        for f in sorted(raw.glob("**/*")) if raw.exists() else []:
            if f.is_file() and not f.name.startswith((".", "_")) and f.stat().st_size:  # not Flink's in-progress
                got = pj.read_json(f, parse_options=pj.ParseOptions(explicit_schema=schema,
                                                                      unexpected_field_behavior="ignore"))
                parts.append(got.select(schema.names).cast(schema))
        rows = pa.concat_tables(parts) if parts else schema.empty_table()
        v = rows.column(self.version_column)
        rows = rows.filter(pc.and_(pc.greater(v, start_ms), pc.less_equal(v, end_ms)))  # warm-up, look-ahead: out
        if key_columns:
            keys = rows.select([*key_columns, self.version_column])
            if keys.group_by(keys.column_names).aggregate([]).num_rows != keys.num_rows:
                raise BackfillError(f"{table.name}: the replay wrote some ({', '.join(key_columns)}, "
                                    f"{self.version_column}) more than once in {raw}; nothing was written to the "
                                    f"table. This is a bug in airflow-rtml or a leftover writer: please report it.")
        data_hour = pc.multiply(pc.divide(pc.subtract(rows.column(self.version_column), 1), HOUR_MS), HOUR_MS)
        counts = {}
        for h in hours(start_ms, end_ms):
            values = hour_values(h)
            d = table.partition_dir(values)
            if d.exists():
                shutil.rmtree(d)  # a re-run replaces the hour: never a second copy of a version
            d.mkdir(parents=True)
            part = rows.filter(pc.equal(data_hour, h))
            pq.write_table(part, d / "part-backfill-0.parquet")
            (d / SUCCESS_FILE).write_text("")
            counts[table.partition_ref(values)] = part.num_rows
        if self.metastore_conn_id:
            from airflow.providers.apache.hive.hooks.hive import HiveMetastoreHook

            from airflow_rtml.offline.metastore import ensure_database, ensure_table, register_partition

            with HiveMetastoreHook(metastore_conn_id=self.metastore_conn_id).get_metastore_client() as client:
                ensure_database(client, table.db, table.location.rsplit("/", 1)[0])
                ensure_table(client, table.db, table.table, table.columns, table.location)
                for h in hours(start_ms, end_ms):
                    register_partition(client, table.db, table.table, hour_values(h),
                                       table.partition_location(hour_values(h)))
        self.log.info("%s: %d version row(s) in %d hourly partition(s)", table.name, sum(counts.values()), len(counts))
        return counts, rows

    def _publish(self, rows, topic: str, key_columns: Sequence[str]) -> None:
        """The versions into the live upsert topic, oldest version first (a consumer joining ``FOR SYSTEM_TIME AS
        OF`` sees them in the order the live job would have written them)."""
        from confluent_kafka import Producer

        from airflow_rtml.exceptions import OfflineError

        if not key_columns:
            raise BackfillError(f"Publishing to {topic} needs the sink's PRIMARY KEY (the upsert key).")
        ordered = sorted(rows.to_pylist(), key=lambda r: (r[self.version_column], [str(r[k]) for k in key_columns]))
        producer = Producer({"bootstrap.servers": self.bootstrap_servers, "enable.idempotence": True, "linger.ms": 20})
        failures: list[str] = []
        for row in ordered:
            producer.produce(topic, key=json.dumps({k: row[k] for k in key_columns}).encode(),
                             value=json.dumps(row).encode(),
                             on_delivery=lambda err, _m: failures.append(str(err)) if err else None)
            producer.poll(0)
        left = producer.flush(60)
        if failures or left:
            raise OfflineError(f"Publishing to {topic}: {left} undelivered, errors {failures[:3]}. The Hive table is "
                               f"written; a retry publishes the same versions again.")
        self.log.info("Published %d version row(s) to %s", len(ordered), topic)


_STAGING_MARK = ".rtml-backfill-staging"


def _reset_staging(staging: Path) -> None:
    """Empty the staging folder, which only ever holds what a backfill wrote (a marker file says so): a
    ``staging_dir`` pointing at anything else is refused, never deleted."""
    if staging.exists() and any(staging.iterdir()) and not (staging / _STAGING_MARK).exists():
        raise BackfillError(f"staging_dir {staging} is not empty and was not created by a backfill (no "
                            f"{_STAGING_MARK}); nothing was deleted. To fix this, pass an empty or new folder.")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    (staging / _STAGING_MARK).write_text("")


def _lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
