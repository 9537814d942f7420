"""Per-window data-quality rules (DQC): checked on one closed, committed event-time window, never on a partial one.

A rule looks at one window's rows (a ``pyarrow.Table``: the window's committed Hive partition) and, for volume, at
the row counts of the windows before it. Each rule has a severity: ``block`` (a failure blocks that window's
downstream, e.g. training skips that hour) or ``warn`` (a failure only notifies). Metrics are computed with
``pyarrow.compute`` (Arrow's kernels: counts, null counts, min/max, means), not by hand.

Pure: no Airflow import. :class:`~airflow_rtml.operators.quality.WindowQualityCheckOperator` reads the window and
runs the rules in a DAG.

Rules: :class:`RowCount`, :class:`VolumeVsBaseline`, :class:`NullRatio`, :class:`ValueRange`, :class:`MeanBetween`
(e.g. a label-join rate: the mean of a 0/1 label), :class:`FeatureCrossing` (rows joined with a feature from their
own future), :class:`Check` (your own Python function of the table) and :class:`SqlCheck` (your own SQL over it,
run by DuckDB).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_rtml.exceptions import DataQualityConfigError

Severity = Literal["block", "warn"]


@dataclass(frozen=True)
class RuleResult:
    """One rule on one window: passed or not, the value measured and what was expected."""

    rule: str
    severity: Severity
    passed: bool
    value: float | int | None
    expected: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": self.severity, "passed": self.passed, "value": self.value,
                "expected": self.expected, "message": self.message}


@dataclass(frozen=True)
class QualityReport:
    """All rules on one window. ``blocked``: the failed blocking rules' names (non-empty = the window is blocked)."""

    rows: int
    results: tuple[RuleResult, ...]

    @property
    def blocked(self) -> list[str]:
        return [r.rule for r in self.results if not r.passed and r.severity == "block"]

    @property
    def warnings(self) -> list[str]:
        return [r.rule for r in self.results if not r.passed and r.severity == "warn"]

    def summary(self) -> str:
        failed = [r for r in self.results if not r.passed]
        if not failed:
            return f"all {len(self.results)} rule(s) passed on {self.rows} row(s)"
        return "; ".join(f"{r.rule} ({r.severity}) failed: {r.message}" for r in failed)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "blocked": self.blocked, "warnings": self.warnings,
                "results": [r.as_dict() for r in self.results]}


