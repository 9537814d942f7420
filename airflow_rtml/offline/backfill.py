"""Feature backfill ("backtracking"): history replayed through the live feature job's *own* SQL, in the live order.

A new real-time feature needs its history. Instead of a second, offline implementation, the live job's SQL file
runs again over the archive with only two kinds of statement swapped:

* the **source** ``CREATE TABLE`` (a Kafka topic live) becomes one bounded filesystem table per *logical
  partition* — a file holding one Kafka partition's archived records in the order the topic held them (its
  offsets; see ``jobs/logical_partitions.py``) — under a view of the original name that is their ``UNION ALL``.
  The column list, computed columns and the ``WATERMARK`` declaration are the live ones, character for character
  (a Kafka ``METADATA`` column becomes the physical column the archive kept). Each file is one split read by one
  reader from start to end, so within a logical partition records arrive exactly as live, and the watermark is
  the live declaration applied per partition and combined as the minimum — as Flink's Kafka source does;
* every **sink** ``CREATE TABLE`` (an ``INSERT INTO`` target) becomes a filesystem table in a staging folder
  with the same columns, so a backfill can never write into the live topics.

Everything else (views, windows, joins, ``INSERT`` statements) is the live SQL unchanged, run in Flink's streaming
mode over the bounded input: windows, joins and late-record handling behave as they do live, and the job
finishes when the input ends.

What is exact and what is not: within one logical partition the order is the live one, so for a single-partition
topic the replay reproduces every late decision of the live job. Across partitions, *which* records are late
depends on how far the other partitions had been read at that moment, which neither Kafka nor the archive records
(two live runs over the same topic can differ there too); the equality check (:mod:`.equality`) measures it.

No Airflow import here: the operator (``operators/backfill.py``), the CLI and the tests share it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_rtml.exceptions import BackfillError, BackfillSourceNotSwappable
from airflow_rtml.offline.archive import HOUR_MS, file_uri
from airflow_rtml.sql_script import split_statements, strip_comments

_CREATE_TABLE = re.compile(r"^\s*CREATE\s+(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(`[^`]+`|[\w.]+)\s*\(",
                           re.IGNORECASE)
_INSERT = re.compile(r"\bINSERT\s+(?:INTO|OVERWRITE)\s+(`[^`]+`|[\w.]+)", re.IGNORECASE)
_METADATA = re.compile(r"\s+METADATA(?:\s+FROM\s+'[^']*')?(?:\s+VIRTUAL)?(?=\s+COMMENT\b|\s*$)", re.IGNORECASE)
_WATERMARK = re.compile(r"^\s*WATERMARK\s+FOR\b", re.IGNORECASE)
#: Statements a replay may run as the live SQL has them: they read, declare or configure, never write.
_HARMLESS = re.compile(r"^\s*(CREATE\s+(TEMPORARY\s+)?VIEW|CREATE\s+(TEMPORARY\s+(SYSTEM\s+)?)?FUNCTION|SET\b|RESET\b|"
                       r"ADD\s+JAR|USE\b|LOAD\s+MODULE|DROP\s+TEMPORARY\s+(VIEW|FUNCTION)\b)", re.IGNORECASE)
_WRITES = re.compile(r"^\s*(INSERT\b|EXECUTE\s+STATEMENT\s+SET\b|BEGIN\s+STATEMENT\s+SET\b)", re.IGNORECASE)
_WINDOW = re.compile(r"\b(TUMBLE|HOP|CUMULATE|SESSION)\s*\(", re.IGNORECASE)
_TUMBLE_SIZE = re.compile(r"\bTUMBLE\s*\((?:[^()]|\([^()]*\))*?INTERVAL\s+'(\d+)'\s+(SECOND|MINUTE|HOUR|DAY)\S*\s*\)",
                          re.IGNORECASE)
_OVER = re.compile(r"\bOVER\s*\(", re.IGNORECASE)
_UNIT_MS = {"SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
_NEEDED = ("To fix this, declare it as one statement of the form\n"
           "    CREATE TEMPORARY TABLE <name> (<columns>, WATERMARK FOR <ts> AS <expr>) WITH ('connector' = ...);\n"
           "(an include such as {samples_in} is fine: the rendered SQL is what is read).")


def _ident(name: str) -> str:
    return name.strip("`").lower()


@dataclass(frozen=True)
class TableDdl:
    """One ``CREATE TABLE`` statement of a script, cut into its parts."""

    name: str  # as written (may carry backticks)
    columns: str  # what is between the parentheses: columns, computed columns, WATERMARK, PRIMARY KEY
    options: str  # what is between WITH ( ... )
    statement: str

    @property
    def items(self) -> list[str]:
        return _top_level_split(self.columns)

    @property
    def has_watermark(self) -> bool:
        return any(_WATERMARK.match(i) for i in self.items)

    def option_pairs(self) -> list[tuple[str, str]]:
        """The ``WITH`` options as (key, value) pairs, in order."""
        return [(k.replace("''", "'"), v.replace("''", "'"))
                for k, v in re.findall(r"'((?:[^']|'')*)'\s*=\s*'((?:[^']|'')*)'", self.options)]

    def watermark_options(self) -> str:
        """The ``scan.watermark.*`` options (emit strategy, alignment, idleness) as ``WITH`` text to carry over:
        they are part of the watermark's behaviour, not of the connector."""
        def q(text: str) -> str:
            return text.replace("'", "''")

        return "".join(f", '{q(k)}' = '{q(v)}'" for k, v in self.option_pairs() if k.startswith("scan.watermark."))

    def metadata_columns(self) -> list[str]:
        """The columns the live connector fills from record metadata (``METADATA [FROM ...]``)."""
        out = []
        for item in self.items:
            if _METADATA.search(item.strip()):
                m = re.match(r"\s*(`[^`]+`|\w+)", item)
                out.append(_ident(m.group(1)))
        return out

    def physical_columns(self) -> str:
        """The column list with each ``METADATA`` column turned into a physical one of the same type."""
        return ",\n    ".join(_METADATA.sub("", i.strip()) for i in self.items)

    def primary_key(self) -> list[str]:
        """The ``PRIMARY KEY (...)`` columns, if declared."""
        for item in self.items:
            m = re.match(r"(?is)^\s*(?:CONSTRAINT\s+\S+\s+)?PRIMARY\s+KEY\s*\(([^)]*)\)", item)
            if m:
                return [_ident(c.strip()) for c in m.group(1).split(",")]
        return []

    def column_types(self) -> list[tuple[str, str]]:
        """(name, SQL type) of each non-computed column (metadata included), in order."""
        out = []
        for item in self.items:
            text = item.strip()
            if _WATERMARK.match(text) or re.match(r"(?i)^(PRIMARY\s+KEY|CONSTRAINT)\b", text):
                continue
            m = re.match(r"(`[^`]+`|\w+)\s+(.*)$", _METADATA.sub("", text), re.DOTALL)
            if not m or re.match(r"(?i)^AS\b", m.group(2).strip()):
                continue  # a computed column
            out.append((_ident(m.group(1)), re.split(r"\s+(?i:NOT\s+NULL|NULL|COMMENT)\b", m.group(2).strip())[0]))
        return out


