"""The embedded local stack: a Flink session cluster, a Kafka broker (KRaft), a Hive metastore and Airflow.

Guarantees:

* ``up`` is idempotent: a service whose recorded process is alive is reused (and waited on until healthy),
  never started twice.
* Before anything starts, every port of every service to start is checked; a port held by another process
  raises :class:`PortInUseError` naming the port and the process, and nothing is started.
* If a service fails to become healthy, the services this ``up`` started are stopped again.
* ``down`` stops exactly the processes this stack started: each service runs in its own session with the
  marker ``RTML_STACK=<state folder>`` in its environment, which its children (Airflow's scheduler and
  task processes, Flink's Python workers) inherit; ``down`` finds processes by that marker, not by name.
* Once everything is healthy, a supervisor (:mod:`airflow_rtml.local.supervisor`) restarts any service that
  dies, with backoff, after stopping what it left in its session; ``status`` reports restarts and ``degraded``.
  Airflow runs as its four components (API server, scheduler, DAG processor, triggerer), each supervised.
* ``down`` stops the supervisor first, then Airflow, then the rest, each wave at once.
* Everything lives on 127.0.0.1; logs, PIDs and data live under the state folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime
from abc import ABC, abstractmethod
from base64 import urlsafe_b64encode
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from airflow_rtml.local.config import HOST, StackConfig, java_home, postgres_bin_dir
from airflow_rtml.local.install import install_all

Progress = Callable[[str], None]
MARKER = "RTML_STACK"


class StackError(RuntimeError):
    """Base class of the local stack's errors."""


class PortInUseError(StackError):
    """A port the stack needs is held by a process the stack did not start."""


class ServiceStartError(StackError):
    """A service exited or did not become healthy before its deadline; the message holds its log tail."""


@dataclass(frozen=True)
class ServiceStatus:
    """What ``rtml local status`` reports for one service."""

    name: str
    running: bool
    healthy: bool
    detail: str
    pid: int | None
    rss_bytes: int
    #: Restarts by the stack's supervisor, and whether it is restarting the service now (or will).
    restarts: int = 0
    restarting: bool = False


# --------------------------------------------------------------------------------------------------
# Services
# --------------------------------------------------------------------------------------------------


class Service(ABC):
    """One long-running process of the stack."""

    name: str
    #: (port, what it is) pairs that must be free before this service starts.
    ports: tuple[tuple[int, str], ...] = ()
    startup_timeout: float = 120.0
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 30.0

    def __init__(self, cfg: StackConfig):
        self.cfg = cfg

    @property
    def log_file(self) -> Path:
        return self.cfg.log_dir / f"{self.name}.log"

    def prepare(self, progress: Progress) -> None:  # noqa: B027 - optional hook
        """Write configuration, format storage: anything needed before the first start."""

    @abstractmethod
    def command(self) -> list[str]:
        """The foreground command to run."""

    def env(self) -> dict[str, str]:
        return {}

    @abstractmethod
    def health(self) -> tuple[bool, str]:
        """Return (healthy, detail); must be quick and must not raise."""

    def urls(self) -> list[str]:
        return []


def _get_json(url: str, timeout: float = 2.0) -> dict | list | None:
    try:
        resp = httpx.get(url, timeout=timeout)
        if resp.status_code != 200:
            return None
        return resp.json()
    except (httpx.HTTPError, ValueError):
        return None


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _flink_conf_yaml(cfg: StackConfig) -> str:
    """The distribution's config.yaml (it carries the JVM --add-opens Flink needs on Java 17) plus ours."""
    import yaml

    shipped = yaml.safe_load((cfg.flink_home / "conf" / "config.yaml").read_text()) or {}
    ours = {
        "jobmanager": {
            "bind-host": HOST,
            "rpc": {"address": HOST, "port": cfg.ports.flink_rpc},
            "memory": {"process": {"size": "1024m"}},
            "execution": {"failover-strategy": "region"},
        },
        "taskmanager": {
            "bind-host": HOST,
            "host": HOST,
            "numberOfTaskSlots": 8,
            "memory": {"process": {"size": "2048m"}},
        },
        "parallelism": {"default": 1},
        # Results of async operations (savepoints) are kept 2 h instead of 5 min, so a stop-with-savepoint task
        # retried after Airflow's heartbeat timeout and retry delay still finds its own operation.
        "rest": {"address": HOST, "bind-address": HOST, "port": cfg.ports.flink_rest,
                 "async": {"store-duration": "2h"}},
        "blob": {"server": {"port": "0"}},
        "metrics": {"fetcher": {"update-interval": 1000}},
        "execution": {
            "checkpointing": {
                "dir": cfg.flink_checkpoints.as_uri(),
                "savepoint-dir": cfg.flink_savepoints.as_uri(),
            }
        },
        "python": {
            "executable": str(cfg.flink_python),
            "client": {"executable": str(cfg.flink_python)},
        },
        "web": {"cancel": {"enable": True}, "submit": {"enable": True}},
    }
    # Flink 2.x reads standard YAML; JSON is valid YAML, so we write JSON: no quoting surprises.
    return "# Generated by `rtml local up`; edit airflow_rtml/local/stack.py instead.\n" + json.dumps(
        _deep_merge(shipped, ours), indent=2
    )


