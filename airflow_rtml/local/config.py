"""Where the embedded local stack keeps its state, and which versions and ports it uses.

Everything the stack generates (venvs, downloads, logs, PIDs, Airflow home, checkpoints) lives under one
state folder, ``$RTML_HOME`` (default: ``.rtml`` in the current directory), which the repository ignores.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

FLINK_VERSION = "2.2.1"
#: ``flink-sql-connector-kafka`` release built for our Flink minor (Maven Central).
FLINK_KAFKA_CONNECTOR = "org.apache.flink:flink-sql-connector-kafka:5.0.0-2.2"
#: Must match ``kafka.version`` in ``kafka-pom.xml``.
KAFKA_VERSION = "4.1.1"
#: The SQL Gateway is not in the apache-flink wheel's opt/; it comes from Maven Central (same version).
FLINK_SQL_GATEWAY = f"org.apache.flink:flink-sql-gateway:{FLINK_VERSION}"
#: Flink's Parquet format for the archive's filesystem sink. The 2.2 build is not served by the registry this
#: project installs from; the 2.3.0 build runs on our 2.2.1 cluster (tested by the archive's integration tests).
#: Its Hadoop classes come from the shaded hadoop-client jars that pyspark ships.
FLINK_PARQUET_FORMAT = "org.apache.flink:flink-sql-parquet:2.3.0"
#: PySpark (PyPI) in its own venv: ``pyspark[sql]`` needs pyarrow >= 18, Flink's Beam pins < 17. Its ``jars/``
#: also carries the Hive 2.3 metastore classes the stack's Thrift metastore runs on (no second download).
SPARK_VERSION = "4.3.0"

HOST = "127.0.0.1"
#: The metadata databases the local stack can run Airflow on.
AIRFLOW_DBS = ("sqlite", "postgres")


def postgres_bin_dir() -> Path | None:
    """The folder of Debian's PostgreSQL server binaries (``postgres``, ``initdb``), newest major first; or None."""
    import subprocess

    found = shutil.which("pg_config")
    if found:
        done = subprocess.run([found, "--bindir"], capture_output=True, text=True)
        candidate = Path(done.stdout.strip())
        if done.returncode == 0 and (candidate / "postgres").exists():
            return candidate
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return versions[-1].parent if versions else None


def default_airflow_db(home: Path) -> str:
    """``postgres`` where PostgreSQL is installed or can be (root with apt-get); ``sqlite`` otherwise, and for a
    state folder that already holds a SQLite metadata DB from before this choice existed (its history stays)."""
    if (home / "airflow" / "airflow.db").exists():
        return "sqlite"
    if postgres_bin_dir() is not None or (os.geteuid() == 0 and shutil.which("apt-get")):
        return "postgres"
    return "sqlite"


