"""The demo chain's wiring: topics, the four Flink SQL jobs (``dags/jobs/demo/*.sql``), their names and settings.

Shared by the example DAGs (``dags/rtml_demo_*.py``), the ``rtml demo`` command and the system test, so all
three run exactly the same jobs. Job SQL lives beside the DAGs; placeholders ``{name}`` are filled here.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from airflow_rtml.chain import ChainDefinition, ChainPlan, Naming, Node, NodeInstance, plan_chain
from airflow_rtml.exceptions import ChainError, UnknownChainNode, UnknownChainParameter
from airflow_rtml.offline.archive import HOURLY_PARTITION_COMMIT, ArchiveTable

_KAFKA = (("kafka_partition", "int"), ("kafka_offset", "bigint"), ("kafka_ts_ms", "bigint"))
_SAMPLE = (("imp_id", "string"), ("user", "string"), ("item", "string"), ("bucket", "string"), ("ts_ms", "bigint"),
           ("label", "int"))
_COUNTS = (("imps_24h", "bigint"), ("clicks_24h", "bigint"), ("ctr_24h", "double"), ("imps_7d", "bigint"),
           ("clicks_7d", "bigint"), ("ctr_7d", "double"), ("version_ms", "bigint"))
#: Columns (name, Hive type) of the chain's hourly tables, partitioned by dt/hour of the event time. The archived
#: streams keep each record's Kafka partition, offset and timestamp: the live order, for a backfill to replay.
ARCHIVE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "impressions": (("line", "string"), ("ts_ms", "bigint"), *_KAFKA),
    "clicks": (("line", "string"), ("ts_ms", "bigint"), *_KAFKA),
    "samples": (*_SAMPLE, *_KAFKA),
    "training_samples": (*_SAMPLE, ("user_ctr", "double"), ("user_imps", "bigint"), ("user_version_ms", "bigint"),
                         ("item_ctr", "double"), ("item_imps", "bigint"), ("item_version_ms", "bigint"),
                         ("user_ctr_7d", "double"), ("user_offline_version_ms", "bigint"),
                         ("item_ctr_7d", "double"), ("item_offline_version_ms", "bigint")),
    "offline_user_features": (("user", "string"), *_COUNTS),
    "offline_item_features": (("item", "string"), *_COUNTS),
}
#: The tables the archive job writes (the sample-feature job writes training_samples, Spark the offline features).
ARCHIVED_BY_ARCHIVE_JOB = ("impressions", "clicks", "samples")
#: The key of the marker row each published offline version carries (no entity has it): a version with no rows
#: still moves the offline side's watermark, so the live join never waits for an hour that had no traffic.
VERSION_MARKER = "__version__"


#: The samples source the jobs reading the samples topic include (``{samples_in}``): part of their code.
SAMPLES_IN = Path("_samples_in.sql")
#: The jobs whose samples source emits a watermark per record (see ``Chain.sql``).
WATERMARK_PER_RECORD = ("features",)


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
    def archive_samples_delay_seconds(self) -> int:
        """Watermark delay of the archive's samples: the label join emits a clicked sample at once and an unclicked
        one after its attribution window, and while it catches up one input can run ahead of the other, so the
        samples topic is more out of order than ``samples_delay_seconds`` at times. A wider bound keeps such
        samples in their partition (the rest go to the archive-late topic, counted); it delays only the
        archive's commit of each hour."""
        return (self.samples_delay_seconds // 60 + 15) * 60  # whole minutes (a SQL INTERVAL ... MINUTE)

    @property
    def topics(self) -> dict[str, str]:
        names = ("impressions", "clicks", "samples", "dead_letter", "late", "user_features", "item_features",
                 "training_samples", "evaluation", "archive_late", "offline_user_features", "offline_item_features")
        return {n: f"{self.prefix}.{n.replace('_', '-')}" for n in names}

    @property
    def jobs(self) -> dict[str, str]:
        """Job key → Flink job name (its identity for adoption); in start order."""
        return {key: f"{self.job_prefix}-{key.replace('_', '-')}"
                for key in ("label_join", "features", "sample_features", "evaluation", "archive")}

    @property
    def hive_db(self) -> str:
        """The chain's Hive database (archive and offline features): its job prefix as a Hive identifier (a Jinja
        expression when the prefix is one, as in the DAG files)."""
        p = self.job_prefix.strip()
        if p.startswith("{{") and p.endswith("}}"):
            return f"{{{{ ({p[2:-2].strip()}) | replace('-', '_') | replace('.', '_') | lower }}}}"
        return p.replace("-", "_").replace(".", "_").lower()

    def archive_tables(self, warehouse: str | Path) -> dict[str, ArchiveTable]:
        """The chain's hourly Hive tables: the archived streams and the offline features (see ARCHIVE_COLUMNS)."""
        root = Path(warehouse) / f"{self.hive_db}.db"
        return {name: ArchiveTable(self.hive_db, name, str(root / name), cols) for name, cols in ARCHIVE_COLUMNS.items()}

    def sql(self, job: str, jobs_dir: str | Path, warehouse: str | Path = "/tmp/rtml-warehouse",
            plan: ChainPlan | None = None) -> str:
        """The job's SQL with every placeholder filled (``{<table>_path}``: where an archive table's files go).

        With ``plan`` (this chain's base plan, or an experiment cloned from it), the job of that plan's instance:
        its job name, the parameters of the plan's definition, the topics it reads (a shared writer's or a
        source's) and the topics and tables it writes (named after the plan). Only a node the plan owns has SQL of
        its own: a shared node runs once, under its owner's name.
        """
        chain, topics, job_name = self, self.topics, self.jobs.get(job)
        if plan is not None:
            chain, topics, job_name = self._instance(plan, job)
        values = {**asdict(chain), **{f"{k}_topic": v for k, v in topics.items()}, "job_name": job_name,
                  "samples_delay_seconds": chain.samples_delay_seconds,
                  "archive_samples_delay_seconds": chain.archive_samples_delay_seconds,
                  "archive_samples_delay_minutes": chain.archive_samples_delay_seconds // 60,
                  "hourly_partition_commit": HOURLY_PARTITION_COMMIT, "version_marker": VERSION_MARKER,
                  **{f"{k}_path": t.location for k, t in chain.archive_tables(warehouse).items()}}
        # Per-record watermarks where a backfill must reproduce the live late decisions (the feature job). Not in
        # the sample-feature join: with them, one demo run joined 1,381 of 18,060 samples with a stale offline
        # version. The cause: a version's first row moved the offline side's watermark past the hour before the
        # version's other rows arrived (periodic emission only made it rarer); now only its marker row does
        # (sample_features.sql). That job keeps Flink's periodic emission.
        values["samples_watermark_options"] = (",\n        'scan.watermark.emit.strategy' = 'on-event'"
                                               if job in WATERMARK_PER_RECORD else "")
        values["samples_in"] = (Path(jobs_dir) / "_samples_in.sql").read_text().format(**values)
        return (Path(jobs_dir) / f"{job}.sql").read_text().format(**values)


    def definition(self, jobs_dir: str | Path) -> ChainDefinition:
        """The demo chain as a :class:`~airflow_rtml.chain.ChainDefinition`: its nodes, what each reads and writes,
        and the parameters a clone may change (``rtml experiment clone demo exp --set features.feature_window_minutes=20``).
        Dataset and job names map to this chain's topics and jobs through :meth:`naming`; a test checks every node
        against the placeholders of its SQL file, so the two cannot drift apart."""
        jobs = Path(jobs_dir)
        late = {"lateness_seconds": self.lateness_seconds}
        return ChainDefinition(name="demo", root=jobs, sources=("impressions", "clicks"), nodes=[
            Node("label_join", "stream", ("impressions", "clicks"), ("samples", "dead_letter", "late"),
                 Path("label_join.sql"), {"attribution_minutes": self.attribution_minutes, **late},
                 "label-joins impressions with clicks into samples"),
            Node("features", "stream", ("samples",), ("user_features", "item_features"),
                 (Path("features.sql"), SAMPLES_IN), {"feature_window_minutes": self.feature_window_minutes},
                 "real-time user and item CTR features"),
            Node("evaluation", "stream", ("samples",), ("evaluation",), (Path("evaluation.sql"), SAMPLES_IN), {},
                 "CTR per bucket and event-time hour"),
            Node("archive", "stream", ("impressions", "clicks", "samples"),
                 ("impressions_archive", "clicks_archive", "samples_archive", "archive_late"), Path("archive.sql"),
                 late, "hourly Hive partitions of the streams"),
            Node("offline_features", "batch", ("samples_archive",), ("offline_user_features", "offline_item_features"),
                 Path("offline_features.py"), {}, "Spark: 24 h / 7 d counts per hour"),
            Node("sample_features", "stream",
                 ("samples", "user_features", "item_features", "offline_user_features", "offline_item_features"),
                 ("training_samples", "training_samples_archive"), (Path("sample_features.sql"), SAMPLES_IN), {},
                 "point-in-time join of samples with real-time and offline features"),
            Node("training", "train", ("training_samples_archive",), ("model",), "airflow_rtml.demo.training",
                 {"promotion_metric": "auc", "promotion_min_gain": 0.0, "promotion_lower_is_better": False},
                 # ^ the promotion rule (airflow_rtml.models.PromotionRule)
                 "one model version per closed hour"),
            Node("evaluation_report", "evaluate", ("evaluation",), ("ctr_report",), "airflow_rtml.demo.evaluation",
                 {}, "the hour's CTR per bucket"),
        ])

    def _instance(self, plan: ChainPlan, node: str) -> tuple[Chain, dict[str, str], str | None]:
        """This chain as ``plan`` runs node ``node``: its names and parameters, and the topics the node reads."""
        inst = plan.instances.get(node)
        if inst is None:
            raise UnknownChainNode(f"Chain {plan.name!r} has no node {node!r}. Its nodes: {list(plan.instances)}.")
        if inst.owner != plan.name:
            raise ChainError(f"Node {node!r} of chain {plan.name!r} is shared with {inst.owner!r}: it runs once, "
                             f"as {inst.job_name or 'a batch step'} of {inst.owner!r}, not as a job of its own.")
        settings = {f.name for f in fields(Chain)}
        own = plan.definition.node(node).params
        unknown = sorted(set(own) - settings)
        if unknown:
            raise UnknownChainParameter(f"Node {node!r}'s parameter(s) {unknown} are no setting of the demo chain's "
                                        f"jobs (settings: {sorted(settings)}).")
        # A job may depend on another node's setting (the samples' delay follows the label join's attribution and
        # lateness). The chain's settings are one set for all its jobs, so a setting two nodes declare must agree.
        declared: dict[str, dict[str, object]] = {}
        for n in plan.definition.nodes:
            for k, v in n.params.items():
                if k in settings:
                    declared.setdefault(k, {})[n.name] = v
        for k, by_node in declared.items():
            if len({json.dumps(v) for v in by_node.values()}) > 1:
                raise UnknownChainParameter(
                    f"Setting {k!r} is declared by nodes {sorted(by_node)} of chain {plan.name!r} with different "
                    f"values {by_node}: the demo chain's jobs share one value. To fix this, set it on all of them: "
                    + " ".join(f"--set {n}.{k}=VALUE" for n in sorted(by_node)))
        params = {k: next(iter(by_node.values())) for k, by_node in declared.items()}
        chain = replace(self, prefix=plan.naming.topic_prefix, job_prefix=plan.naming.job_prefix, **params)
        reads = {d: phys for d, phys in {**inst.inputs, **inst.outputs}.items() if d in chain.topics}
        return chain, {**chain.topics, **reads}, inst.job_name

    def naming(self) -> Naming:
        """Logical dataset and node names → this chain's topics and Flink job names."""
        return Naming(self.prefix, self.job_prefix)

    def plan(self, jobs_dir: str | Path) -> ChainPlan:
        """The demo chain planned under this chain's names: the base that experiments are cloned from."""
        return plan_chain(self.definition(jobs_dir), self.naming())

    def check_plan(self, plan: ChainPlan, jobs_dir: str | Path) -> None:
        """Render the SQL of every stream node ``plan`` owns: raises the :class:`~airflow_rtml.exceptions.ChainError`
        that would refuse it (e.g. a setting two nodes declare with different values), before anything starts."""
        for n in plan.owned:
            if plan.instances[n].kind.streaming:
                self.sql(n, jobs_dir, plan=plan)

    def node_topics(self, plan: ChainPlan) -> list[str]:
        """The Kafka topics the nodes ``plan`` owns write and read: a clone creates those that do not exist (its
        own, and an input nothing has written yet, so a job waits for data instead of failing on a missing topic)."""
        return sorted({phys for n in plan.owned for d, phys in {**plan.instances[n].inputs,
                                                                  **plan.instances[n].outputs}.items()
                       if d in self.topics})


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
#: The jobs that write Hive partitions (Parquet): they need the archive jars too.
WRITES_ARCHIVE = ("sample_features", "archive")


def ensure_topics(bootstrap: str, topics: list[str]) -> list[str]:
    """Create the Kafka topics of ``topics`` that do not exist (one partition each); return ``topics``. Idempotent."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(t, 1, 1) for t in topics if t not in existing]
    for future in (admin.create_topics(new).values() if new else []):
        try:
            future.result(timeout=30)
        except KafkaException as e:  # created meanwhile by another task: what we wanted
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return topics


def submit_operator(chain: Chain, plan: ChainPlan, instance: NodeInstance, jobs_dir: str | Path,
                    warehouse: str | Path):
    """The task that ensures ``instance`` (a stream node ``plan`` owns) runs: adopt-or-submit its SQL job by name,
    so a retry adopts the job instead of submitting a second one."""
    from airflow_rtml.operators.flink import FlinkSubmitJobOperator

    connector = os.environ.get("RTML_FLINK_KAFKA_CONNECTOR_JAR", "/opt/flink/connectors/flink-sql-connector-kafka.jar")
    archive_jars = [j for j in os.environ.get("RTML_FLINK_ARCHIVE_JARS", "").split(",") if j]
    return FlinkSubmitJobOperator(
        task_id=f"ensure_{instance.node}_job", job_name=instance.job_name,
        sql=chain.sql(instance.node, jobs_dir, warehouse, plan=plan),
        sql_jars=[connector, *(archive_jars if instance.node in WRITES_ARCHIVE else [])], flink_conf=JOB_CONF,
        deferrable=True, poll_interval=1,
    )
