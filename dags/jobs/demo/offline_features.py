"""Offline long-window features of the demo chain, one hourly partition per run (PySpark, submitted by Airflow's
SparkSubmitOperator from ``dags/rtml_demo_offline.py``).

For the event-time hour H it reads the archived labelled samples of the trailing 7 days up to and including H
(only those partitions: the cost grows with the window, never with the archive's history), computes per user and
per item the 24-hour and 7-day impression and click counts and CTR, and writes them as partition H of
``offline_user_features`` / ``offline_item_features`` with ``version_ms`` = the end of H plus the attribution
window: a sample's label is known only once its attribution window has passed, so the counts of H (their last
clicks up to that long after H) are known from that event time on, never before — a consumer joining them as of
a sample's time cannot see a click from the sample's future. A re-run overwrites the partition (same input, same output).

It refuses to compute over incomplete input: every hour of the window since the chain's start must be a
registered partition of the archive, or it fails listing the missing ones.

Usage: offline_features.py DB HOUR CHAIN_START_MS USER_PATH ITEM_PATH ATTRIBUTION_MS
       (HOUR: ISO start, e.g. 2026-01-01T00:00:00Z)
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone

HOUR_MS = 3_600_000


def _values(ms: int) -> tuple[str, str]:
    t = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return t.strftime("%Y-%m-%d"), t.strftime("%H")


def main(db: str, hour_start_ms: int, chain_start_ms: int, user_path: str, item_path: str,
         attribution_ms: int) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = SparkSession.builder.appName(f"offline-features-{db}-{hour_start_ms}").enableHiveSupport().getOrCreate()
    end_ms = hour_start_ms + HOUR_MS
    first_ms = max(chain_start_ms, end_ms - 7 * 24 * HOUR_MS)
    hours = [_values(ms) for ms in range(first_ms, end_ms, HOUR_MS)]
    registered = {tuple(p.split("/")[i].split("=")[1] for i in (0, 1))
                  for (p,) in spark.sql(f"SHOW PARTITIONS {db}.samples").collect()}
    missing = [f"{db}.samples/dt={d}/hour={h}" for d, h in hours if (d, h) not in registered]
    if missing:
        raise SystemExit(f"offline features of hour {_values(hour_start_ms)}: input partitions not registered (the "
                         f"archive of these hours is not committed): {missing}. Nothing was written.")
    wanted = F.lit(False)
    for d, h in hours:
        wanted = wanted | ((F.col("dt") == d) & (F.col("hour") == h))
    samples = (spark.table(f"{db}.samples").where(wanted)
               .withColumn("in_24h", F.col("ts_ms") >= F.lit(end_ms - 24 * HOUR_MS)))

    def per(key: str):
        return samples.groupBy(key).agg(
            F.sum(F.col("in_24h").cast("long")).alias("imps_24h"),
            F.sum(F.when(F.col("in_24h"), F.col("label")).otherwise(0).cast("long")).alias("clicks_24h"),
            F.count(F.lit(1)).alias("imps_7d"),
            F.sum(F.col("label").cast("long")).alias("clicks_7d"),
        ).select(
            F.col(key),
            F.col("imps_24h"), F.col("clicks_24h"),
            (F.col("clicks_24h") / F.when(F.col("imps_24h") > 0, F.col("imps_24h"))).cast("double").alias("ctr_24h"),
            F.col("imps_7d"), F.col("clicks_7d"),
            (F.col("clicks_7d") / F.col("imps_7d")).cast("double").alias("ctr_7d"),
            F.lit(end_ms + attribution_ms).cast("long").alias("version_ms"),
        )

    dt, hour = _values(hour_start_ms)
    for key, path in (("user", user_path), ("item", item_path)):
        out = per(key).orderBy(key).coalesce(1)
        out.write.mode("overwrite").parquet(f"{path.rstrip('/')}/dt={dt}/hour={hour}")
        print(f"offline features: {key} partition dt={dt}/hour={hour} written ({out.count()} rows) to {path}")
    spark.stop()


if __name__ == "__main__":
    if len(sys.argv) != 7:
        raise SystemExit(__doc__)
    hour = datetime.strptime(sys.argv[2], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    main(sys.argv[1], int(hour.timestamp() * 1000), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6]))