def _bounds(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"between {lo:g} and {hi:g}"
    return f">= {lo:g}" if lo is not None else (f"<= {hi:g}" if hi is not None else "any")


def _within(value: float | None, lo: float | None, hi: float | None) -> bool:
    return value is not None and (lo is None or value >= lo) and (hi is None or value <= hi)


@dataclass(frozen=True)
class _Rule:
    severity: Severity = field(default="block", kw_only=True)
    name: str | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if self.severity not in ("block", "warn"):
            raise DataQualityConfigError(f"{self.label}: severity must be 'block' or 'warn', got {self.severity!r}")

    @property
    def label(self) -> str:
        return self.name or self._default_name()

    def _default_name(self) -> str:
        return type(self).__name__.lower()

    def _column(self, table, column: str):
        if column not in table.column_names:
            raise DataQualityConfigError(
                f"Rule {self.label}: the window has no column {column!r} (columns: {table.column_names}). To fix "
                "this, name a column of the table the rule checks.")
        return table.column(column)

    def _result(self, passed: bool, value, expected: str, message: str) -> RuleResult:
        return RuleResult(self.label, self.severity, bool(passed), value, expected, message)

    def evaluate(self, table, history: Sequence[int]) -> RuleResult:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class RowCount(_Rule):
    """The window has between ``min_rows`` and ``max_rows`` rows."""

    min_rows: int | None = None
    max_rows: int | None = None

    def _default_name(self) -> str:
        return "row_count"

    def evaluate(self, table, history: Sequence[int]) -> RuleResult:
        n = table.num_rows
        want = _bounds(self.min_rows, self.max_rows)
        return self._result(_within(n, self.min_rows, self.max_rows), n, want, f"{n} rows, expected {want}")


@dataclass(frozen=True)
class VolumeVsBaseline(_Rule):
    """The window's row count against the median of the ``windows`` windows before it: the ratio must be between
    ``min_ratio`` and ``max_ratio``. With fewer than ``min_history`` earlier windows there is no baseline yet and the
    rule passes (its message says so)."""

    min_ratio: float | None = 0.5
    max_ratio: float | None = None
    windows: int = 24
    min_history: int = 3

    def _default_name(self) -> str:
        return "volume_vs_baseline"

    def evaluate(self, table, history: Sequence[int]) -> RuleResult:
        recent = list(history)[-self.windows:]
        want = f"ratio to the median of the last {self.windows} windows {_bounds(self.min_ratio, self.max_ratio)}"
        if len(recent) < self.min_history:
            return self._result(True, None, want, f"no baseline yet ({len(recent)} earlier window(s), "
                                                  f"{self.min_history} needed)")
        baseline = statistics.median(recent)
        ratio = table.num_rows / baseline if baseline else (1.0 if table.num_rows == 0 else float("inf"))
        return self._result(_within(ratio, self.min_ratio, self.max_ratio), round(ratio, 4), want,
                            f"{table.num_rows} rows = {ratio:.2f}x the baseline {baseline:g}, expected {want}")


@dataclass(frozen=True)
class NullRatio(_Rule):
    """At most ``max_ratio`` of ``column``'s values are null."""

    column: str = ""
    max_ratio: float = 0.0

    def _default_name(self) -> str:
        return f"null_ratio({self.column})"

    def evaluate(self, table, history: Sequence[int]) -> RuleResult:
        col = self._column(table, self.column)
        ratio = col.null_count / table.num_rows if table.num_rows else 0.0
        return self._result(ratio <= self.max_ratio, round(ratio, 6), f"<= {self.max_ratio:g}",
                            f"{col.null_count} of {table.num_rows} null ({ratio:.2%}), expected <= {self.max_ratio:.2%}")


@dataclass(frozen=True)
class ValueRange(_Rule):
    """``column``'s non-null values lie in ``[min, max]``; at most ``max_outside_ratio`` of them may not."""

    column: str = ""
    min: float | None = None
    max: float | None = None
    max_outside_ratio: float = 0.0

    def _default_name(self) -> str:
        return f"value_range({self.column})"

    def evaluate(self, table, history: Sequence[int]) -> RuleResult:
        import pyarrow.compute as pc

        col = self._column(table, self.column)
        valid = len(col) - col.null_count
        outside = 0
        if valid:
            checks = []
            if self.min is not None:
                checks.append(pc.less(col, self.min))
            if self.max is not None:
                checks.append(pc.greater(col, self.max))
            if _is_floating(col):
                checks.append(pc.is_nan(col))  # NaN is no value in any range
            for mask in checks:
                outside += pc.sum(pc.cast(pc.fill_null(mask, False), "int64")).as_py() or 0
        ratio = outside / valid if valid else 0.0
        want = f"values {_bounds(self.min, self.max)}, at most {self.max_outside_ratio:.2%} outside"
        return self._result(ratio <= self.max_outside_ratio, round(ratio, 6), want,
                            f"{outside} of {valid} value(s) outside {_bounds(self.min, self.max)}")


@dataclass(frozen=True)
class MeanBetween(_Rule):
    """The mean of ``column`` (non-null values) is between ``min`` and ``max``: e.g. a label-join rate, the mean
    of a 0/1 label. An empty window has no mean and fails."""

    column: str = ""
    min: float | None = None
    max: float | None = None

    def _default_name(self) -> str:
        return f"mean({self.column})"

    def evaluate(self, table, history: Sequence[int]) -> RuleResult:
        import pyarrow.compute as pc

        col = self._column(table, self.column)
        mean = pc.mean(col).as_py() if len(col) - col.null_count else None
        want = _bounds(self.min, self.max)
        shown = "no values" if mean is None else f"{mean:.4f}"
        return self._result(_within(mean, self.min, self.max), None if mean is None else round(mean, 6), want,
                            f"mean {shown}, expected {want}")


@dataclass(frozen=True)
class Check(_Rule):
    """Your own rule: ``fn(table)`` returns a bool (passed) or a number that must be between ``min`` and ``max``.
    An exception in ``fn`` fails the rule with its message (the other rules still run)."""

    fn: Callable[[Any], bool | float | int] | None = None
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not callable(self.fn) or not self.name:
            raise DataQualityConfigError("Check needs name= and fn= (a function of the window's pyarrow Table).")

    def evaluate(self, table, history: Sequence[int]) -> RuleResult:
        return _user_result(self, lambda: self.fn(table))


@dataclass(frozen=True)
class FeatureCrossing(_Rule):
    """No row carries a feature from its own future: the number of rows whose ``version_column`` (the feature
    version it was joined with) is later than its ``time_column`` (its event time) is at most ``max_count``
    (default 0). A row without a feature (null version) is no crossing. Give one rule per feature."""

    version_column: str = ""
    time_column: str = ""
    max_count: int = 0

    def _default_name(self) -> str:
        return f"feature_crossing({self.version_column})"

    def evaluate(self, table, history: Sequence[int]) -> RuleResult:
        import pyarrow.compute as pc

        later = pc.greater(self._column(table, self.version_column), self._column(table, self.time_column))
        n = int(pc.sum(pc.fill_null(later, False)).as_py() or 0)
        return self._result(n <= self.max_count, n, f"<= {self.max_count}",
                            f"{n} of {table.num_rows} row(s) joined a {self.version_column} later than their "
                            f"{self.time_column}, expected <= {self.max_count}")


@dataclass(frozen=True)
class SqlCheck(_Rule):
    """Your own rule in SQL: ``sql`` runs over the window's rows as table ``rows`` (DuckDB, on the Arrow table
    without a copy) and returns one row, one value: a bool (passed), or a number between ``min`` and ``max``.
    E.g. ``SqlCheck(name="unbucketed_ratio", sql="SELECT avg(CASE WHEN bucket IS NULL THEN 1 ELSE 0 END)
    FROM rows", max=0.01)``. A query that fails, or returns another shape, fails the rule with the reason."""

    sql: str = ""
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.name or not self.sql.strip():
            raise DataQualityConfigError("SqlCheck needs name= and sql= (a query over table 'rows').")

    def evaluate(self, table, history: Sequence[int]) -> RuleResult:
        try:
            import duckdb  # imported when the rule runs: a DAG that declares it parses without it
        except ImportError:
            return self._result(False, None, "DuckDB installed", "needs DuckDB. To fix this, install "
                                "airflow-rtml[offline] (or pip install duckdb) where the task runs")
        def query():
            con = duckdb.connect()
            try:
                con.register("rows", table)
                rows = con.execute(self.sql).fetchall()
            finally:
                con.close()
            if len(rows) != 1 or len(rows[0]) != 1:
                raise ValueError(f"returned {len(rows)} row(s) of {len(rows[0]) if rows else 0} column(s), "
                                 "expected one value")
            return rows[0][0]

        return _user_result(self, query, null_fails=True)


def _user_result(rule: Check | SqlCheck, compute: Callable[[], Any], *, null_fails: bool = False) -> RuleResult:
    """The result of a user's rule (a Python function or a SQL query): ``compute()`` gives a bool (passed) or a
    number compared with ``rule.min`` / ``rule.max``; anything it raises fails that rule alone, with the reason.
    ``null_fails``: a None (SQL's NULL) is a value outside every range, not an error."""
    want = _bounds(rule.min, rule.max)
    try:
        value = compute()
        value = value.as_py() if hasattr(value, "as_py") else value  # a pyarrow scalar
        if getattr(getattr(value, "dtype", None), "kind", None) == "b":  # a numpy bool
            value = bool(value)
        if isinstance(value, bool):
            return rule._result(value, int(value), "true", "passed" if value else "returned False")
        if rule.min is None and rule.max is None:
            raise TypeError(f"returned {value!r}: a number needs min= or max= to compare it with, else "
                            "return a bool")
        number = None if value is None and null_fails else float(value)
    except Exception as exc:  # noqa: BLE001 - a user's rule failing is that rule's result, not the task's crash
        return rule._result(False, None, "no error", f"raised {type(exc).__name__}: {exc}")
    shown = "NULL" if number is None else f"{number:g}"
    return rule._result(_within(number, rule.min, rule.max), number, want, f"{shown}, expected {want}")


Rule = _Rule


def _is_floating(col) -> bool:
    import pyarrow as pa

    return pa.types.is_floating(col.type)


def check_rules(rules: Sequence[Rule]) -> None:
    """Rules are rule objects with unique names (raises :class:`~airflow_rtml.exceptions.DataQualityConfigError`)."""
    for r in rules:
        if not isinstance(r, _Rule):
            raise DataQualityConfigError(f"{r!r} is not a data-quality rule. To fix this, use the rules of "
                                         "airflow_rtml.quality (RowCount, NullRatio, …, or Check for your own).")
    names = [r.label for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataQualityConfigError(f"Rule names must be unique; {dupes} appear twice. To fix this, pass name=.")


def evaluate(rules: Sequence[Rule], table, history: Sequence[int] = ()) -> QualityReport:
    """Run ``rules`` on one window's rows; ``history``: the row counts of the windows before it, oldest first."""
    check_rules(rules)
    return QualityReport(rows=table.num_rows, results=tuple(r.evaluate(table, history) for r in rules))
