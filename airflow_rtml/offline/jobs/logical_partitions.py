"""Spark: turn archive partitions into ordered *logical partitions* shaped like the live Kafka topic.

    spark-submit logical_partitions.py --out DIR [--order-column kafka_offset] [--partition-column kafka_partition]
        [--key-column user --partitions N] [--time-column ts_ms --tie-break imp_id]
        (--inputs-file FILE | INPUT_DIR [INPUT_DIR ...])

Reads the Parquet files of the given archive partition folders (``dt=…/hour=…``; ``--inputs-file``: one per line,
for months of hours) and writes, for each logical
partition ``n``, exactly one JSON-lines file ``DIR/lp=<n>/part-*.json`` holding its records in replay order:

* history archived from Kafka: logical partition = the record's Kafka partition, order = its Kafka offset — the
  order the live topic held it in (the archive keeps both, from the Kafka source's metadata columns);
* history without offsets (``--order-column ''``): logical partition = hash of ``--key-column`` mod
  ``--partitions``, order = event time (``--time-column``), ties broken by ``--tie-break`` columns then by the
  whole record's JSON text, so the order is total and the same on every run.

One file per logical partition matters: Flink reads a JSON file as one split, start to end, so the replay sees
the records in exactly this order. The output folder is replaced (a retry writes the same files again).
A summary line ``RTML_LOGICAL_PARTITIONS=<json>`` (records and offset range per partition) ends the log.
"""

import argparse
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--partition-column", default="kafka_partition")
    p.add_argument("--order-column", default="kafka_offset")
    p.add_argument("--key-column", default=None)
    p.add_argument("--partitions", type=int, default=None)
    p.add_argument("--time-column", default="ts_ms")
    p.add_argument("--tie-break", default="")
    p.add_argument("--inputs-file", default=None)
    p.add_argument("inputs", nargs="*")
    a = p.parse_args(argv)
    if a.inputs_file:
        with open(a.inputs_file) as fh:
            a.inputs += [line.strip() for line in fh if line.strip()]
    if not a.inputs:
        sys.exit("No input folder: pass INPUT_DIR ... or --inputs-file.")

    spark = SparkSession.builder.appName("rtml-logical-partitions").getOrCreate()
    df = spark.read.parquet(*a.inputs)
    if a.order_column:
        missing = [c for c in (a.partition_column, a.order_column) if c not in df.columns]
        if missing:
            sys.exit(f"The archive has no column(s) {missing} (columns: {df.columns}). To fix this, archive the "
                     f"Kafka partition and offset, or pass --order-column '' with --key-column and --partitions.")
        df = df.withColumn("lp", F.col(a.partition_column))
        order = [a.order_column]
    else:
        if not a.key_column or not a.partitions:
            sys.exit("Without offsets, pass --key-column and --partitions (the live topic's key and count).")
        df = df.withColumn("lp", F.pmod(F.hash(F.col(a.key_column)), F.lit(a.partitions)))
        ties = [c for c in a.tie_break.split(",") if c]
        df = df.withColumn("_whole", F.to_json(F.struct(*[F.col(c) for c in df.columns if c != "lp"])))
        order = [a.time_column, *ties, "_whole"]
    # Each logical partition lands whole in one Spark partition (hash of lp), sorted; partitionBy then writes it
    # as exactly one file of its own folder. No count of the partitions first: that would be a second full read.
    ordered = df.repartition("lp").sortWithinPartitions("lp", *order)
    if "_whole" in ordered.columns:
        ordered = ordered.drop("_whole")
    ordered.write.mode("overwrite").partitionBy("lp").json(a.out)
    spark.stop()


if __name__ == "__main__":
    main()