def _matching_paren(text: str, start: int) -> int:
    """Index of the ``)`` closing the ``(`` at ``start`` (quotes and backticks respected)."""
    depth, quote = 0, None
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in ("'", '"', "`"):
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced parentheses")


_TYPE_OPEN = re.compile(r"(?i)\b(MAP|ARRAY|ROW|MULTISET)\s*$")


def _top_level_split(text: str) -> list[str]:
    """Split a column list on commas outside parentheses, quotes and type brackets (``MAP<STRING, BIGINT>``)."""
    items, depth, angles, quote, buf = [], 0, 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in ("'", '"', "`"):
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "<" and (angles or _TYPE_OPEN.search("".join(buf[-12:]))):
            angles += 1
        elif ch == ">" and angles:
            angles -= 1
        elif ch == "," and depth == 0 and not angles:
            items.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    if "".join(buf).strip():
        items.append("".join(buf))
    return [i for i in items if i.strip()]


def parse_table(statement: str) -> TableDdl | None:
    """The parts of a ``CREATE [TEMPORARY] TABLE name (...) WITH (...)`` statement, or None if it is not one."""
    text = strip_comments(statement)
    m = _CREATE_TABLE.match(text)
    if not m:
        return None
    try:
        close = _matching_paren(text, m.end() - 1)
        rest = text[close + 1:]
        w = re.match(r"\s*WITH\s*\(", rest, re.IGNORECASE)
        if not w:
            return TableDdl(m.group(1), text[m.end():close], "", text)
        wstart = close + 1 + w.end() - 1
        wend = _matching_paren(text, wstart)
    except ValueError:
        return None
    return TableDdl(m.group(1), text[m.end():close], text[wstart + 1:wend], text)