class _FlinkProcess(Service):
    role: str  # "jobmanager" | "taskmanager"

    def prepare(self, progress: Progress) -> None:
        # Every Flink process writes the same conf dir (idempotent), so any of them can start alone.
        conf_dir = self.cfg.flink_conf_dir
        conf_dir.mkdir(parents=True, exist_ok=True)
        for src in (self.cfg.flink_home / "conf").iterdir():
            if src.is_file() and src.name != "config.yaml":
                (conf_dir / src.name).write_bytes(src.read_bytes())
        (conf_dir / "config.yaml").write_text(_flink_conf_yaml(self.cfg))
        for d in (self.cfg.flink_checkpoints, self.cfg.flink_savepoints, self.cfg.log_dir / "flink"):
            d.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return ["bash", str(self.cfg.flink_home / "bin" / f"{self.role}.sh"), "start-foreground"]

    def env(self) -> dict[str, str]:
        return {
            "JAVA_HOME": java_home(),
            "FLINK_CONF_DIR": str(self.cfg.flink_conf_dir),
            "FLINK_LOG_DIR": str(self.cfg.log_dir / "flink"),
            "FLINK_PID_DIR": str(self.cfg.run_dir),
        }


def flink_cli(cfg: StackConfig) -> tuple[list[str], dict[str, str]]:
    """The ``flink`` CLI of the local cluster's distribution and the environment it needs (conf dir, Java)."""
    env = dict(os.environ, JAVA_HOME=java_home(), FLINK_CONF_DIR=str(cfg.flink_conf_dir),
               FLINK_LOG_DIR=str(cfg.log_dir / "flink"))
    return [str(cfg.flink_home / "bin" / "flink")], env


class FlinkJobManager(_FlinkProcess):
    """Flink session-cluster JobManager (REST + web UI on 127.0.0.1:8081)."""

    name = "flink-jobmanager"
    role = "jobmanager"

    def __init__(self, cfg: StackConfig):
        super().__init__(cfg)
        self.ports = ((cfg.ports.flink_rest, "Flink REST"), (cfg.ports.flink_rpc, "Flink JobManager RPC"))

    def health(self) -> tuple[bool, str]:
        overview = _get_json(f"{self.cfg.flink_rest_url}/overview")
        if not isinstance(overview, dict):
            return False, "REST /overview not answering yet"
        return True, f"Flink {overview.get('flink-version')}, jobs running: {overview.get('jobs-running', 0)}"

    def urls(self) -> list[str]:
        return [f"Flink web UI / REST: {self.cfg.flink_rest_url}"]


class FlinkTaskManager(_FlinkProcess):
    """Flink TaskManager with 8 slots, registered with the local JobManager. Its Prometheus reporter (the plugin
    the distribution ships) serves every task's metrics on 127.0.0.1:9249, the watermark source of connection ``flink_reporter``."""

    name = "flink-taskmanager"
    role = "taskmanager"

    def __init__(self, cfg: StackConfig):
        super().__init__(cfg)
        self.ports = ((cfg.ports.flink_tm_metrics, "Flink TaskManager Prometheus reporter"),)

    def command(self) -> list[str]:
        # Only the TaskManager reports (dynamic properties): a shared config.yaml would make the JobManager take
        # the port first.
        return super().command() + [
            "-Dmetrics.reporter.prom.factory.class=org.apache.flink.metrics.prometheus.PrometheusReporterFactory",
            f"-Dmetrics.reporter.prom.host={HOST}",
            f"-Dmetrics.reporter.prom.port={self.cfg.ports.flink_tm_metrics}",
        ]

    def urls(self) -> list[str]:
        return [f"Flink TaskManager metrics (Prometheus): {self.cfg.flink_tm_metrics_url}"]

    def health(self) -> tuple[bool, str]:
        overview = _get_json(f"{self.cfg.flink_rest_url}/overview")
        if not isinstance(overview, dict):
            return False, "JobManager not answering"
        tms = overview.get("taskmanagers", 0)
        if tms < 1:
            return False, "no TaskManager registered yet"
        return True, f"{tms} TaskManager(s), {overview.get('slots-available')}/{overview.get('slots-total')} slots free"


class FlinkSqlGateway(_FlinkProcess):
    """Flink SQL Gateway (REST endpoint on 127.0.0.1:8083), submitting to the local session cluster."""

    name = "flink-sql-gateway"

    def __init__(self, cfg: StackConfig):
        super().__init__(cfg)
        self.ports = ((cfg.ports.flink_sql_gateway, "Flink SQL Gateway"),)

    def env(self) -> dict[str, str]:
        return dict(super().env(), FLINK_ENV_JAVA_OPTS_SQL_GATEWAY="-Xmx384m")

    def command(self) -> list[str]:
        return [
            "bash", str(self.cfg.flink_home / "bin" / "sql-gateway.sh"), "start-foreground",
            f"-Dsql-gateway.endpoint.rest.address={HOST}",
            f"-Dsql-gateway.endpoint.rest.bind-address={HOST}",
            f"-Dsql-gateway.endpoint.rest.port={self.cfg.ports.flink_sql_gateway}",
        ]

    def health(self) -> tuple[bool, str]:
        info = _get_json(f"{self.cfg.flink_sql_gateway_url}/v2/info")
        if not isinstance(info, dict):
            return False, "REST /v2/info not answering yet"
        return True, f"{info.get('productName')} {info.get('version')} SQL Gateway"

    def urls(self) -> list[str]:
        return [f"Flink SQL Gateway: {self.cfg.flink_sql_gateway_url}"]


def storage_format_args(cluster_id: str, properties_file: Path) -> list[str]:
    """Arguments of Kafka's ``StorageTool`` that format KRaft storage with ``cluster_id``.

    A random URL-safe base64 id starts with ``-`` one time in 64; given as a separate argument
    (``-t ID``) the tool's parser takes it for an option and the start fails, so the id is joined
    to its option with ``=``.
    """
    return ["format", f"--cluster-id={cluster_id}", f"--config={properties_file}"]