def _saved_settings(home: Path) -> dict:
    try:
        data = json.loads((home / "settings.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the stack; each is checked free before anything starts."""

    flink_rest: int = 8081
    flink_rpc: int = 6123
    flink_sql_gateway: int = 8083
    flink_tm_metrics: int = 9249
    kafka: int = 9092
    kafka_controller: int = 9093
    airflow_api: int = 8080
    airflow_worker_logs: int = 8793
    airflow_triggerer_logs: int = 8794
    hive_metastore: int = 9083
    postgres: int = 5433  # Airflow's metadata DB with ``--db postgres`` (5433: a system PostgreSQL keeps 5432)


@dataclass(frozen=True)
class StackConfig:
    """Paths and settings of one embedded stack; build it with :meth:`from_env`."""

    home: Path
    project_dir: Path
    dags_folder: Path
    ports: Ports = Ports()
    #: Airflow's metadata database: ``postgres`` (a PostgreSQL server the stack starts on 127.0.0.1, from Debian's
    #: package) or ``sqlite`` (a file). Chosen by ``rtml local up --db`` and kept in ``settings.json``; without a
    #: choice, :func:`default_airflow_db`.
    airflow_db: str = "sqlite"

    @classmethod
    def from_env(cls) -> StackConfig:
        """Read ``RTML_HOME``, ``RTML_PROJECT_DIR``, ``RTML_DAGS_FOLDER`` and ``RTML_AIRFLOW_DB`` (all optional;
        without ``RTML_AIRFLOW_DB`` the database is the one the last ``rtml local up --db`` chose)."""
        project = Path(os.environ.get("RTML_PROJECT_DIR") or Path.cwd()).resolve()
        home = Path(os.environ.get("RTML_HOME") or project / ".rtml").resolve()
        dags = Path(os.environ.get("RTML_DAGS_FOLDER") or project / "dags").resolve()
        db = os.environ.get("RTML_AIRFLOW_DB") or _saved_settings(home).get("airflow_db") or default_airflow_db(home)
        if db not in AIRFLOW_DBS:
            raise ValueError(f"RTML_AIRFLOW_DB / --db must be one of {AIRFLOW_DBS}, got {db!r}")
        return cls(home=home, project_dir=project, dags_folder=dags, airflow_db=db)

    @property
    def settings_file(self) -> Path:
        """Choices that outlive one command (the metadata database), as JSON."""
        return self.home / "settings.json"

    def save_settings(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.settings_file.write_text(json.dumps({"airflow_db": self.airflow_db}, indent=2) + "\n")

    @property
    def postgres_dir(self) -> Path:
        """The PostgreSQL data folder (``--db postgres``). When the stack runs as root, PostgreSQL (which refuses to
        run as root) runs as the ``postgres`` user, and this is a link to a folder that user can reach."""
        return self.home / "postgres"

    # --- downloads (kept across `down`; a second `up` downloads nothing) ---
    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def pip_cache(self) -> Path:
        return self.cache_dir / "pip"

    @property
    def maven_repo(self) -> Path:
        return self.cache_dir / "m2"

    # --- installed software ---
    @property
    def flink_venv(self) -> Path:
        return self.home / "flink-venv"

    @property
    def flink_python(self) -> Path:
        return self.flink_venv / "bin" / "python"

    @property
    def flink_home(self) -> Path:
        """The Flink distribution (bin/, lib/, conf/) that the ``apache-flink`` wheel installs as ``pyflink``."""
        pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
        return self.flink_venv / "lib" / pyver / "site-packages" / "pyflink"

    @property
    def flink_python_jar(self) -> Path:
        """``PythonDriver`` jar of the distribution: runs PyFlink scripts submitted over REST."""
        return self.flink_home / "opt" / f"flink-python-{FLINK_VERSION}.jar"

    @property
    def flink_sql_gateway_jar(self) -> Path:
        """The SQL Gateway jar, placed in the distribution's opt/ where ``bin/sql-gateway.sh`` looks for it."""
        return self.flink_home / "opt" / f"flink-sql-gateway-{FLINK_VERSION}.jar"

    @property
    def connectors_dir(self) -> Path:
        return self.home / "connectors"

    @property
    def kafka_connector_jar(self) -> Path:
        _, artifact, version = FLINK_KAFKA_CONNECTOR.split(":")
        return self.connectors_dir / f"{artifact}-{version}.jar"

    @property
    def parquet_format_jar(self) -> Path:
        _, artifact, version = FLINK_PARQUET_FORMAT.split(":")
        return self.connectors_dir / f"{artifact}-{version}.jar"

    @property
    def archive_jars(self) -> list[Path]:
        """What a Flink SQL job writing the Parquet archive adds (``sql_jars``): the format and Hadoop's client."""
        jars = self.spark_home / "jars"
        return [self.parquet_format_jar, *sorted(jars.glob("hadoop-client-api-*.jar")),
                *sorted(jars.glob("hadoop-client-runtime-*.jar"))]

    @property
    def kafka_libs(self) -> Path:
        return self.home / "kafka" / "libs"

    @property
    def spark_venv(self) -> Path:
        return self.home / "spark-venv"

    @property
    def spark_python(self) -> Path:
        return self.spark_venv / "bin" / "python"

    @property
    def spark_home(self) -> Path:
        """The Spark distribution inside the ``pyspark`` wheel (bin/spark-submit, jars/)."""
        pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
        return self.spark_venv / "lib" / pyver / "site-packages" / "pyspark"

    @property
    def hive_dir(self) -> Path:
        """The metastore's conf, launcher classes and Derby database."""
        return self.home / "hive"

    @property
    def warehouse_dir(self) -> Path:
        """Where the archive and the offline features live (a local stand-in for HDFS or object storage)."""
        return self.home / "warehouse"

    # --- runtime state (what `down` stops; data survives it) ---
    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def flink_conf_dir(self) -> Path:
        return self.home / "flink" / "conf"

    @property
    def flink_checkpoints(self) -> Path:
        return self.home / "flink" / "checkpoints"

    @property
    def flink_savepoints(self) -> Path:
        return self.home / "flink" / "savepoints"

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def flink_rest_url(self) -> str:
        return f"http://{HOST}:{self.ports.flink_rest}"

    @property
    def flink_tm_metrics_url(self) -> str:
        return f"http://{HOST}:{self.ports.flink_tm_metrics}/metrics"

    @property
    def flink_sql_gateway_url(self) -> str:
        return f"http://{HOST}:{self.ports.flink_sql_gateway}"

    @property
    def airflow_url(self) -> str:
        return f"http://{HOST}:{self.ports.airflow_api}"

    @property
    def hive_metastore_uri(self) -> str:
        return f"thrift://{HOST}:{self.ports.hive_metastore}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{HOST}:{self.ports.kafka}"


def java_home() -> str:
    """Return ``JAVA_HOME``, or derive it from ``java`` on PATH; raise if no Java is installed."""
    env = os.environ.get("JAVA_HOME")
    if env and Path(env, "bin", "java").exists():
        return env
    java = shutil.which("java")
    if not java:
        raise FileNotFoundError(
            "No Java found: the local Flink cluster and Kafka broker need Java 17. "
            "To fix this, install a JDK 17 (e.g. `apt-get install openjdk-17-jdk-headless`) or set JAVA_HOME."
        )
    return str(Path(java).resolve().parent.parent)
