"""The hourly training step reads exactly its hour: its cost vs the archive's history, and pyarrow vs Spark.

Issue 12, item 3. Builds a synthetic archive in a temporary folder, in exactly the archive's layout
(``<root>/<db>.db/training_samples/dt=YYYY-MM-DD/hour=HH/part-<uuid>-0-<n>``: Parquet files without an extension,
several per hour as Flink's per-checkpoint rolling writes them, plus ``_SUCCESS``; the columns of
``ARCHIVE_COLUMNS["training_samples"]``), with 1, 6 and 24 hours of history before the hour trained, and measures:

1. **The training step as the DAG does it** (``dags/rtml_demo_training.py`` ``train_on_hour``):
   ``read_partition(table, hour_values(start)).to_pylist()`` → ``hour_rows`` → ``train_hour``, for the newest
   hour, per history length; median / p95 of ``--reps`` repetitions. Side by side, the **old way's cost model**:
   the old step read the *whole* training-samples topic (``read_topic``) and kept the hour (``hour_rows``);
   emulated here by reading every partition's files, the same rows the topic held. That is a lower bound on
   the old cost (no Kafka fetch, no JSON parsing), so the ratio understates it.
2. **pyarrow vs Spark reading one partition**, at demo scale (~6,000 rows/hour, what ``rtml demo`` archives)
   and at 10×: ``read_partition`` in the Airflow venv against a ``local[2]`` SparkSession in the stack's Spark
   venv (a subprocess) reading the partition folder's Parquet directly, ``collect()`` to dicts (what the
   training needs) and ``toArrow()``; the SparkSession start and the cold first read are timed separately.
3. **The offline features job per hour partition** (``dags/jobs/demo/offline_features.py``'s ``main``, the
   code ``SparkSubmitOperator`` runs) on the synthetic ``samples`` archive with 1, 6 and 24 hours of history,
   in one Hive-enabled SparkSession over an embedded Derby metastore in the temporary folder (not the stack's
   metastore: the job only needs ``SHOW PARTITIONS`` and the table; the JVM start is reported separately).

Usage: ``.venv/bin/python benchmarks/training_step.py [--reps 5]`` (~3 min); writes
``benchmarks/results/training_step.json``. Needs no running service; needs the Spark venv
(``.rtml/spark-venv``, ``rtml local install``) for parts 2 and 3.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOUR_MS = 3_600_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the demo's start
DEMO_ROWS = 6_000  # training samples per event-time hour in `rtml demo` (6,020 measured)
FILES_PER_HOUR = 6  # one file per completed checkpoint: the demo's hours hold 2-6 files of ~1,000 rows
HISTORIES = (1, 6, 24)
DB = "rtml_bench"


def log(msg: str) -> None:
    print(f"[training-step {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def summary(samples: list[float]) -> dict:
    """Median / p95 / min / max in milliseconds (p95: inclusive quantile, i.e. about the max for n < 20)."""
    ms = sorted(s * 1000 for s in samples)
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[18] if len(ms) > 1 else ms[0]
    return {"median_ms": round(statistics.median(ms), 1), "p95_ms": round(p95, 1), "min_ms": round(ms[0], 1),
            "max_ms": round(ms[-1], 1), "n": len(ms)}


# --------------------------------------------------------------------------------------------------
# The synthetic archive
# --------------------------------------------------------------------------------------------------


def hour_columns(hour_index: int, rows: int, *, training: bool, seed: int) -> dict[str, list]:
    """One event-time hour of samples (``training``: with the online features of ``training_samples``, else
    with the Kafka metadata of ``samples``), in event-time order like the stream."""
    import numpy as np

    rng = np.random.default_rng(seed)
    start = START_MS + hour_index * HOUR_MS
    ts = np.sort(rng.integers(start, start + HOUR_MS, rows))
    users = rng.zipf(1.3, rows) % 1000
    items = rng.zipf(1.5, rows) % 300
    cols = {
        "imp_id": [f"h{hour_index}-{i:06d}" for i in range(rows)],
        "user": [f"u{u}" for u in users],
        "item": [f"i{i}" for i in items],
        "bucket": np.where(rng.random(rows) < 0.5, "control", "treatment").tolist(),
        "ts_ms": ts.tolist(),
        "label": (rng.random(rows) < 0.08).astype("int32").tolist(),
    }
    if training:
        version = (ts // 600_000 * 600_000).tolist()  # the 10-minute feature window the sample saw
        for key in ("user", "item"):
            seen = rng.random(rows) > 0.1
            cols[f"{key}_ctr"] = [round(float(c), 4) if s else None for c, s in zip(rng.beta(1, 12, rows), seen)]
            cols[f"{key}_imps"] = [int(n) if s else None for n, s in zip(rng.integers(1, 40, rows), seen)]
            cols[f"{key}_version_ms"] = [v if s else None for v, s in zip(version, seen)]
    else:
        cols["kafka_partition"] = [0] * rows
        cols["kafka_offset"] = list(range(hour_index * rows, (hour_index + 1) * rows))
        cols["kafka_ts_ms"] = [t + 200 for t in cols["ts_ms"]]
    return cols


_WRITERS: dict[str, list] = {}  # per table: the sink writer's uuid and its file counter (runs across hours)


def write_table(table, first: int, last: int, rows: int) -> int:
    """Write hours ``first..last-1`` of ``table`` as committed partitions, the way Flink's filesystem sink leaves
    them (``part-<uuid>-<subtask>-<counter>``, then ``_SUCCESS``); returns the bytes written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_rtml.offline.archive import SUCCESS_FILE, hour_values

    arrow_type = {"string": pa.string(), "bigint": pa.int64(), "int": pa.int32(), "double": pa.float64()}
    schema = pa.schema([(name, arrow_type[hive]) for name, hive in table.columns])
    training = table.table == "training_samples"
    writer = _WRITERS.setdefault(table.path, [uuid.uuid4(), 0])
    size = 0
    for h in range(first, last):
        data = pa.table(hour_columns(h, rows, training=training, seed=h), schema=schema)
        directory = table.partition_dir(hour_values(START_MS + h * HOUR_MS))
        directory.mkdir(parents=True)
        # Uneven slices, like checkpoints that close files of ~1,000 rows (demo) while the rate varies.
        cuts = sorted({0, rows, *(int(rows * f) for f in (0.16, 0.33, 0.52, 0.68, 0.85)[: FILES_PER_HOUR - 1])})
        for lo, hi in zip(cuts, cuts[1:]):
            path = directory / f"part-{writer[0]}-0-{writer[1]}"
            pq.write_table(data.slice(lo, hi - lo), path, compression="snappy")
            size += path.stat().st_size
            writer[1] += 1
        (directory / SUCCESS_FILE).touch()
    return size