class KafkaBroker(Service):
    """Single-node Kafka 4.x in KRaft mode (broker + controller) on 127.0.0.1:9092."""

    name = "kafka"

    def __init__(self, cfg: StackConfig):
        super().__init__(cfg)
        self.ports = ((cfg.ports.kafka, "Kafka broker"), (cfg.ports.kafka_controller, "Kafka KRaft controller"))

    @property
    def properties_file(self) -> Path:
        return self.cfg.kafka_dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.cfg.kafka_dir / "data"

    def _java(self) -> list[str]:
        return [str(Path(java_home(), "bin", "java")), "-cp", f"{self.cfg.kafka_libs}/*"]

    def prepare(self, progress: Progress) -> None:
        p = self.cfg.ports
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{p.kafka_controller}",
            "listeners": f"PLAINTEXT://{HOST}:{p.kafka},CONTROLLER://{HOST}:{p.kafka_controller}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{p.kafka}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        self.cfg.kafka_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(
            "# Generated by `rtml local up`.\n" + "".join(f"{k}={v}\n" for k, v in props.items())
        )
        (self.cfg.kafka_dir / "log4j2.properties").write_text(
            "rootLogger.level = INFO\nrootLogger.appenderRef.stdout.ref = STDOUT\n"
            "appender.stdout.type = Console\nappender.stdout.name = STDOUT\n"
            "appender.stdout.layout.type = PatternLayout\n"
            "appender.stdout.layout.pattern = [%d] %p %m (%c)%n\n"
            "logger.kafka.name = kafka\nlogger.kafka.level = INFO\n"
            "logger.apache.name = org.apache.kafka\nlogger.apache.level = WARN\n"
        )
        if not (self.data_dir / "meta.properties").exists():
            cluster_id = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            progress(f"{self.name}: formatting KRaft storage (cluster id {cluster_id})")
            proc = subprocess.run(
                [*self._java(), "kafka.tools.StorageTool", *storage_format_args(cluster_id, self.properties_file)],
                capture_output=True, text=True, stdin=subprocess.DEVNULL,
            )
            if proc.returncode != 0:
                raise ServiceStartError(
                    f"{self.name}: formatting storage in {self.data_dir} failed:\n{proc.stdout}{proc.stderr}"
                )

    def command(self) -> list[str]:
        return [
            *self._java()[:1], "-Xms256m", "-Xmx512m", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.cfg.kafka_dir / 'log4j2.properties'}",
            *self._java()[1:], "kafka.Kafka", str(self.properties_file),
        ]

    def health(self) -> tuple[bool, str]:
        # Import here: confluent-kafka loads librdkafka, which `rtml --help` does not need.
        from confluent_kafka.admin import AdminClient

        try:
            admin = AdminClient(
                {"bootstrap.servers": self.cfg.kafka_bootstrap, "socket.timeout.ms": 2000, "log_level": 0}
            )
            md = admin.list_topics(timeout=2)
        except Exception as exc:  # noqa: BLE001 - any client error means "not healthy yet"
            return False, f"metadata request failed: {exc}"
        if not md.brokers:
            return False, "no broker in metadata"
        return True, f"{len(md.brokers)} broker(s), {len(md.topics)} topic(s)"

    def urls(self) -> list[str]:
        return [f"Kafka bootstrap servers: {self.cfg.kafka_bootstrap}"]


class HiveMetastore(Service):
    """Thrift Hive metastore (Hive 2.3, the classes pyspark ships) on 127.0.0.1:9083, backed by embedded Derby.

    Started through a small launcher (``HmsLoopback.java``) because Hive 2.3 always binds the wildcard address.
    Its health check is a Thrift call (``get_all_databases``), the same client Airflow's Hive provider uses.
    """

    name = "hive-metastore"
    startup_timeout = 120.0

    def __init__(self, cfg: StackConfig):
        super().__init__(cfg)
        self.ports = ((cfg.ports.hive_metastore, "Hive metastore (Thrift)"),)

    @property
    def conf_dir(self) -> Path:
        return self.cfg.hive_dir / "conf"

    def prepare(self, progress: Progress) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.warehouse_dir.mkdir(parents=True, exist_ok=True)
        props = {
            "javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={self.cfg.hive_dir / 'metastore_db'};create=true",
            "javax.jdo.option.ConnectionDriverName": "org.apache.derby.jdbc.EmbeddedDriver",
            "datanucleus.schema.autoCreateAll": "true",
            "hive.metastore.schema.verification": "false",
            "hive.metastore.warehouse.dir": self.cfg.warehouse_dir.as_uri(),
            "hive.metastore.port": str(self.cfg.ports.hive_metastore),
            # Hive 2.3 logs asynchronously by default, and pyspark ships no LMAX disruptor jar.
            "hive.async.log.enabled": "false",
            "hive.metastore.server.min.threads": "4",
            "hive.metastore.server.max.threads": "100",
            "datanucleus.connectionPoolingType": "HikariCP",
        }
        (self.conf_dir / "hive-site.xml").write_text(
            '<?xml version="1.0"?>\n<!-- Generated by `rtml local up`. -->\n<configuration>\n'
            + "".join(f"  <property><name>{k}</name><value>{v}</value></property>\n" for k, v in props.items())
            + "</configuration>\n"
        )
        (self.conf_dir / "hive-log4j2.properties").write_text(
            "status = warn\nappender.console.type = Console\nappender.console.name = console\n"
            "appender.console.layout.type = PatternLayout\n"
            "appender.console.layout.pattern = %d{ISO8601} %-5p [%t] %c{1}: %m%n\n"
            "rootLogger.level = info\nrootLogger.appenderRef.console.ref = console\n"
            "logger.dn.name = DataNucleus\nlogger.dn.level = warn\n"
            "logger.dn2.name = org.datanucleus\nlogger.dn2.level = warn\n"
        )

    def command(self) -> list[str]:
        cp = os.pathsep.join([str(self.conf_dir), f"{self.cfg.spark_home / 'jars'}/*", str(self.cfg.hive_dir / "classes")])
        return [
            str(Path(java_home(), "bin", "java")), "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Djava.net.preferIPv4Stack=true",
            f"-Dlog4j2.configurationFile={(self.conf_dir / 'hive-log4j2.properties').as_uri()}",
            f"-Dderby.stream.error.file={self.cfg.log_dir / 'derby.log'}",
            "-cp", cp, "HmsLoopback", HOST, str(self.cfg.ports.hive_metastore),
        ]

    def health(self) -> tuple[bool, str]:
        try:
            from airflow_rtml.offline.metastore import metastore_client

            with metastore_client(HOST, self.cfg.ports.hive_metastore, timeout_s=2) as client:
                dbs = client.get_all_databases()
        except Exception as exc:  # noqa: BLE001 - any client error means "not healthy yet"
            return False, f"Thrift get_all_databases failed: {type(exc).__name__}"
        return True, f"{len(dbs)} database(s)"

    def urls(self) -> list[str]:
        return [f"Hive metastore (Thrift): {self.cfg.hive_metastore_uri}; warehouse {self.cfg.warehouse_dir}"]