@dataclass(frozen=True)
class ReplayPlan:
    """The live script, classified: which statements are the source, which are sinks, what stays."""

    statements: list[str]
    source: TableDdl
    sinks: dict[str, TableDdl]  # identifier -> DDL, in script order

    def sql(self, files: Sequence[str | Path], staging: Mapping[str, str | Path]) -> list[str]:
        """The replay: the live statements with the source read from ``files`` (one per logical partition) and
        each sink written under ``staging[sink]``; every other statement unchanged."""
        if not files:
            raise BackfillError("No logical-partition file to replay: the range holds no record. To fix this, "
                                "check the range and the archive table.")
        out = []
        for stmt in self.statements:
            ddl = parse_table(stmt)
            name = _ident(ddl.name) if ddl else None
            if name == _ident(self.source.name):
                out.extend(replay_source(self.source, files))
            elif name in self.sinks:
                out.append(_filesystem_table(ddl.name, ddl.physical_columns(), staging[name]))
            else:
                out.append(stmt)
        return out


def plan_replay(sql: str, source: str, *, keep: Sequence[str] = ()) -> ReplayPlan:
    """Classify the rendered live SQL ``sql`` for a replay of table ``source``; errors before anything runs.

    Every other table the script reads (a ``CREATE TABLE`` that is no ``INSERT`` target) would still read its live
    connector during the replay; that is refused unless named in ``keep`` (e.g. a static dimension table).
    """
    statements = split_statements(sql)
    for s in statements:
        text = strip_comments(s)
        if parse_table(s) is None and not _HARMLESS.match(text) and not _WRITES.match(text):
            raise BackfillSourceNotSwappable(
                f"The feature SQL has a statement the replay cannot run safely: {text[:160]!r}. A replay runs only "
                f"CREATE TABLE name (...) WITH (...), views, functions, SET/ADD JAR and INSERTs into swapped sinks; "
                f"anything else (CREATE TABLE ... AS SELECT, CREATE OR REPLACE TABLE, ...) could write to a live "
                f"system. To fix this, declare the sink with CREATE TEMPORARY TABLE and write it with INSERT INTO.")
    jobs = [s for s in statements if _WRITES.match(strip_comments(s))]
    if len(jobs) > 1:
        raise BackfillSourceNotSwappable(
            f"The feature SQL submits {len(jobs)} Flink jobs (INSERT statements outside one statement set); a replay "
            f"is one job. To fix this, wrap the INSERTs in EXECUTE STATEMENT SET BEGIN ... END; (as the live job "
            f"should, so all its sinks see one watermark).")
    tables = {_ident(t.name): t for t in (parse_table(s) for s in statements) if t is not None}
    targets = []
    for s in statements:
        for m in _INSERT.finditer(strip_comments(s)):
            if _ident(m.group(1)) not in targets:
                targets.append(_ident(m.group(1)))
    src = tables.get(_ident(source))
    if src is None:
        raise BackfillSourceNotSwappable(
            f"The feature SQL has no CREATE TABLE statement for the source {source!r} (tables declared: "
            f"{sorted(tables) or 'none'}). {_NEEDED}")
    if not src.options.strip():
        raise BackfillSourceNotSwappable(f"The source {source!r} has no WITH (...) clause to swap. {_NEEDED}")
    if not src.has_watermark:
        raise BackfillSourceNotSwappable(
            f"The source {source!r} declares no WATERMARK: a replay in event-time order needs the live job's "
            f"watermark declaration. {_NEEDED}")
    if _ident(source) in targets:
        raise BackfillSourceNotSwappable(f"{source!r} is both the source and an INSERT target of the script.")
    missing = [t for t in targets if t not in tables]
    if missing:
        raise BackfillSourceNotSwappable(
            f"INSERT target(s) {missing} are not declared in the script (a catalog table cannot be swapped for a "
            f"staging sink). To fix this, declare each sink with CREATE TEMPORARY TABLE in the feature SQL.")
    if not targets:
        raise BackfillSourceNotSwappable("The feature SQL has no INSERT INTO statement: nothing to backfill.")
    other = sorted(set(tables) - set(targets) - {_ident(source)} - {_ident(k) for k in keep})
    if other:
        raise BackfillSourceNotSwappable(
            f"The feature SQL also reads {other}, which would read their live connectors during the replay. To fix "
            f"this, backfill one source at a time, or pass keep={other!r} if reading them live is intended.")
    return ReplayPlan(statements, src, {t: tables[t] for t in targets})


