"""Is the backfill equal to the live job's output? Measured row for row, with Chronon's consistency metrics.

Rows are matched on their key columns (entity and version). Per feature column, over the rows both sides have:

* **mismatch ratio** — keys whose values differ (numbers: beyond ``tolerance``, relative) / matched rows;
* **SMAPE** (numeric features) — mean of ``2 |a - b| / (|a| + |b|)`` (0 where both are 0), as Chronon reports it;

and per table (ratios of distinct keys): **missing ratio** — live keys the backfill lacks / live keys; **extra
ratio** — backfill keys the live output lacks / backfill keys; **duplicates** — keys that occur more than once on one side (a re-run must
replace, never duplicate). The goal of a backfill is 0 / 0 / 0 with no duplicates: :attr:`EqualityReport.equal`.

No Airflow import here (the ``rtml backfill verify`` command, the example DAG and the tests share it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FeatureStats:
    mismatches: int = 0
    mismatch_ratio: float = 0.0
    smape: float | None = None  # None: not numeric


@dataclass
class EqualityReport:
    keys: list[str]
    live_rows: int
    backfill_rows: int
    matched: int
    missing: int
    extra: int
    missing_ratio: float
    extra_ratio: float
    duplicates_live: int
    duplicates_backfill: int
    repeats_live: int = 0
    repeats_backfill: int = 0
    features: dict[str, FeatureStats] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)  # the first differing rows, to look at

    @property
    def equal(self) -> bool:
        return (self.missing == self.extra == self.duplicates_live == self.duplicates_backfill
                == self.repeats_backfill == 0 and all(f.mismatches == 0 for f in self.features.values()))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "equal": self.equal}

    def summary(self) -> str:
        lines = [f"{'EQUAL' if self.equal else 'NOT EQUAL'}: {self.matched} matched of {self.live_rows} live / "
                 f"{self.backfill_rows} backfill rows (key {', '.join(self.keys)}); missing {self.missing} "
                 f"({self.missing_ratio:.4%}), extra {self.extra} ({self.extra_ratio:.4%}), duplicates "
                 f"{self.duplicates_live} live / {self.duplicates_backfill} backfill, identical repeats "
                 f"{self.repeats_live} live / {self.repeats_backfill} backfill"]
        for name, f in self.features.items():
            smape = "" if f.smape is None else f", SMAPE {f.smape:.6f}"
            lines.append(f"  {name}: mismatch {f.mismatches} ({f.mismatch_ratio:.4%}){smape}")
        lines += [f"  e.g. {e}" for e in self.examples]
        return "\n".join(lines)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    return None


def _same(a: Any, b: Any, tolerance: float) -> bool:
    x, y = _number(a), _number(b)
    if x is None or y is None:
        return a == b
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return abs(x - y) <= tolerance * max(1.0, abs(x), abs(y))


def compare(live: Iterable[Mapping[str, Any]], backfill: Iterable[Mapping[str, Any]], keys: Sequence[str],
            features: Sequence[str] | None = None, *, tolerance: float = 1e-9, examples: int = 5) -> EqualityReport:
    """Compare two row sets keyed by ``keys``; ``features``: the value columns (default: every other column of
    the live rows)."""
    def index(rows: Iterable[Mapping[str, Any]]) -> tuple[dict[tuple, Mapping[str, Any]], int, int, int]:
        seen: dict[tuple, Mapping[str, Any]] = {}
        conflicting: set = set()
        repeats = n = 0
        for row in rows:
            k = tuple(row.get(c) for c in keys)
            n += 1
            if k in seen:
                if dict(seen[k]) == dict(row):
                    repeats += 1
                else:
                    conflicting.add(k)
            seen[k] = row
        return seen, n, len(conflicting), repeats

    a, n_live, dup_a, rep_a = index(live)
    b, n_back, dup_b, rep_b = index(backfill)
    if features is None:
        features = sorted({c for row in a.values() for c in row} - set(keys))
    both = a.keys() & b.keys()
    stats = {f: FeatureStats() for f in features}
    smape_sum = {f: 0.0 for f in features}
    numeric = {f: True for f in features}
    shown: list[dict[str, Any]] = []
    for k in sorted(both, key=repr):
        ra, rb = a[k], b[k]
        for f in features:
            va, vb = ra.get(f), rb.get(f)
            x, y = _number(va), _number(vb)
            if x is None or y is None:
                numeric[f] = numeric[f] and va is None and vb is None
            else:
                smape_sum[f] += 0.0 if x == y == 0 else 2 * abs(x - y) / (abs(x) + abs(y))
            if not _same(va, vb, tolerance):
                stats[f].mismatches += 1
                if len(shown) < examples:
                    shown.append({"key": dict(zip(keys, k)), "feature": f, "live": va, "backfill": vb})
    for k in sorted(a.keys() - b.keys(), key=repr)[:max(0, examples - len(shown))]:
        shown.append({"key": dict(zip(keys, k)), "missing_in": "backfill"})
    for k in sorted(b.keys() - a.keys(), key=repr)[:max(0, examples - len(shown))]:
        shown.append({"key": dict(zip(keys, k)), "missing_in": "live"})
    for f in features:
        stats[f].mismatch_ratio = stats[f].mismatches / len(both) if both else 0.0
        stats[f].smape = (smape_sum[f] / len(both) if both else 0.0) if numeric[f] else None
    missing, extra = len(a.keys() - b.keys()), len(b.keys() - a.keys())
    return EqualityReport(keys=list(keys), live_rows=n_live, backfill_rows=n_back, matched=len(both),
                          missing=missing, extra=extra, missing_ratio=missing / len(a) if a else 0.0,
                          extra_ratio=extra / len(b) if b else 0.0, duplicates_live=dup_a, duplicates_backfill=dup_b,
                          repeats_live=rep_a, repeats_backfill=rep_b,
                          features=stats, examples=shown)


def versions(rows: Iterable[Mapping[str, Any]], version_column: str, start_ms: int, end_ms: int) -> list[dict]:
    """The rows whose version is in ``(start, end]``: what a backfill of ``[start, end)`` writes (a version is a
    window end; the window holding data just before ``start`` ends at ``start`` and belongs to the hour before)."""
    return [dict(r) for r in rows if r.get(version_column) is not None and start_ms < r[version_column] <= end_ms]


def live_vs_backfill(bootstrap: str, topic: str, table, keys: Sequence[str], start_ms: int, end_ms: int, *,
                     version_column: str = "version_ms", features: Sequence[str] | None = None) -> EqualityReport:
    """Compare the live job's rows in its (upsert) Kafka ``topic`` — the log keeps every version — with a
    backfill's versioned Hive ``table`` (an :class:`~airflow_rtml.offline.archive.ArchiveTable`) over
    ``[start, end)``: the reusable check behind ``rtml backfill verify`` and the example DAG."""
    from airflow_rtml.offline.archive import hour_values, read_partition
    from airflow_rtml.offline.backfill import hours
    from airflow_rtml.streams.topics import read_topic

    live = versions(read_topic(bootstrap, topic), version_column, start_ms, end_ms)
    back = [r for h in hours(start_ms, end_ms) for r in read_partition(table, hour_values(h)).to_pylist()]
    return compare(live, versions(back, version_column, start_ms, end_ms), keys, features)