class PostgresServer(Service):
    """PostgreSQL (Debian's package) as Airflow's metadata database, on 127.0.0.1:5433 (``rtml local up --db
    postgres``).

    Its data folder is made once with ``initdb`` (trust authentication on loopback only, user ``airflow``). As root
    (PostgreSQL refuses to run as root) the server runs as the ``postgres`` system user, its data in a folder that
    user can reach (``/var/tmp/rtml-postgres-<id>``, linked from ``.rtml/postgres``). SIGINT is PostgreSQL's fast
    shutdown: open sessions are ended, nothing committed is lost.
    """

    name = "postgres"
    startup_timeout = 60.0
    stop_signal = signal.SIGINT
    user = "airflow"
    database = "airflow"

    def __init__(self, cfg: StackConfig):
        super().__init__(cfg)
        self.ports = ((cfg.ports.postgres, "PostgreSQL (Airflow metadata DB)"),)

    @property
    def run_as(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    @property
    def data_dir(self) -> Path:
        """The data folder by its real path: as root the link's own folder may be one the ``postgres`` user cannot
        enter (a 0700 checkout under /tmp), so the server must be given the folder the link points to."""
        return Path(os.path.realpath(self.cfg.postgres_dir)) / "data"

    def _bin(self, name: str) -> str:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise ServiceStartError(
                "postgres: no PostgreSQL server binaries found (pg_config, /usr/lib/postgresql/*/bin). To fix this, "
                "install Debian's package (apt-get install -y postgresql), or run the stack on SQLite (--db sqlite).")
        return str(bin_dir / name)

    def _as_owner(self, argv: list[str]) -> list[str]:
        if self.run_as is None:
            return argv
        return ["setpriv", f"--reuid={self.run_as}", f"--regid={self.run_as}", "--init-groups", "--", *argv]

    def prepare(self, progress: Progress) -> None:
        if self.run_as is not None:
            self._link_data_folder()
        else:
            self.cfg.postgres_dir.mkdir(parents=True, exist_ok=True)
        if (self.data_dir / "PG_VERSION").exists():
            return
        progress(f"{self.name}: initdb {self.data_dir} (first time)")
        done = subprocess.run(
            self._as_owner([self._bin("initdb"), "-D", str(self.data_dir), "-U", self.user, "--auth=trust",
                            "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"]),
            capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd="/")
        if done.returncode != 0:
            raise ServiceStartError(f"{self.name}: initdb failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")

    def _link_data_folder(self) -> None:
        """As root: ``.rtml/postgres`` links to a folder of the ``postgres`` user under /var/tmp (made once; a
        dangling link, e.g. after /var/tmp was cleaned, is made again). A path there that is not a plain folder of
        root or that user (a planted link) is refused, never chowned."""
        import hashlib
        import pwd
        import stat

        link = self.cfg.postgres_dir
        if link.exists():
            return  # a live link, or a folder of an earlier non-root stack
        if link.is_symlink():
            link.unlink()
        owner = pwd.getpwnam(self.run_as)
        real = Path("/var/tmp") / f"rtml-postgres-{hashlib.sha1(str(self.cfg.home).encode()).hexdigest()[:12]}"
        try:
            real.mkdir(mode=0o700)
        except FileExistsError:
            st = os.lstat(real)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, owner.pw_uid):
                raise ServiceStartError(
                    f"{self.name}: {real} exists but is not a folder of root or {self.run_as}; refusing to use it. "
                    f"To fix this, remove it (or set RTML_HOME to another state folder).") from None
        os.chown(real, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(real, target_is_directory=True)

    def command(self) -> list[str]:
        # TCP on loopback only: no Unix socket, whose path (the data folder's) may exceed the 107-byte limit.
        return self._as_owner([
            self._bin("postgres"), "-D", str(self.data_dir), "-c", f"listen_addresses={HOST}",
            "-c", f"port={self.cfg.ports.postgres}", "-c", "unix_socket_directories=",
            "-c", "shared_buffers=32MB", "-c", "max_connections=100",
        ])

    def _connect(self, dbname: str):
        import psycopg2

        return psycopg2.connect(host=HOST, port=self.cfg.ports.postgres, user=self.user, dbname=dbname,
                                connect_timeout=2)

    def health(self) -> tuple[bool, str]:
        try:
            with self._connect("postgres") as conn, conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                exists = cur.fetchone() is not None
        except Exception as exc:  # noqa: BLE001 - any client error means "not healthy yet"
            return False, f"connect failed: {type(exc).__name__}: {str(exc).strip()[:120]}"
        return True, f"accepting connections (database {self.database} {'ready' if exists else 'not created yet'})"

    def ensure_database(self) -> None:
        """Create Airflow's database once (``airflow db migrate`` then fills it); idempotent."""
        conn = self._connect("postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            conn.close()

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{self.user}@{HOST}:{self.cfg.ports.postgres}/{self.database}"

    def urls(self) -> list[str]:
        return [f"Airflow metadata DB (PostgreSQL): {self.sqlalchemy_url}"]


def airflow_health(cfg: StackConfig) -> dict[str, dict] | None:
    """``GET /api/v2/monitor/health`` of the stack's Airflow: component -> its part of the answer (``status``,
    ``latest_<component>_heartbeat``), or None if no answer."""
    body = _get_json(f"{cfg.airflow_url}/api/v2/monitor/health")
    if not isinstance(body, dict):
        return None
    return {k: (v or {}) for k, v in body.items() if isinstance(v, dict) or v is None}


def _epoch(iso: object) -> float | None:
    try:
        return datetime.fromisoformat(str(iso)).timestamp()
    except ValueError:
        return None


class AirflowComponent(Service):
    """One of Airflow's components (``airflow api-server | scheduler | dag-processor | triggerer``), each its own
    supervised process on the stack's SQLite metadata DB, as a production deployment runs them (``airflow
    standalone`` runs all four as children of one process and restarts none of them).

    SIGTERM is each component's own clean shutdown; its children (log servers, task processes) are in its session
    and are stopped with it.
    """

    startup_timeout = 240.0
    stop_timeout = 20.0
    #: The component's key in Airflow's health answer (None: the API server, healthy when it answers).
    health_key: str | None = None

    def __init__(self, cfg: StackConfig, component: str, health_key: str | None = None,
                 ports: tuple[tuple[int, str], ...] = ()):
        super().__init__(cfg)
        self.component = component
        self.name = f"airflow-{component}"
        self.health_key = health_key
        self.ports = ports

    def prepare(self, progress: Progress) -> None:
        self.cfg.airflow_home.mkdir(parents=True, exist_ok=True)
        self.cfg.dags_folder.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [str(Path(sys.executable).with_name("airflow")), self.component]

    def env(self) -> dict[str, str]:
        return airflow_env(self.cfg)

    def health(self) -> tuple[bool, str]:
        parts = airflow_health(self.cfg)
        if parts is None:
            return False, "API server not answering yet"
        if self.health_key is None:
            db = parts.get("metadatabase", {}).get("status")
            return (db == "healthy"), f"API answering, metadatabase {db}"
        part = parts.get(self.health_key, {})
        status = part.get("status")
        if status != "healthy":
            return False, f"{self.health_key} {status} (its heartbeat, per the API)"
        # A component killed a moment ago is still "healthy" by its last heartbeat: count only a heartbeat of the
        # process running now (beat after it started).
        beat = _epoch(part.get(f"latest_{self.health_key}_heartbeat"))
        started = self._started_at()
        if beat is not None and started is not None and beat < started:
            return False, f"{self.health_key} started {time.time() - started:.0f}s ago, no heartbeat of it yet"
        return True, f"{self.health_key} healthy (heartbeat {time.time() - beat:.0f}s ago)" if beat else \
            f"{self.health_key} healthy"

    def _started_at(self) -> float | None:
        """Wall-clock start of this component's recorded process (its record in the stack's run folder)."""
        try:
            return float(json.loads((self.cfg.run_dir / f"{self.name}.json").read_text())["create_time"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def urls(self) -> list[str]:
        if self.health_key is None:
            return [f"Airflow UI / API: {self.cfg.airflow_url} (local stack: no login, every user is admin)"]
        return []


def airflow_components(cfg: StackConfig) -> list[AirflowComponent]:
    """Airflow as four supervised processes: the API server first (the others' health is read through it)."""
    p = cfg.ports
    return [
        AirflowComponent(cfg, "api-server", None, ((p.airflow_api, "Airflow API server"),)),
        AirflowComponent(cfg, "scheduler", "scheduler", ((p.airflow_worker_logs, "Airflow worker log server"),)),
        AirflowComponent(cfg, "dag-processor", "dag_processor"),
        AirflowComponent(cfg, "triggerer", "triggerer", ((p.airflow_triggerer_logs, "Airflow triggerer log server"),)),
    ]


def migrate_airflow_db(cfg: StackConfig, progress: Progress) -> None:
    """``airflow db migrate`` before the components start (what ``airflow standalone`` did first); idempotent."""
    cfg.airflow_home.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    env = {**os.environ, **airflow_env(cfg), MARKER: str(cfg.home)}
    done = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=str(cfg.home))
    if done.returncode != 0:
        tail = "\n".join("    " + line for line in (done.stdout + done.stderr).splitlines()[-25:])
        raise ServiceStartError(f"`airflow db migrate` failed (exit {done.returncode}):\n{tail}")
    progress(f"airflow: metadata DB ready after {time.monotonic() - t0:.1f}s")


class StackSupervisor(Service):
    """The stack's supervisor (:mod:`airflow_rtml.local.supervisor`): restarts a service that dies, with
    backoff, after stopping what the dead one left behind; ``status`` reads its record of restarts."""

    name = "supervisor"
    startup_timeout = 30.0
    stop_timeout = 10.0

    #: Names of the services it watches (set by ``LocalStack``: the services of the stack that starts it).
    watch: tuple[str, ...] = ()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "airflow_rtml.local.supervisor", *self.watch]

    def env(self) -> dict[str, str]:
        return {"RTML_HOME": str(self.cfg.home), "RTML_PROJECT_DIR": str(self.cfg.project_dir),
                "RTML_DAGS_FOLDER": str(self.cfg.dags_folder)}

    @property
    def state_file(self) -> Path:
        return self.cfg.run_dir / "supervisor.state"

    def state(self) -> dict:
        """The supervisor's last written state ({} if none or unreadable)."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def health(self) -> tuple[bool, str]:
        state = self.state()
        age = time.time() - float(state.get("heartbeat", 0) or 0)
        if age > 10:
            return False, "no heartbeat yet" if not state else f"last heartbeat {age:.0f}s ago"
        restarts = sum(int(s.get("restarts", 0)) for s in state.get("services", {}).values())
        return True, f"watching {len(state.get('services', {}))} services, {restarts} restart(s) so far"


def airflow_env(cfg: StackConfig) -> dict[str, str]:
    """Environment under which Airflow (and the ``airflow`` CLI) sees the local stack's Airflow.

    The settings travel as ``AIRFLOW__*`` variables so they cannot go stale in a generated airflow.cfg;
    ``rtml local env`` prints them for a shell.
    """
    p = cfg.ports
    bin_dir = str(Path(sys.executable).parent)
    return {
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "AIRFLOW_HOME": str(cfg.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(cfg.dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # Sized for 2 cores: a handful of concurrent task processes, deferrable waits cost no slot.
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "8",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{HOST}:{p.airflow_api}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (PostgresServer(cfg).sqlalchemy_url if cfg.airflow_db == "postgres"
                                                else f"sqlite:///{cfg.airflow_home / 'airflow.db'}"),
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(p.airflow_api),
        "AIRFLOW__API__BASE_URL": cfg.airflow_url,
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(p.airflow_worker_logs),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(p.airflow_triggerer_logs),
        # New DAG files show up within seconds instead of the default 5 minutes.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        # Connections of the local stack (Flink REST, Kafka) as URIs, so DAGs run unchanged elsewhere.
        "AIRFLOW_CONN_FLINK_DEFAULT": f"flink-rest://{HOST}:{p.flink_rest}",
        "AIRFLOW_CONN_FLINK_SQL_GATEWAY_DEFAULT": f"flink-sql-gateway://{HOST}:{p.flink_sql_gateway}",
        # The same cluster, watermarks read from the TaskManager's Prometheus reporter (one scrape for all jobs).
        "AIRFLOW_CONN_FLINK_REPORTER": f"flink-rest://{HOST}:{p.flink_rest}?metrics_reporter_port={p.flink_tm_metrics}",
        "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps(
            {"conn_type": "kafka", "extra": {"bootstrap.servers": cfg.kafka_bootstrap}}
        ),
        # The Hive metastore, as the Hive provider's sensors and hooks use it, and Spark (spark-submit from the
        # stack's Spark venv: the Spark provider looks the binary up on PATH, see airflow_rtml.offline.spark).
        "AIRFLOW_CONN_METASTORE_DEFAULT": f"hive-metastore://{HOST}:{p.hive_metastore}",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[2]"}),
        "RTML_SPARK_HOME": str(cfg.spark_home),
        "RTML_SPARK_PYTHON": str(cfg.spark_python),
        "RTML_WAREHOUSE": str(cfg.warehouse_dir),
        "RTML_HIVE_METASTORE_URI": cfg.hive_metastore_uri,
        "RTML_FLINK_ARCHIVE_JARS": ",".join(str(j) for j in cfg.archive_jars),
        "RTML_FLINK_KAFKA_CONNECTOR_JAR": str(cfg.kafka_connector_jar),
        "RTML_FLINK_PYTHON_JAR": str(cfg.flink_python_jar),
        "RTML_DEMO_DIR": str(cfg.home / "demo"),
        # The experiment registry `rtml experiment` writes and dags/rtml_experiments.py reads.
        "RTML_EXPERIMENTS": str(cfg.home / "experiments.json"),
    }


# --------------------------------------------------------------------------------------------------
# Supervision
# --------------------------------------------------------------------------------------------------


def _describe(proc: psutil.Process) -> str:
    try:
        cmd = " ".join(proc.cmdline())[:160]
    except (psutil.Error, OSError):
        cmd = "?"
    try:
        name = proc.name()
    except psutil.Error:
        name = "?"
    return f"pid {proc.pid} ({name}: {cmd})"


def listening_pid(port: int) -> int | None | bool:
    """PID listening on ``port`` (any address), None if the port is free, True if held by an unknown process."""
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return conn.pid if conn.pid else True
    # Not listening, but maybe still not bindable (e.g. another namespace or a stray bound socket).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return None


class LocalStack:
    """Start, check and stop the embedded stack. Thread-unsafe; one ``rtml`` command at a time."""

    def __init__(self, cfg: StackConfig | None = None, progress: Progress | None = None):
        self.cfg = cfg or StackConfig.from_env()
        self.progress: Progress = progress or (lambda msg: None)
        self.services: list[Service] = [
            *([PostgresServer(self.cfg)] if self.cfg.airflow_db == "postgres" else []),
            FlinkJobManager(self.cfg),
            FlinkTaskManager(self.cfg),
            FlinkSqlGateway(self.cfg),
            KafkaBroker(self.cfg),
            HiveMetastore(self.cfg),
            *airflow_components(self.cfg),
            StackSupervisor(self.cfg),
        ]

    def service(self, name: str) -> Service:
        """The service called ``name`` (``"airflow-triggerer"``, ``"kafka"`` …); KeyError naming the others."""
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(f"no service {name!r} in this stack; its services: {', '.join(s.name for s in self.services)}")

    # --- process records ---
    def _pidfile(self, svc: Service) -> Path:
        return self.cfg.run_dir / f"{svc.name}.json"

    def process_of(self, svc: Service) -> psutil.Process | None:
        """The live process recorded for ``svc``, or None (a stale record is removed)."""
        path = self._pidfile(svc)
        try:
            rec = json.loads(path.read_text())
            proc = psutil.Process(rec["pid"])
            if _same_process(proc, rec) and proc.status() != psutil.STATUS_ZOMBIE:
                return proc
        except FileNotFoundError:
            return None
        except (psutil.NoSuchProcess, ValueError, KeyError, TypeError):
            pass  # the process is gone, or the record is not one: stale
        except (psutil.Error, OSError) as exc:
            # Not an answer about the service (e.g. EMFILE: this process ran out of file descriptors). Deleting the
            # record here would orphan a live service, and the next `up` would call it a leftover: fail loudly.
            raise StackError(f"cannot check {svc.name}'s process record {path}: {type(exc).__name__}: {exc}") from exc
        path.unlink(missing_ok=True)
        return None

    def stack_processes(self) -> list[psutil.Process]:
        """Every live process carrying this stack's marker, and their descendants (some Airflow children, such
        as a triggerer's log server, start with a cleaned environment)."""
        home = str(self.cfg.home)
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter():
            try:
                if proc.pid != os.getpid() and proc.environ().get(MARKER) == home:
                    found[proc.pid] = proc
                    found.update((c.pid, c) for c in proc.children(recursive=True))
            except (psutil.Error, OSError):
                continue
        found.pop(os.getpid(), None)
        return list(found.values())

    # --- up ---
    def up(self, install: bool = True) -> list[Service]:
        """Bring every service up (reusing running ones); return the services this call started.

        The supervisor starts last, once the others are healthy. While it runs, a service that is down is being
        restarted by it: ``up`` waits for that instead of starting a second copy."""
        if install:
            install_all(self.cfg, self.progress)
        for d in (self.cfg.run_dir, self.cfg.log_dir):
            d.mkdir(parents=True, exist_ok=True)

        supervisor = next((s for s in self.services if isinstance(s, StackSupervisor)), None)
        supervised = supervisor is not None and self.process_of(supervisor) is not None
        to_start = []
        for svc in self.services:
            proc = self.process_of(svc)
            if proc is not None:
                self.progress(f"{svc.name}: already up (pid {proc.pid}), reusing it")
            elif supervised:
                self.progress(f"{svc.name}: down; the supervisor is starting it again (log {svc.log_file})")
            else:
                to_start.append(svc)
        self._check_ports(to_start)

        started: list[Service] = []
        try:
            database = next((s for s in self.services if isinstance(s, PostgresServer)), None)
            if database in to_start:  # Airflow's metadata DB first: `airflow db migrate` needs it
                database.prepare(self.progress)
                popen = self._spawn(database)
                started.append(database)
                self.progress(f"{database.name}: started (pid {popen.pid}, log {database.log_file})")
                self._wait_healthy(database)
            if any(isinstance(s, AirflowComponent) for s in to_start):
                if database is not None:
                    database.ensure_database()
                migrate_airflow_db(self.cfg, self.progress)
            for svc in to_start:
                if svc is supervisor or svc is database:
                    continue
                svc.prepare(self.progress)
                popen = self._spawn(svc)
                started.append(svc)
                self.progress(f"{svc.name}: started (pid {popen.pid}, log {svc.log_file})")
            for svc in self.services:
                if svc is not supervisor:
                    self._wait_healthy(svc)
            if supervisor in to_start:
                supervisor.watch = tuple(s.name for s in self.services if s is not supervisor)
                popen = self._spawn(supervisor)
                started.append(supervisor)
                self.progress(f"{supervisor.name}: started (pid {popen.pid}, log {supervisor.log_file})")
            if supervisor is not None:
                self._wait_healthy(supervisor)
        except BaseException:
            if started:
                self.progress("start-up failed: stopping what this `up` started")
                self._stop_services(started)
            raise
        return started

    def _check_ports(self, services: Iterable[Service]) -> None:
        ours = {p.pid for p in self.stack_processes()}
        problems = []
        for svc in services:
            for port, what in svc.ports:
                holder = listening_pid(port)
                if holder is None:
                    continue
                if holder is True:
                    problems.append(f"port {port} ({what}) is already in use by a process we cannot see")
                elif holder in ours:
                    problems.append(
                        f"port {port} ({what}) is held by a leftover process of this stack, "
                        f"{_describe(psutil.Process(holder))}: run `rtml local down` first"
                    )
                else:
                    problems.append(
                        f"port {port} ({what}) is already in use by {_describe(psutil.Process(holder))}"
                    )
        if problems:
            raise PortInUseError(
                "Cannot start the local stack; nothing was started:\n  - " + "\n  - ".join(problems)
                + "\nTo fix this, stop the process(es) named above (or the other stack using these ports) "
                "and run `rtml local up` again."
            )

    def _spawn(self, svc: Service) -> subprocess.Popen:
        env = dict(os.environ)
        env.update(svc.env())
        env[MARKER] = str(self.cfg.home)
        svc.log_file.parent.mkdir(parents=True, exist_ok=True)
        with svc.log_file.open("ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(svc.command())}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                svc.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=str(self.cfg.home), start_new_session=True,
            )
        proc = psutil.Process(popen.pid)
        self._pidfile(svc).write_text(
            json.dumps({"pid": popen.pid, "create_time": proc.create_time(), "start_ticks": _start_ticks(popen.pid),
                        "command": svc.command()})
        )
        return popen

    def _wait_healthy(self, svc: Service) -> None:
        t0 = time.monotonic()
        deadline = t0 + svc.startup_timeout
        last_detail, last_report = "", t0
        while True:
            ok, detail = svc.health()
            if ok:
                self.progress(f"{svc.name}: healthy after {time.monotonic() - t0:.1f}s ({detail})")
                return
            proc = self.process_of(svc)
            if proc is None:
                raise ServiceStartError(
                    f"{svc.name} exited during start-up. Last lines of {svc.log_file}:\n{self._tail(svc)}"
                )
            now = time.monotonic()
            if now > deadline:
                raise ServiceStartError(
                    f"{svc.name} not healthy after {svc.startup_timeout:.0f}s ({detail}). "
                    f"Last lines of {svc.log_file}:\n{self._tail(svc)}"
                )
            if detail != last_detail or now - last_report > 15:
                self.progress(f"{svc.name}: waiting ({detail})")
                last_detail, last_report = detail, now
            time.sleep(0.5)

    def _tail(self, svc: Service, lines: int = 25) -> str:
        try:
            text = svc.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "    (no log)"
        return "\n".join("    " + line for line in text)

    # --- status ---
    def status(self) -> list[ServiceStatus]:
        supervisor = next((s for s in self.services if isinstance(s, StackSupervisor)), None)
        watched = {}
        if supervisor is not None and self.process_of(supervisor) is not None:
            watched = supervisor.state().get("services", {})
        out = []
        for svc in self.services:
            proc = self.process_of(svc)
            rss = 0
            if proc is not None:
                # The supervisor's children are the services it restarted: counted under their own names.
                tree = [proc] if isinstance(svc, StackSupervisor) else [proc, *proc.children(recursive=True)]
                for p in tree:
                    try:
                        rss += p.memory_info().rss
                    except psutil.Error:
                        pass
            healthy, detail = svc.health() if proc is not None else (False, "not running")
            sup = watched.get(svc.name) or {}
            restarts, restarting = int(sup.get("restarts", 0) or 0), sup.get("state") == "restarting"
            if restarting:
                healthy = False
                detail = f"restarting after: {sup.get('last_cause') or '?'}"
            elif proc is None and watched:
                detail = "not running; the supervisor is about to start it again"
            elif restarts and sup.get("last_cause"):
                detail += f" (last restart after: {sup['last_cause']})"
            out.append(ServiceStatus(svc.name, proc is not None, healthy, detail, proc.pid if proc else None, rss,
                                     restarts, restarting or (proc is None and bool(watched))))
        return out

    # --- down ---
    def down(self) -> int:
        """Stop every process of this stack: the supervisor first (so nothing is restarted), then Airflow's
        components together, then the other services together; then stragglers (by the stack's marker, and by
        session: a child whose parent died and whose environment was cleaned).

        Returns the number of processes stopped. Data (Kafka logs, Airflow DB, checkpoints) is kept.
        """
        count = self._stop_services(self.services)
        stragglers = self.stack_processes()
        if stragglers:
            self.progress(f"stopping {len(stragglers)} leftover process(es) of this stack")
            count += _terminate(stragglers, timeout=10)
        for svc in self.services:
            if isinstance(svc, StackSupervisor):
                svc.state_file.unlink(missing_ok=True)
        return count

    def _stop_services(self, services: Iterable[Service]) -> int:
        """Stop ``services`` in waves (supervisor; Airflow; the rest), each wave's processes at once."""
        services = list(services)
        waves = [[s for s in services if isinstance(s, StackSupervisor)],
                 [s for s in services if isinstance(s, AirflowComponent)]]
        waves.append([s for s in reversed(services) if not any(s in w for w in waves)])
        return sum(self._stop_wave(wave) for wave in waves if wave)

    def _stop_wave(self, services: list[Service]) -> int:
        trees: list[psutil.Process] = []
        leaders: list[psutil.Process] = []
        timeout = 0.0
        for svc in services:
            proc = self.process_of(svc)
            if proc is None:
                self._pidfile(svc).unlink(missing_ok=True)
                continue
            if isinstance(svc, StackSupervisor):
                tree = [proc]  # its children are the services it restarted: each is stopped in its own wave
            else:
                try:
                    tree = [proc, *proc.children(recursive=True)]
                except psutil.Error:
                    tree = [proc]
                tree += [p for p in session_of(proc.pid) if p.pid not in {t.pid for t in tree}]
            self.progress(f"{svc.name}: stopping pid {proc.pid} ({signal.Signals(svc.stop_signal).name})")
            try:
                proc.send_signal(svc.stop_signal)
            except psutil.NoSuchProcess:
                pass
            trees += tree
            leaders.append(proc)
            timeout = max(timeout, svc.stop_timeout)
        if trees:
            # Wait for the services themselves; what they leave behind once they have exited (a child that got
            # no signal) is terminated at once rather than waited out for the whole stop timeout.
            _, alive = psutil.wait_procs(leaders, timeout=timeout)
            if alive:
                self.progress(f"{len(alive)} process(es) still alive after {timeout:.0f}s, terminating: "
                              + ", ".join(_describe(p) for p in alive[:5]))
            _, left = psutil.wait_procs([p for p in trees if p not in leaders], timeout=2 if not alive else 0)
            if alive or left:
                _terminate(alive + left, timeout=5)
        for svc in services:
            self._pidfile(svc).unlink(missing_ok=True)
        return len(trees)


def session_of(session_id: int) -> list[psutil.Process]:
    """Live processes in the session ``session_id`` leads (a service's children, including ones it lost)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and os.getsid(proc.pid) == session_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux ``/proc/<pid>/stat`` field 22), or None.

    Unlike ``create_time()`` (boot time + ticks, in wall-clock seconds) it does not move when the system clock is
    stepped: a record checked against wall time can mistake a live service for a stale one after an NTP step.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None  # gone (or not Linux)
    try:
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def _same_process(proc: psutil.Process, rec: dict) -> bool:
    """Is ``proc`` the process the record was written for (not a later one that reused its PID)?"""
    ticks = rec.get("start_ticks")
    if ticks is not None:
        return _start_ticks(proc.pid) == ticks
    return abs(proc.create_time() - rec["create_time"]) < 1.0


def _terminate(procs: list[psutil.Process], timeout: float) -> int:
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    return len(procs)