def archive_table(root: Path, name: str):
    from airflow_rtml.demo.chain import ARCHIVE_COLUMNS
    from airflow_rtml.offline.archive import ArchiveTable

    return ArchiveTable(DB, name, str(root / f"{DB}.db" / name), ARCHIVE_COLUMNS[name])


def extend(table, first: int, last: int, rows: int) -> None:
    t0 = time.perf_counter()
    size = write_table(table, first, last, rows)
    log(f"archive {table.table} under {table.path}: hours {first}..{last - 1} x {rows:,} rows, "
        f"{size / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f}s")


# --------------------------------------------------------------------------------------------------
# 1. The training step vs history (Airflow venv)
# --------------------------------------------------------------------------------------------------


class TrainingStep:
    """The DAG's read + train of hour ``history`` (the newest, after exactly ``history`` archived hours).

    ``old_way``: read every partition (the rows the whole training topic held) instead of the hour's one.
    """

    def __init__(self, table, history: int, work: Path, old_way: bool) -> None:
        from airflow_rtml.demo.training import hour_rows, train_hour
        from airflow_rtml.offline.archive import hour_values, read_partition

        self.table, self.history, self.old_way = table, history, old_way
        self.newest = START_MS + history * HOUR_MS
        self.models = work / f"models-{Path(table.path).parent.parent.name}-{'old' if old_way else 'new'}"
        # The previous hour's version exists (the DAG retries until it does): trained once, untimed. Every
        # timed repetition is then a re-run of the same version (same work: the artifact is rewritten).
        prev = self.newest - HOUR_MS
        train_hour(hour_rows(read_partition(table, hour_values(prev)).to_pylist(), prev, prev + HOUR_MS),
                   version=history, models_dir=self.models, hour_start_ms=prev)
        self.timings: dict[str, list[float]] = {"read": [], "hour_rows": [], "train": [], "total": []}
        self.rows_read = self.samples = 0

    def read(self) -> list[dict]:
        from airflow_rtml.offline.archive import hour_values, read_partition

        if not self.old_way:  # what train_on_hour does
            return read_partition(self.table, hour_values(self.newest)).to_pylist()
        rows: list[dict] = []
        for h in range(self.history + 1):
            rows.extend(read_partition(self.table, hour_values(START_MS + h * HOUR_MS)).to_pylist())
        return rows

    def run_once(self) -> None:
        from airflow_rtml.demo.training import hour_rows, train_hour

        t0 = time.perf_counter()
        rows = self.read()
        t1 = time.perf_counter()
        hour = hour_rows(rows, self.newest, self.newest + HOUR_MS)
        t2 = time.perf_counter()
        entry = train_hour(hour, version=self.history + 1, models_dir=self.models, hour_start_ms=self.newest)
        t3 = time.perf_counter()
        for key, sec in (("read", t1 - t0), ("hour_rows", t2 - t1), ("train", t3 - t2), ("total", t3 - t0)):
            self.timings[key].append(sec)
        self.rows_read, self.samples = len(rows), entry["samples"]

    def result(self) -> dict:
        return {"history_hours": self.history, "partitions_read": self.history + 1 if self.old_way else 1,
                "rows_read": self.rows_read, "samples_trained": self.samples,
                "read_plus_hour_rows": summary([a + b for a, b in zip(self.timings["read"],
                                                                      self.timings["hour_rows"])]),
                **{k: summary(v) for k, v in self.timings.items()}}


