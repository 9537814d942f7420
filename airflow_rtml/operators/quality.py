"""Per-window data-quality checks (DQC) in a DAG: the rules of :mod:`airflow_rtml.quality` on one closed, committed
event-time window of an archive table.

Put :class:`WindowQualityCheckOperator` in the DAG a window event schedules (one run per closed hour), upstream of
the step it guards. It reads only that window's committed partition (and, for volume rules, the row counts of the
windows before it from Parquet metadata), so its cost grows with the window, not with history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context

from airflow_rtml.exceptions import OfflineError
from airflow_rtml.offline.archive import (
    ArchiveTable, data_files, hour_values, read_partition, wait_committed, write_window_report,
)
from airflow_rtml.quality import QualityReport, Rule, check_rules, evaluate


class WindowQualityCheckOperator(BaseOperator):
    """Check one closed event-time window of ``table`` against ``rules``; block its downstream on a failed
    blocking rule.

    Only a committed window is checked: the operator waits up to ``commit_timeout`` for Flink's success file and
    raises :class:`~airflow_rtml.exceptions.PartitionNotCommitted` otherwise, never checking partial data. Each
    result is logged; the report (``rows``, ``blocked``, ``warnings``, every rule's value) is the task's XCom
    (key ``dqc``), the ``dqc`` entry of each outlet's asset event, next to ``window_start_ms``, and the window's
    report file ``_DQC.json`` beside its data (:func:`~airflow_rtml.offline.archive.read_window_report`: how a
    later window's step tells a blocked window from one not checked yet; readers skip ``_`` files).

    - A failed ``block`` rule: every notifier is called, then the task is **skipped** with the rule named, so the
      window's downstream tasks skip too (default trigger rule) — e.g. training skips that hour and its log and the
      UI say which rule blocked it. Other windows are not affected.
    - A failed ``warn`` rule: every notifier is called; the task succeeds.

    Templated fields: ``table``, ``partition_key``.

    :param table: the archive table (hourly partitions by event time) whose window to check.
    :param rules: the rules (:mod:`airflow_rtml.quality`), names unique.
    :param partition_key: the window, as the window asset's partition key (its ISO start); default: the run's.
    :param window: the window's length (the table's partitioning: one hour).
    :param commit_timeout: how long to wait for the window's success file.
    :param notifiers: Airflow notifiers (``airflow.sdk.BaseNotifier``, e.g. the Slack or SMTP provider's) called
        with the task's context plus ``dqc`` (the report) when any rule fails.
    """

    template_fields: Sequence[str] = ("table", "partition_key")
    ui_color = "#fff4e5"

    def __init__(self, *, table: ArchiveTable, rules: Sequence[Rule], partition_key: str = "{{ dag_run.partition_key }}",
                 window: timedelta = timedelta(hours=1), commit_timeout: timedelta | float = timedelta(seconds=60),
                 notifiers: Sequence[Any] = (), **kwargs: Any):
        super().__init__(**kwargs)
        if not rules:
            raise ValueError("rules must hold at least one rule (airflow_rtml.quality)")
        if window != timedelta(hours=1):
            raise ValueError("window must be one hour: archive tables are partitioned by event-time hour")
        self.table, self.rules, self.partition_key = table, list(rules), partition_key
        self.window = window
        self.commit_timeout = commit_timeout.total_seconds() if isinstance(commit_timeout, timedelta) \
            else float(commit_timeout)
        self.notifiers = list(notifiers)
        check_rules(self.rules)  # duplicate names fail at parse time, not per window

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_rtml.sensors.watermark import window_from_partition_key

        if not self.partition_key or self.partition_key in ("None", ""):
            raise OfflineError(
                "WindowQualityCheckOperator needs the window to check: this run has no partition_key. To fix this, "
                "schedule the DAG on the window asset (PartitionedAssetTimetable) or pass partition_key=.")
        window = window_from_partition_key(self.partition_key, self.window)
        values = hour_values(window.start_ms)
        wait_committed(self.table, values, self.commit_timeout)
        rows = read_partition(self.table, values)
        report = evaluate(self.rules, rows, self._history(window.start_ms))
        for r in report.results:
            (self.log.info if r.passed else self.log.warning)(
                "DQC %s %s [%s] on %s: %s", "PASS" if r.passed else "FAIL", r.rule, r.severity,
                self.table.partition_ref(values), r.message)
        result = {"window_start_ms": window.start_ms, "window_end_ms": window.end_ms,
                  "partition": self.table.partition_ref(values), **report.as_dict()}
        write_window_report(self.table, values, result)  # the per-window report, beside the window's data
        context["ti"].xcom_push(key="dqc", value=result)
        events = context.get("outlet_events")
        for outlet in (getattr(self, "outlets", None) or []) if events is not None else []:
            events[outlet].extra = {"window_start_ms": window.start_ms, "window_end_ms": window.end_ms, "dqc": result}
        if report.blocked or report.warnings:
            self._notify(context, report)
        if report.blocked:
            raise AirflowSkipException(
                f"Window {self.partition_key} of {self.table.name} is blocked by data-quality rule(s) "
                f"{', '.join(report.blocked)}: {report.summary()}. Its downstream tasks skip this window.")
        return result

    def _history(self, start_ms: int) -> list[int]:
        """Row counts of the committed windows before ``start_ms`` that volume rules need (Parquet metadata only:
        no data is read); missing or uncommitted windows are left out."""
        import pyarrow.parquet as pq

        from airflow_rtml.offline.archive import SUCCESS_FILE

        need = max((getattr(r, "windows", 0) for r in self.rules), default=0)
        hour = int(self.window.total_seconds() * 1000)
        counts = []
        for k in range(need, 0, -1):
            directory = self.table.partition_dir(hour_values(start_ms - k * hour))
            if (directory / SUCCESS_FILE).exists():
                counts.append(sum(pq.ParquetFile(f).metadata.num_rows for f in data_files(directory)))
        return counts

    def _notify(self, context: Context, report: QualityReport) -> None:
        for notifier in self.notifiers:
            try:
                notifier({**context, "dqc": report.as_dict()})
            except Exception:  # noqa: BLE001 - a broken notifier must not hide the check's own outcome
                self.log.exception("DQC notifier %r failed", notifier)
