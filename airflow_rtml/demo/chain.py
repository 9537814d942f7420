"""The demo chain's wiring: topics, the four Flink SQL jobs (``dags/jobs/demo/*.sql``), their names and settings.

Shared by the example DAGs (``dags/rtml_demo_*.py``), the ``rtml demo`` command and the system test, so all
three run exactly the same jobs. Job SQL lives beside the DAGs; placeholders ``{name}`` are filled here.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Chain:
    """Names and event-time settings of one demo chain (a prefix keeps parallel chains apart)."""

    prefix: str = "rtml.demo"
    job_prefix: str = "rtml-demo"
    bootstrap: str = "127.0.0.1:9092"
    lateness_seconds: int = 60  # the jobs' watermark delay (bounded out-of-orderness)
    attribution_minutes: int = 10  # a click counts for its impression within this (event time)
    feature_window_minutes: int = 10

    @property
    def samples_delay_seconds(self) -> int:
        """Watermark delay of jobs reading the samples topic: a sample labelled 0 is written only once its
        attribution window has passed, so samples arrive up to that much (plus lateness) out of order."""
        return self.attribution_minutes * 60 + 2 * self.lateness_seconds

    @property
    def topics(self) -> dict[str, str]:
        names = ("impressions", "clicks", "samples", "dead_letter", "late", "user_features", "item_features",
                 "training_samples", "evaluation")
        return {n: f"{self.prefix}.{n.replace('_', '-')}" for n in names}

    @property
    def jobs(self) -> dict[str, str]:
        """Job key → Flink job name (its identity for adoption); in start order."""
        return {key: f"{self.job_prefix}-{key.replace('_', '-')}"
                for key in ("label_join", "features", "sample_features", "evaluation")}

    def sql(self, job: str, jobs_dir: str | Path) -> str:
        """The job's SQL with every placeholder filled."""
        values = {**asdict(self), **{f"{k}_topic": v for k, v in self.topics.items()}, "job_name": self.jobs[job],
                  "samples_delay_seconds": self.samples_delay_seconds}
        values["samples_in"] = (Path(jobs_dir) / "_samples_in.sql").read_text().format(**values)
        return (Path(jobs_dir) / f"{job}.sql").read_text().format(**values)


def connector_jar() -> str:
    """The Flink Kafka SQL connector jar as the SQL Gateway sees it (the local stack exports its path)."""
    jar = os.environ.get("RTML_FLINK_KAFKA_CONNECTOR_JAR")
    if not jar:
        raise RuntimeError(
            "RTML_FLINK_KAFKA_CONNECTOR_JAR is not set. To fix this, run inside the local stack (`rtml local up` "
            "sets it for Airflow) or export the path of flink-sql-connector-kafka on the SQL Gateway's host."
        )
    return jar


#: Session settings every demo job runs with: UTC windows, checkpoints every 5 s (commit-aware waits).
JOB_CONF = {"table.local-time-zone": "UTC", "execution.checkpointing.interval": "5s"}