def pyarrow_read(table, reps: int) -> dict:
    """``read_partition`` of one partition (hour 0): to an Arrow table, and on to dicts as the training needs."""
    from airflow_rtml.offline.archive import hour_values, read_partition

    values = hour_values(START_MS)
    arrow, dicts = [], []
    read_partition(table, values).to_pylist()  # warm the page cache like Spark's untimed listing below
    for _ in range(reps):
        t0 = time.perf_counter()
        t = read_partition(table, values)
        t1 = time.perf_counter()
        rows = t.to_pylist()
        t2 = time.perf_counter()
        arrow.append(t1 - t0)
        dicts.append(t2 - t0)
    return {"rows": len(rows), "arrow_table": summary(arrow), "dicts": summary(dicts)}


# --------------------------------------------------------------------------------------------------
# 2 and 3. Spark (a subprocess in the Spark venv)
# --------------------------------------------------------------------------------------------------


def _spark_session(hive_dir: str | None):
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master("local[2]").appName("rtml-bench-training-step")
               .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.memory", "512m")
               .config("spark.sql.shuffle.partitions", "4").config("spark.sql.session.timeZone", "UTC"))
    if hive_dir:  # embedded Derby metastore in the temporary folder, never the stack's
        builder = (builder.config("spark.sql.catalogImplementation", "hive")
                   .config("spark.sql.warehouse.dir", f"{hive_dir}/warehouse")
                   .config("spark.hadoop.javax.jdo.option.ConnectionURL",
                           f"jdbc:derby:;databaseName={hive_dir}/metastore_db;create=true")
                   .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={hive_dir}"))
    return builder.getOrCreate()


def spark_worker(spec: dict) -> dict:
    """Runs in the Spark venv's Python. ``spec["mode"]``: ``read`` (one partition per scale) or ``offline``."""
    t0 = time.perf_counter()
    spark = _spark_session(spec.get("hive_dir"))
    import pyarrow
    import pyspark

    out: dict = {"session_start_s": round(time.perf_counter() - t0, 2), "pyspark": pyspark.__version__,
                 "pyarrow": pyarrow.__version__}
    if spec["mode"] == "read":
        for scale, directory in spec["partitions"].items():
            res: dict = {}
            for i in range(spec["reps"] + 1):
                t1 = time.perf_counter()
                rows = [r.asDict() for r in spark.read.parquet(directory).collect()]
                t2 = time.perf_counter()
                spark.read.parquet(directory).toArrow()
                t3 = time.perf_counter()
                if i == 0:  # the first read in a fresh JVM: class loading, code generation
                    res["first_dicts_s"] = round(t2 - t1, 3)
                    res["dicts"], res["arrow_table"] = [], []
                    continue
                res["dicts"].append(t2 - t1)
                res["arrow_table"].append(t3 - t2)
            res["rows"] = len(rows)
            res["dicts"], res["arrow_table"] = summary(res["dicts"]), summary(res["arrow_table"])
            out[scale] = res
    else:
        import importlib.util

        from pyspark.sql import SparkSession

        spec_mod = importlib.util.spec_from_file_location("offline_features", spec["job"])
        job = importlib.util.module_from_spec(spec_mod)
        spec_mod.loader.exec_module(job)
        cols = ", ".join(f"`{n}` {t}" for n, t in spec["columns"])
        t1 = time.perf_counter()
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {DB}")
        spark.sql(f"CREATE EXTERNAL TABLE {DB}.samples ({cols}) PARTITIONED BY (`dt` string, `hour` string) "
                  f"STORED AS PARQUET LOCATION 'file://{spec['samples_path']}'")
        spark.sql(f"MSCK REPAIR TABLE {DB}.samples")
        out["metastore_setup_s"] = round(time.perf_counter() - t1, 2)
        SparkSession.stop = lambda self: None  # the job stops its session at the end; keep ours for the next run
        import inspect

        extra = [spec["attribution_ms"]] if "attribution_ms" in inspect.signature(job.main).parameters else []

        def run(history: int) -> float:
            t1 = time.perf_counter()
            job.main(DB, spec["start_ms"] + history * HOUR_MS, spec["start_ms"], f"{spec['out']}/user",
                     f"{spec['out']}/item", *extra)
            return time.perf_counter() - t1

        out["first_run_s"] = round(run(spec["histories"][0]), 2)  # cold JVM: left out of the figures below
        times: dict[int, list[float]] = {h: [] for h in spec["histories"]}
        for _ in range(spec["reps"]):  # every history once per repetition, like the training step
            for history in spec["histories"]:
                times[history].append(run(history))
        runs = {str(h): {"history_hours": h, "window_hours": min(h + 1, 7 * 24), **summary(t)}
                for h, t in times.items()}
        out["per_history"] = runs
    spark.sparkContext.stop()
    return out


def run_spark(spec: dict, spark_python: Path, work: Path) -> dict:
    """Run :func:`spark_worker` in the Spark venv; wall time to the session and peak RSS of the process tree."""
    import psutil

    spec_path, out_path = work / f"spark-{spec['mode']}.json", work / f"spark-{spec['mode']}.out.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": str(spark_python)}
    env.pop("PYTHONPATH", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(spark_python), __file__, "--spark-worker", str(spec_path), str(out_path)],
                            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def watch() -> None:
        p = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                peak[0] = max(peak[0], sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]))
            except psutil.Error:
                pass
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output, _ = proc.communicate(timeout=600)
    wall = time.perf_counter() - t0
    watcher.join()
    if proc.returncode:
        raise RuntimeError(f"the Spark worker ({spec['mode']}) failed ({proc.returncode}):\n{output[-4000:]}")
    result = json.loads(out_path.read_text())
    result["process_wall_s"] = round(wall, 1)
    result["peak_rss_mib"] = round(peak[0] / 2**20)
    return result


