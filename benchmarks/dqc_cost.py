"""What a per-window data-quality check costs (issue 14), and that the cost follows the window, not the history.

Side by side, on real Parquet partitions of the demo's size (6,000 training samples per hour) with 1, 24 and 168
hours archived before the newest one:

- **ours**: ``WindowQualityCheckOperator`` with the demo training's ten rules (row count, volume against the last
  24 hours, label range, null users, label-join rate, four feature-crossing counts, one SQL rule) on the newest
  committed hour: it reads that partition and only
  the Parquet footers of the 24 hours before it;
- **baseline**: the same rules over the whole table, read as one dataset: what a checker that does not know the
  window is complete does (Great Expectations or Soda pointed at the table), per hour.

Median of 7 runs each (after one warm-up).

    .venv/bin/python benchmarks/dqc_cost.py      # -> benchmarks/results/dqc_cost.json
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from airflow_rtml.offline.archive import SUCCESS_FILE, ArchiveTable, hour_values
from airflow_rtml.quality import (
    FeatureCrossing, MeanBetween, NullRatio, RowCount, SqlCheck, ValueRange, VolumeVsBaseline, evaluate,
)

OUT = Path(__file__).parent / "results" / "dqc_cost.json"
H0 = 1767225600000
HOUR = 3_600_000
ROWS = 6000
VERSIONS = ("user_version_ms", "item_version_ms", "user_offline_version_ms", "item_offline_version_ms")
COLUMNS = (("imp_id", "string"), ("user", "string"), ("item", "string"), ("bucket", "string"), ("ts_ms", "bigint"),
           ("label", "int"), *((c, "bigint") for c in VERSIONS))
# The rules of the demo's training (dags/rtml_demo_training.py), the SQL rule run by DuckDB included.
RULES = [RowCount(min_rows=1), VolumeVsBaseline(min_ratio=0.5, windows=24), ValueRange(column="label", min=0, max=1),
         NullRatio(column="user", max_ratio=0.0, severity="warn"),
         MeanBetween(column="label", min=0.07, max=0.2, name="label_join_rate"),
         *(FeatureCrossing(version_column=c, time_column="ts_ms") for c in VERSIONS),
         SqlCheck(name="known_buckets", max=0.0,
                  sql="SELECT avg(CASE WHEN bucket IN ('control', 'treatment') THEN 0 ELSE 1 END) FROM rows")]


class _TI:
    def xcom_push(self, key, value):
        pass


def _hour(rng: random.Random, start_ms: int) -> pa.Table:
    ts = [start_ms + rng.randrange(HOUR) for _ in range(ROWS)]
    return pa.table({
        **{c: pa.array([t - rng.randrange(600_000) for t in ts], pa.int64()) for c in VERSIONS},
        "imp_id": [f"i{start_ms}-{n}" for n in range(ROWS)], "user": [f"u{rng.randrange(500)}" for _ in range(ROWS)],
        "item": [f"t{rng.randrange(200)}" for _ in range(ROWS)],
        "bucket": [rng.choice(("control", "treatment")) for _ in range(ROWS)],
        "ts_ms": pa.array(ts, pa.int64()),
        "label": pa.array([int(rng.random() < 0.1) for _ in range(ROWS)], pa.int32())})


def _median_ms(fn, n: int = 7) -> float:
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 1)


def run() -> dict:
    from airflow_rtml.operators.quality import WindowQualityCheckOperator

    rng = random.Random(7)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tables = {}
        for history in (1, 24, 168):  # written first, so that no measurement runs right after a burst of writes
            table = tables[history] = ArchiveTable("bench", f"samples_{history}", str(Path(tmp) / f"s{history}"),
                                                   COLUMNS)
            for h in range(history + 1):  # the newest hour has `history` hours before it
                d = table.partition_dir(hour_values(H0 + h * HOUR))
                d.mkdir(parents=True, exist_ok=True)
                pq.write_table(_hour(rng, H0 + h * HOUR), d / "part-0.parquet")
                (d / SUCCESS_FILE).touch()
        for history, table in tables.items():
            key = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((H0 + history * HOUR) / 1000))
            op = WindowQualityCheckOperator(task_id="dqc", table=table, rules=RULES, partition_key=key,
                                            commit_timeout=1)
            ours = _median_ms(lambda: op.execute({"ti": _TI()}))

            def whole_table():
                dataset = ds.dataset(table.location, format="parquet", partitioning="hive")
                counts = [f.count_rows() for f in dataset.get_fragments()]
                evaluate(RULES, dataset.to_table(), counts[:-1][-24:])

            baseline = _median_ms(whole_table)
            rows.append({"hours_before": history, "partitions": history + 1, "ours_ms": ours,
                         "whole_table_ms": baseline, "ratio": round(baseline / ours, 1)})
            print(rows[-1], flush=True)
    return {"benchmark": "dqc_cost", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_1m_at_start": os.getloadavg()[0]},
            "rows_per_hour": ROWS, "rules": [r.label for r in RULES], "results": rows}


if __name__ == "__main__":
    logging.disable(logging.INFO)  # the operator logs each rule's result: not what is measured
    result = run()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
