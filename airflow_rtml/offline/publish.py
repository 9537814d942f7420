"""Batch → stream: publish one hourly partition of features to a versioned (upsert) Kafka topic, in hour order.

A streaming job joins the topic ``FOR SYSTEM_TIME AS OF`` its records' event time (see
``dags/jobs/demo/sample_features.sql``): each published row carries ``version_ms``, the event time from which it is
valid. Versions must reach the topic in version order — a version older than the stream's watermark would be
dropped by the join — so :func:`publish_version` refuses to publish hour H before hour H-1 (the caller retries),
and a retry of hour H republishes the same rows (an upsert: no duplicates in the versioned table).

Each version also carries one *marker* row (key ``marker``): a version with no entity still advances the topic's
watermark. No Airflow import here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from airflow_rtml.exceptions import OfflineError
from airflow_rtml.offline.archive import ArchiveTable, read_partition


class VersionOutOfOrder(OfflineError):
    """The previous version has not been published yet; publishing this one first would make it unusable."""


def _marker_file(table: ArchiveTable, version_ms: int) -> Path:
    return Path(table.path) / "_published" / str(version_ms)


def published(table: ArchiveTable, version_ms: int) -> bool:
    return _marker_file(table, version_ms).exists()


def publish_version(table: ArchiveTable, values: Sequence[str] | None, *, topic: str, key: str, version_ms: int,
                    previous_version_ms: int | None, bootstrap: str, marker: str = "__version__",
                    columns: Sequence[str] | None = None) -> int:
    """Publish partition ``values`` of ``table`` (None: an empty version) as version ``version_ms``; return rows.

    ``previous_version_ms``: the version that must already be published (None for the first one).
    """
    from confluent_kafka import Producer

    if previous_version_ms is not None and not published(table, previous_version_ms):
        raise VersionOutOfOrder(
            f"{table.name}: version {version_ms} cannot be published before version {previous_version_ms} (a stream "
            f"joining {topic} would drop it as late). Retry once the previous hour is published.")
    rows = [] if values is None else read_partition(table, values, columns=columns).to_pylist()
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})
    failures: list[str] = []

    def report(err, _msg):
        if err is not None:
            failures.append(str(err))

    for row in [*rows, {key: marker}]:
        value = {**{k: v for k, v in row.items() if k not in ("dt", "hour")}, "version_ms": version_ms}
        producer.produce(topic, key=json.dumps({key: row[key]}).encode(), value=json.dumps(value).encode(),
                         on_delivery=report)
        producer.poll(0)
    left = producer.flush(30)
    if failures or left:
        raise OfflineError(f"publishing {table.name} version {version_ms} to {topic}: {left} undelivered, errors "
                           f"{failures[:3]}; nothing is marked published, a retry republishes the same rows")
    marker_path = _marker_file(table, version_ms)
    marker_path.parent.mkdir(parents=True, exist_ok=True)
    marker_path.write_text(str(len(rows)))
    return len(rows)