def _filesystem_table(name: str, columns: str, path: str | Path, extra: str = "") -> str:
    return (f"CREATE TEMPORARY TABLE {name} (\n    {columns}\n) WITH ('connector' = 'filesystem', "
            f"'path' = '{file_uri(path)}', 'format' = 'json'{extra})")


def replay_source(source: TableDdl, files: Sequence[str | Path]) -> list[str]:
    """The source as one bounded table per logical-partition file (the live columns and WATERMARK) and a view of
    the source's name over their ``UNION ALL`` (a union keeps the rowtime; its watermark is the minimum)."""
    base = _ident(source.name).replace(".", "_")
    names = [f"`{base}__lp{i}`" for i in range(len(files))]
    out = [_filesystem_table(n, source.physical_columns(), f, source.watermark_options()) for n, f in zip(names, files)]
    out.append(f"CREATE TEMPORARY VIEW {source.name} AS\n"
               + "\nUNION ALL\n".join(f"SELECT * FROM {n}" for n in names))
    return out


def parse_time(value: Any) -> int:
    """ms since the epoch from an int, an ISO-8601 string or a datetime; a time without a zone is UTC (never the
    machine's zone: the archive's hours are UTC)."""
    if isinstance(value, bool):
        raise BackfillError(f"{value!r} is not a time")
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp() * 1000)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp() * 1000)  # UTC
    except ValueError:
        raise BackfillError(f"{value!r} is neither ms since the epoch nor an ISO-8601 time. To fix this, pass e.g. "
                            f"'2026-01-01T00:00:00Z'.") from None


def warmup_needed(sql: str) -> str | None:
    """Why the feature SQL needs history before the range (``warmup=``), or None when every window is a
    ``TUMBLE`` whose size divides an hour (so windows start on the range's first hour and need nothing before)."""
    text = strip_comments(sql)
    kinds = {m.group(1).upper() for m in _WINDOW.finditer(text)}
    if kinds - {"TUMBLE"}:
        return f"it uses {'/'.join(sorted(kinds - {'TUMBLE'}))} windows, which span more than one hour boundary"
    if _OVER.search(text):
        return "it uses OVER aggregations, whose value depends on rows before the range"
    for m in _TUMBLE_SIZE.finditer(text):
        size = int(m.group(1)) * _UNIT_MS[m.group(2).upper()]
        if HOUR_MS % size:
            return f"its TUMBLE window of {m.group(1)} {m.group(2).lower()}(s) does not divide an hour"
    return None


def check_range(start_ms: int, end_ms: int) -> None:
    """A backfill range is whole event-time hours ``[start, end)`` (the archive's partitions)."""
    if start_ms % HOUR_MS or end_ms % HOUR_MS:
        raise BackfillError(f"The range [{start_ms}, {end_ms}) is not whole hours (ms since the epoch, UTC). To fix "
                            f"this, pass hour boundaries: the archive is partitioned by event-time hour.")
    if end_ms <= start_ms:
        raise BackfillError(f"The range [{start_ms}, {end_ms}) is empty. To fix this, pass start < end.")


def hours(start_ms: int, end_ms: int) -> list[int]:
    """The starts of the hours in ``[start, end)``."""
    return list(range(start_ms, end_ms, HOUR_MS))


def version_hour(version_ms: int) -> int:
    """The data hour a version belongs to: version ``v`` (a window end) holds data before ``v``, so the hour of
    ``v - 1 ms``. Hour H's partition of a versioned table holds the versions in ``(H, H + 1 h]``."""
    return (version_ms - 1) // HOUR_MS * HOUR_MS


def logical_partition_files(directory: str | Path) -> list[Path]:
    """The replay inputs Spark wrote: ``<dir>/lp=<n>/part-*.json``, one file per logical partition, by ``n``."""
    root = Path(directory)
    out = []
    subs = [p for p in root.glob("lp=*") if p.is_dir()]
    bad = [p.name for p in subs if not p.name[3:].isdigit()]
    if bad:
        raise BackfillError(f"Archived records without a Kafka partition ({bad} in {root}). To fix this, archive the "
                            f"partition metadata column, or replay history without offsets (order_column='', "
                            f"key_column=, partitions=).")
    for sub in sorted(subs, key=lambda p: int(p.name[3:])):
        files = [f for f in sub.iterdir() if f.is_file() and f.name.startswith("part-") and f.stat().st_size]
        if len(files) > 1:
            raise BackfillError(f"{sub} holds {len(files)} files; a logical partition must be one ordered file.")
        out.extend(files)
    return out