# --------------------------------------------------------------------------------------------------


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions per measurement (offline job: fewer)")
    ap.add_argument("--spark-worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.spark_worker:
        spec = json.loads(Path(args.spark_worker[0]).read_text())
        Path(args.spark_worker[1]).write_text(json.dumps(spark_worker(spec)))
        return 0

    import psutil
    import pyarrow
    import sklearn

    sys.path.insert(0, str(ROOT))
    from airflow_rtml.demo.chain import ARCHIVE_COLUMNS, Chain
    from airflow_rtml.local.config import StackConfig
    from airflow_rtml.offline.archive import hour_values

    os.environ.setdefault("RTML_PROJECT_DIR", str(ROOT))
    cfg = StackConfig.from_env()
    spark_python = cfg.spark_python
    load_start = os.getloadavg()[0]
    stack_up = {name: listening(getattr(cfg.ports, name)) for name in ("flink_rest", "kafka", "hive_metastore")}
    psutil.cpu_percent(interval=None)  # starts the machine-wide CPU measurement
    with tempfile.TemporaryDirectory(prefix="rtml-bench-training-") as tmp:
        work = Path(tmp)
        log("1. training step vs history (new: one partition; old: every partition)")
        # One archive per history length, holding exactly `history` hours before the hour trained and that hour;
        # each repetition runs every configuration once, in a shuffled order, so the machine's load hits them alike.
        tables: dict = {"demo": {}, "x10": {}}
        for history in HISTORIES:
            tables["demo"][history] = archive_table(work / f"demo-h{history}", "training_samples")
            extend(tables["demo"][history], 0, history + 1, DEMO_ROWS)
            tables["x10"][history] = archive_table(work / f"x10-h{history}", "training_samples")
            extend(tables["x10"][history], 0, history + 1, 10 * DEMO_ROWS)
        configs = {(scale, h, old): TrainingStep(tables[scale][h], h, work, old_way=old)
                   for scale in ("demo", "x10") for h in HISTORIES for old in (False, True)
                   if not (scale == "x10" and old)}  # the old way at 10x: 1.5 M rows to dicts, left out
        order = random.Random(12)
        for rep in range(args.reps):
            for step in order.sample(list(configs.values()), len(configs)):  # a fresh order every repetition
                gc.collect()  # a task process starts clean: no garbage left by the previous configuration
                step.run_once()
            log(f"   repetition {rep + 1}/{args.reps} done")
        steps: dict = {"demo": {}, "x10": {}}
        for history in HISTORIES:
            new, old = configs[("demo", history, False)].result(), configs[("demo", history, True)].result()
            ratio = round(old["total"]["median_ms"] / new["total"]["median_ms"], 1)
            read_ratio = round(old["read_plus_hour_rows"]["median_ms"] / new["read_plus_hour_rows"]["median_ms"], 1)
            steps["demo"][str(history)] = {"new": new, "old_whole_history": old, "old_over_new_total": ratio,
                                           "old_over_new_read_plus_hour_rows": read_ratio}
            log(f"   demo, {history:>2} h history: new {new['total']['median_ms']:.0f} ms "
                f"(read {new['read_plus_hour_rows']['median_ms']:.0f}), old {old['total']['median_ms']:.0f} ms "
                f"(read {old['read_plus_hour_rows']['median_ms']:.0f}, {old['rows_read']:,} rows): {ratio}x, "
                f"read {read_ratio}x")
            big_new = configs[("x10", history, False)].result()
            steps["x10"][str(history)] = {"new": big_new}
            log(f"   10x,  {history:>2} h history: new {big_new['total']['median_ms']:.0f} ms "
                f"(read {big_new['read_plus_hour_rows']['median_ms']:.0f})")
        for scale in ("demo", "x10"):
            for key in ("total", "read_plus_hour_rows"):
                medians = [steps[scale][str(h)]["new"][key]["median_ms"] for h in HISTORIES]
                steps[scale][f"new_{key}_24h_over_1h"] = round(medians[-1] / medians[0], 2)
        demo = {"training_samples": tables["demo"][1], "samples": archive_table(work / "demo-samples", "samples")}
        big = {"training_samples": tables["x10"][1]}

        log("2. one partition: pyarrow (read_partition) vs Spark local[2]")
        reads = {"pyarrow": {"demo": pyarrow_read(demo["training_samples"], args.reps),
                             "x10": pyarrow_read(big["training_samples"], args.reps)}}
        spark_read = run_spark({"mode": "read", "reps": args.reps, "partitions": {
            "demo": str(demo["training_samples"].partition_dir(hour_values(START_MS))),
            "x10": str(big["training_samples"].partition_dir(hour_values(START_MS)))}}, spark_python, work)
        reads["spark"] = spark_read
        for scale in ("demo", "x10"):
            pa_, sp = reads["pyarrow"][scale], spark_read[scale]
            reads[f"spark_over_pyarrow_{scale}"] = {
                "dicts": round(sp["dicts"]["median_ms"] / pa_["dicts"]["median_ms"], 1),
                "arrow_table": round(sp["arrow_table"]["median_ms"] / pa_["arrow_table"]["median_ms"], 1),
                "task_cold_dicts": round((spark_read["session_start_s"] + sp["first_dicts_s"]) * 1000
                                         / pa_["dicts"]["median_ms"], 1)}
            log(f"   {scale}: pyarrow {pa_['dicts']['median_ms']:.0f} ms to dicts "
                f"({pa_['arrow_table']['median_ms']:.0f} Arrow); Spark {sp['dicts']['median_ms']:.0f} ms ({sp['arrow_table']['median_ms']:.0f} Arrow), "
                f"first read {sp['first_dicts_s']:.1f}s, session {spark_read['session_start_s']:.1f}s")

        log("3. offline features job per hour partition (Spark, embedded Derby metastore)")
        extend(demo["samples"], 0, max(HISTORIES) + 1, DEMO_ROWS)
        offline = run_spark({"mode": "offline", "reps": max(2, args.reps // 3), "histories": list(HISTORIES),
                             "hive_dir": str(work / "hive"), "start_ms": START_MS,
                             "samples_path": demo["samples"].path,
                             "attribution_ms": Chain().attribution_minutes * 60_000,
                             "columns": ARCHIVE_COLUMNS["samples"],
                             "job": str(ROOT / "dags" / "jobs" / "demo" / "offline_features.py"),
                             "out": str(work / "offline")}, spark_python, work)
        for h, r in offline["per_history"].items():
            log(f"   {h:>2} h history ({r['window_hours']} h window): median {r['median_ms']:.0f} ms")

    result = {
        "benchmark": "training_step",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cores": psutil.cpu_count(), "cpu": platform.processor() or platform.machine(),
                    "ram_gib": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
                    "pyarrow": pyarrow.__version__, "sklearn": sklearn.__version__,
                    "spark_venv": {"pyspark": spark_read["pyspark"], "pyarrow": spark_read["pyarrow"]},
                    "loadavg_1m_start": round(load_start, 2), "loadavg_1m_end": round(os.getloadavg()[0], 2),
                    "machine_cpu_busy_pct_during_run_incl_this": psutil.cpu_percent(interval=None),
                    "local_stack_listening": stack_up,
                    "note": "the machine was shared: another session's local stack (Flink, Kafka, Hive metastore, "
                            "Airflow) was running; absolute times are noisy, the side-by-side ratios less so"},
        "settings": {"reps": args.reps, "histories_h": list(HISTORIES), "rows_per_hour": {"demo": DEMO_ROWS,
                     "x10": 10 * DEMO_ROWS}, "files_per_hour": FILES_PER_HOUR, "compression": "snappy",
                     "spark": "local[2], driver 512m, UI off", "old_way": "every partition read (the rows the "
                     "whole training topic held), then hour_rows: a lower bound on read_topic (no Kafka, no JSON)"},
        "training_step": steps,
        "one_partition_read": reads,
        "offline_features": offline,
    }
    out = ROOT / "benchmarks" / "results" / "training_step.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
