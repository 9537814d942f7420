"""Feature backfill vs replaying the same history through the live job via Kafka, and equality on the way.

Issue 13. On the running local stack (``rtml local up``), per configuration (events x partitions):

1. **History.** A synthetic labelled-sample stream is produced into a fresh samples topic with ``--partitions``
   partitions. Users are Zipf-skewed (s = 1.2 over 20,000; the top user has ~8 % of the events), items uniform
   over 2,000, and ``--events`` events span ``--hours`` event-time hours. Events are out of order by up to 8 min
   (the watermark delay is 12 min), and 0.2 % are *late*: 25 min behind the stream, so the live job drops them. A
   closing record per partition, 40 min after the last hour, closes every window.
2. **Archive** (not timed): the demo's archive job writes the topic into hourly Parquet partitions; they are
   registered.
3. **Live job via Kafka (the baseline)**, alone on the cluster: the demo's live ``features.sql`` over the topic
   from the earliest offset, timed from its submission until its output holds the last window. That is what
   "replay history through the live job via Kafka" costs once the history is in a topic. The produce time is
   reported separately: a real Kafka replay pays it as well, reading the archive back into a topic.
4. **Backfill.** ``FeatureBackfillOperator`` over the archived hours (Spark logical partitions, Flink replay of
   the same SQL file, versioned Hive partitions), timed per step.
5. **Equality.** ``airflow_rtml.offline.equality.compare`` of the backfill's user and item features against the
   live job's output topics, row for row (mismatch / missing / extra ratios, SMAPE).

Both jobs share the stack's TaskManager (8 slots, 2 cores). The memory figure is the TaskManager's and the Spark
driver's peak RSS while each step runs. Usage:
``.venv/bin/python benchmarks/backfill.py [--events 1000000] [--partitions 1] [--hours 100] [--out F]``; writes
``benchmarks/results/backfill.json`` (a run appends its configuration's row to the file's results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
HOUR_MS = 3_600_000
MIN_MS = 60_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def log(msg: str) -> None:
    print(f"[backfill-bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class PeakRss(threading.Thread):
    """Peak RSS (MiB) of the processes whose command line contains ``needle``, sampled every 0.5 s."""

    def __init__(self, *needles: str):
        super().__init__(daemon=True)
        self.needles, self.peak, self.stop = needles, {n: 0.0 for n in needles}, threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stop.is_set():
            for p in psutil.process_iter(["cmdline", "memory_info"]):
                cmd = " ".join(p.info["cmdline"] or [])
                for n in self.needles:
                    if n in cmd and p.info["memory_info"]:
                        self.peak[n] = max(self.peak[n], p.info["memory_info"].rss / 2**20)
            self.stop.wait(0.5)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join()


def produce(chain, events: int, hours: int, partitions: int, seed: int) -> dict:
    from confluent_kafka import Producer

    rng = random.Random(seed)
    weights = [1 / (k ** 1.2) for k in range(1, 20_001)]
    users = rng.choices(range(20_000), weights=weights, k=events)
    producer = Producer({"bootstrap.servers": chain.bootstrap, "linger.ms": 50, "batch.num.messages": 10_000,
                         "queue.buffering.max.messages": 1_000_000, "compression.type": "lz4"})
    topic, step = chain.topics["samples"], hours * HOUR_MS / events
    late = 0
    t0 = time.monotonic()
    for i in range(events):
        t = START_MS + int(i * step)
        if rng.random() < 0.002 and t - START_MS > 40 * MIN_MS:
            ts, late = t - 25 * MIN_MS, late + 1
        else:
            ts = max(START_MS, t - rng.randrange(0, 8 * MIN_MS))
        rec = {"imp_id": f"e{i}", "user": f"u{users[i]}", "item": f"i{rng.randrange(2_000)}", "bucket": "control",
               "ts_ms": ts, "label": int(rng.random() < 0.05)}
        while True:
            try:
                producer.produce(topic, json.dumps(rec).encode(), partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.1)
        if i % 10_000 == 0:
            producer.poll(0)
    for p in range(partitions):
        producer.produce(topic, json.dumps({"imp_id": f"close{p}", "user": "u-close", "item": "i-close",
                                            "bucket": "control", "ts_ms": START_MS + hours * HOUR_MS + 40 * MIN_MS,
                                            "label": 0}).encode(), partition=p)
    producer.flush()
    return {"seconds": round(time.monotonic() - t0, 2), "late_injected": late}


def last_version(stack, topic: str) -> int | None:
    """The highest version_ms in ``topic`` (its last message: the window aggregate emits in watermark order)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": stack.cfg.kafka_bootstrap, "group.id": f"b-{uuid.uuid4().hex[:6]}"})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        if high <= 0:
            return None
        c.assign([TopicPartition(topic, 0, high - 1)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and not m.error() and m.value():
                return json.loads(m.value())["version_ms"]
        return None
    finally:
        c.close()


def run(args) -> dict:
    from confluent_kafka.admin import AdminClient, NewTopic

    from airflow_rtml.demo.chain import JOB_CONF, Chain
    from airflow_rtml.hooks.flink import FlinkRestHook
    from airflow_rtml.hooks.flink_sql import FlinkSqlGatewayHook, split_statements
    from airflow_rtml.local.stack import LocalStack, airflow_env
    from airflow_rtml.offline.archive import SUCCESS_FILE, hour_values
    from airflow_rtml.offline.equality import compare, versions
    from airflow_rtml.operators.backfill import FeatureBackfillOperator
    from airflow_rtml.operators.hive import ArchivePartitionOperator
    from airflow_rtml.streams.topics import read_topic
    from support import cancel_jobs_named, ti_context

    stack = LocalStack()
    if not all(r.healthy for r in stack.status()):
        sys.exit("The local stack is not up and healthy. To fix this, run `rtml local up` first.")
    os.environ.update(airflow_env(stack.cfg))
    tag = uuid.uuid4().hex[:8]
    chain = Chain(prefix=f"rtml.bb.{tag}", job_prefix=f"rtml-bb-{tag}", bootstrap=stack.cfg.kafka_bootstrap)
    admin = AdminClient({"bootstrap.servers": chain.bootstrap})
    for name, topic in chain.topics.items():
        for f in admin.create_topics([NewTopic(topic, args.partitions if name == "samples" else 1, 1)]).values():
            f.result(30)
    jobs_dir = ROOT / "dags" / "jobs" / "demo"
    jars = [stack.cfg.kafka_connector_jar, *stack.cfg.archive_jars]
    hook = FlinkRestHook()
    out: dict = {"events": args.events, "partitions": args.partitions, "hours": args.hours}
    try:
        log(f"producing {args.events:,} events over {args.hours} h into {args.partitions} partition(s)")
        out["produce"] = produce(chain, args.events, args.hours, args.partitions, args.seed)
        log(f"produced in {out['produce']['seconds']} s; archiving it (the archive job alone, not timed)")

        def start(job: str) -> None:
            FlinkSqlGatewayHook().run_statements(
                [f"ADD JAR '{j}'" for j in jars] + split_statements(chain.sql(job, jobs_dir, stack.cfg.warehouse_dir)),
                properties={**JOB_CONF, "pipeline.name": chain.jobs[job], "parallelism.default": str(args.parallelism)})

        start("archive")
        end = START_MS + args.hours * HOUR_MS
        tables = chain.archive_tables(stack.cfg.warehouse_dir)
        last = tables["samples"].partition_dir(hour_values(end - HOUR_MS)) / SUCCESS_FILE
        deadline = time.monotonic() + 3600
        while not last.exists() and time.monotonic() < deadline:
            time.sleep(1)
        cancel_jobs_named(hook, chain.jobs["archive"])
        for h in range(START_MS, end, HOUR_MS):
            ArchivePartitionOperator(task_id="r", tables=[tables["samples"]], commit_timeout=600,
                                     partition_key=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(h / 1000))
                                     ).execute(ti_context())
        log("the live feature job alone over the topic (the baseline: history replayed via Kafka)")
        t0 = time.monotonic()
        with PeakRss("TaskManagerRunner") as rss:
            start("features")
            while (last_version(stack, chain.topics["user_features"]) or 0) < end:
                time.sleep(0.5)
        out["live_kafka_s"] = round(time.monotonic() - t0, 2)
        out["live_tm_peak_rss_mib"] = round(rss.peak["TaskManagerRunner"])
        cancel_jobs_named(hook, chain.jobs["features"])
        log(f"live job through Kafka: {out['live_kafka_s']} s")
        log("backfill")
        t0 = time.monotonic()
        with PeakRss("TaskManagerRunner", "rtml-backfill") as rss:
            result = FeatureBackfillOperator(task_id="bench", sql=chain.sql("features", jobs_dir), source="samples_in",
                                             archive=tables["samples"], start=START_MS, end=end,
                                             job_name=f"{chain.job_prefix}-backfill", parallelism=args.parallelism,
                                             timeout=7200).execute(ti_context())
        out["backfill_s"] = round(time.monotonic() - t0, 2)
        out["backfill_steps_s"] = result["seconds"]
        out["backfill_input_records"] = result["input_records"]
        out["backfill_tm_peak_rss_mib"] = round(rss.peak["TaskManagerRunner"])
        out["spark_driver_peak_rss_mib"] = round(rss.peak["rtml-backfill"])
        out["speedup_vs_live_kafka"] = round(out["live_kafka_s"] / out["backfill_s"], 2)
        out["speedup_vs_produce_plus_live_kafka"] = round((out["live_kafka_s"] + out["produce"]["seconds"])
                                                          / out["backfill_s"], 2)
        out["backfill_events_per_s"] = round(args.events / out["backfill_s"])
        out["live_kafka_events_per_s"] = round(args.events / out["live_kafka_s"])
        log("equality")
        from airflow_rtml.offline.archive import ArchiveTable, read_partition

        out["equality"] = {}
        for sink, key in (("user_features", "user"), ("item_features", "item")):
            live = versions(read_topic(chain.bootstrap, chain.topics[sink], timeout_s=600), "version_ms",
                            START_MS, end)
            table = ArchiveTable(chain.hive_db, sink, str(Path(tables["samples"].path).parent / sink), ())
            back = [r for h in range(START_MS, end, HOUR_MS) for r in read_partition(table, hour_values(h)).to_pylist()]
            rep = compare(live, back, [key, "version_ms"], ["imps", "clicks", "ctr"])
            out["equality"][sink] = {"equal": rep.equal, "rows": rep.live_rows, "matched": rep.matched,
                                     "missing_ratio": rep.missing_ratio, "extra_ratio": rep.extra_ratio,
                                     "mismatch_ratio": {f: s.mismatch_ratio for f, s in rep.features.items()},
                                     "smape": {f: s.smape for f, s in rep.features.items()},
                                     "examples": rep.examples[:3]}
            log(rep.summary().splitlines()[0])
    finally:
        cancel_jobs_named(hook, *chain.jobs.values(), f"{chain.job_prefix}-backfill")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--hours", type=int, default=100)
    p.add_argument("--parallelism", type=int, default=1, help="of the live job and of the replay")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "backfill.json"))
    args = p.parse_args()
    row = run(args)
    path = Path(args.out)
    doc = json.loads(path.read_text()) if path.exists() else {
        "benchmark": "backfill", "description": __doc__.split("\n\n")[0], "results": []}
    doc["machine"] = {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "platform": platform.platform(),
                      "logical_cores": os.cpu_count(), "python": platform.python_version(),
                      "git_commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                                   cwd=ROOT).stdout.strip(),
                      "load_average_1min": os.getloadavg()[0]}
    doc["results"].append(row)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    log(f"wrote {path}: {json.dumps(row)[:400]}")


if __name__ == "__main__":
    main()
