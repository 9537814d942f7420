"""Read a whole Kafka topic of JSON records, as it is at the moment of reading (for checks and reports, never for
progress: progress has its own readers in this package). No Airflow import here."""

from __future__ import annotations

import json
import uuid


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60) -> list[dict]:
    """Every JSON record of ``topic`` up to the end offsets seen at the start (all partitions); commits nothing."""
    import time

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"rtml-demo-read-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        records, deadline = [], time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            if msg.value():
                records.append(json.loads(msg.value()))
            if msg.offset() >= ends[msg.partition()] - 1:
                pending.discard(msg.partition())
        if pending:
            raise TimeoutError(f"read of {topic} incomplete after {timeout_s}s (partitions {sorted(pending)})")
        return records
    finally:
        consumer.close()
