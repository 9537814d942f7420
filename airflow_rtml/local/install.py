"""Install what the embedded stack runs: the Flink venv, the Flink Kafka connector, the Kafka broker jars.

Each step is idempotent: a stamp file records what was installed, so a second run downloads nothing.
Downloads go through the state folder's caches (pip cache, a Maven local repository), which survive
``rtml local down`` and are safe to keep between CI runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from airflow_rtml.local.config import (
    FLINK_KAFKA_CONNECTOR,
    FLINK_PARQUET_FORMAT,
    FLINK_SQL_GATEWAY,
    FLINK_VERSION,
    KAFKA_VERSION,
    SPARK_VERSION,
    StackConfig,
    java_home,
)

Progress = Callable[[str], None]


class InstallError(RuntimeError):
    """A step of ``rtml local install`` failed; the message names the step, the command and its log."""


def _package_file(name: str) -> Path:
    return Path(str(resources.files("airflow_rtml.local").joinpath(name)))


def _run(step: str, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise InstallError(
            f"{step} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            + "\n".join(f"    {line}" for line in tail)
            + f"\nFull log: {log}"
        )


def _stamped(stamp: Path, want: str) -> bool:
    return stamp.exists() and stamp.read_text().strip() == want


def _mvn() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise InstallError(
            "Maven (`mvn`) is not on PATH: the Kafka broker and the Flink Kafka connector are fetched from "
            "Maven Central with it. To fix this, install Maven (e.g. `apt-get install maven`)."
        )
    return mvn


def ensure_flink_venv(cfg: StackConfig, progress: Progress) -> bool:
    """Create Flink's own virtualenv with ``apache-flink`` (its distribution ships inside the wheel).

    Kept apart from Airflow's venv on purpose: Beam pins numpy/protobuf/grpc below what Airflow wants.
    Returns True if it installed something, False if the venv was already complete.
    """
    stamp = cfg.flink_venv / ".rtml-installed"
    if _stamped(stamp, FLINK_VERSION) and (cfg.flink_home / "bin" / "jobmanager.sh").exists():
        progress(f"flink venv: apache-flink {FLINK_VERSION} already installed ({cfg.flink_venv})")
        return False
    progress(f"flink venv: installing apache-flink {FLINK_VERSION} into {cfg.flink_venv} (first time: ~1 min)")
    log = cfg.log_dir / "install-flink.log"
    if not (cfg.flink_venv / "bin" / "python").exists():
        _run("creating the Flink venv", [sys.executable, "-m", "venv", "--clear", str(cfg.flink_venv)], log)
    env = dict(os.environ, PIP_CACHE_DIR=str(cfg.pip_cache), PIP_DISABLE_PIP_VERSION_CHECK="1",
               JAVA_HOME=java_home())
    _run(
        "installing apache-flink",
        [str(cfg.flink_python), "-m", "pip", "install", "--quiet",
         "-c", str(_package_file("flink-constraints.txt")), f"apache-flink=={FLINK_VERSION}"],
        log,
        env,
    )
    stamp.write_text(FLINK_VERSION)
    return True


def _fetch_artifact(cfg: StackConfig, progress: Progress, what: str, artifact: str, jar: Path) -> bool:
    """Fetch one jar from Maven Central into ``jar``'s folder (no-op when present)."""
    if jar.exists():
        progress(f"{what}: present ({jar.name})")
        return False
    progress(f"{what}: fetching {artifact}")
    jar.parent.mkdir(parents=True, exist_ok=True)
    _run(
        f"fetching {what}",
        [_mvn(), "-q", "-B", f"-Dmaven.repo.local={cfg.maven_repo}",
         "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy",
         f"-Dartifact={artifact}", f"-DoutputDirectory={jar.parent}"],
        cfg.log_dir / "install-maven.log",
    )
    if not jar.exists():
        raise InstallError(f"Maven finished but {jar} is missing; see {cfg.log_dir / 'install-maven.log'}")
    return True


def ensure_kafka_connector(cfg: StackConfig, progress: Progress) -> bool:
    """Fetch ``flink-sql-connector-kafka`` (built for our Flink minor) from Maven Central."""
    return _fetch_artifact(cfg, progress, "flink kafka connector", FLINK_KAFKA_CONNECTOR, cfg.kafka_connector_jar)


def ensure_parquet_format(cfg: StackConfig, progress: Progress) -> bool:
    """Fetch ``flink-sql-parquet`` (the archive's file format) from Maven Central."""
    return _fetch_artifact(cfg, progress, "flink parquet format", FLINK_PARQUET_FORMAT, cfg.parquet_format_jar)


def ensure_sql_gateway(cfg: StackConfig, progress: Progress) -> bool:
    """Fetch ``flink-sql-gateway`` into the distribution's opt/ (the wheel does not ship it)."""
    return _fetch_artifact(cfg, progress, "flink sql gateway", FLINK_SQL_GATEWAY, cfg.flink_sql_gateway_jar)


def ensure_kafka_libs(cfg: StackConfig, progress: Progress) -> bool:
    """Fetch the Kafka broker (``kafka_2.13`` and its runtime dependencies) with the repo's small pom."""
    stamp = cfg.kafka_libs / ".rtml-installed"
    if _stamped(stamp, KAFKA_VERSION):
        progress(f"kafka broker: {KAFKA_VERSION} jars present")
        return False
    progress(f"kafka broker: fetching org.apache.kafka:kafka_2.13:{KAFKA_VERSION} and dependencies")
    if cfg.kafka_libs.exists():
        shutil.rmtree(cfg.kafka_libs)
    cfg.kafka_libs.mkdir(parents=True)
    _run(
        "fetching the Kafka broker jars",
        [_mvn(), "-q", "-B", f"-Dmaven.repo.local={cfg.maven_repo}", "-f", str(_package_file("kafka-pom.xml")),
         "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={cfg.kafka_libs}"],
        cfg.log_dir / "install-maven.log",
    )
    if not any(cfg.kafka_libs.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
        raise InstallError(f"Maven finished but kafka_2.13-{KAFKA_VERSION}.jar is not in {cfg.kafka_libs}")
    stamp.write_text(KAFKA_VERSION)
    return True


def ensure_spark_venv(cfg: StackConfig, progress: Progress) -> bool:
    """Create Spark's own virtualenv with ``pyspark[sql]`` (Spark's distribution, spark-submit and the Hive 2.3
    metastore classes ship inside the wheel). Apart from Flink's venv: pyspark needs pyarrow >= 18, Beam < 17."""
    stamp = cfg.spark_venv / ".rtml-installed"
    if _stamped(stamp, SPARK_VERSION) and (cfg.spark_home / "bin" / "spark-submit").exists():
        progress(f"spark venv: pyspark {SPARK_VERSION} already installed ({cfg.spark_venv})")
        return False
    progress(f"spark venv: installing pyspark {SPARK_VERSION} into {cfg.spark_venv} (first time: ~2 min, ~540 MB)")
    log = cfg.log_dir / "install-spark.log"
    if not (cfg.spark_python).exists():
        _run("creating the Spark venv", [sys.executable, "-m", "venv", "--clear", str(cfg.spark_venv)], log)
    env = dict(os.environ, PIP_CACHE_DIR=str(cfg.pip_cache), PIP_DISABLE_PIP_VERSION_CHECK="1")
    _run("installing pyspark", [str(cfg.spark_python), "-m", "pip", "install", "--quiet",
                                "-c", str(_package_file("spark-constraints.txt")), f"pyspark[sql]=={SPARK_VERSION}"],
         log, env)
    stamp.write_text(SPARK_VERSION)
    return True


def ensure_metastore_launcher(cfg: StackConfig, progress: Progress) -> bool:
    """Compile the metastore's loopback launcher (``HmsLoopback.java``) against pyspark's Hive jars."""
    source = _package_file("HmsLoopback.java")
    classes = cfg.hive_dir / "classes"
    want = f"{SPARK_VERSION} {hashlib.sha256(source.read_bytes()).hexdigest()[:16]}"
    if _stamped(classes / ".rtml-installed", want) and (classes / "HmsLoopback.class").exists():
        progress("hive metastore: launcher compiled")
        return False
    progress("hive metastore: compiling the loopback launcher against pyspark's Hive 2.3 jars")
    classes.mkdir(parents=True, exist_ok=True)
    _run("compiling the metastore launcher",
         [str(Path(java_home(), "bin", "javac")), "-nowarn", "-d", str(classes),
          "-cp", f"{cfg.spark_home / 'jars'}/*", str(source)],
         cfg.log_dir / "install-hive.log")
    (classes / ".rtml-installed").write_text(want)
    return True


def ensure_postgres(cfg: StackConfig, progress: Progress) -> None:
    """With ``--db postgres``: Debian's PostgreSQL server package, installed with apt-get when missing (as root);
    otherwise an error that says how to install it. The Python drivers come with ``make bootstrap``."""
    if cfg.airflow_db != "postgres":
        return
    from airflow_rtml.local.config import postgres_bin_dir

    if postgres_bin_dir() is None:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise InstallError("--db postgres needs Debian's PostgreSQL server. To fix this, run "
                               "`sudo apt-get install -y postgresql`, or use --db sqlite.")
        progress("postgres: installing Debian's postgresql package (apt-get, first time: ~30 s)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                                                     "postgresql"]):
            done = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                raise InstallError(f"`{' '.join(argv)}` failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        if postgres_bin_dir() is None:
            raise InstallError("apt-get installed postgresql, but no server binaries were found under "
                               "/usr/lib/postgresql/*/bin")
    for module, package in (("psycopg2", "psycopg2-binary"), ("asyncpg", "asyncpg")):
        try:
            __import__(module)
        except ImportError:
            raise InstallError(f"--db postgres needs the Python package {package} in the project venv. To fix "
                               "this, run `make bootstrap` (it installs the postgres extra).") from None


def install_all(cfg: StackConfig, progress: Progress) -> None:
    """Install everything the stack needs; a no-op (and no download) when all of it is already there."""
    java_home()  # fail early, with the fix, when Java is missing
    ensure_postgres(cfg, progress)
    ensure_flink_venv(cfg, progress)
    ensure_kafka_connector(cfg, progress)
    ensure_sql_gateway(cfg, progress)
    ensure_kafka_libs(cfg, progress)
    ensure_spark_venv(cfg, progress)
    ensure_metastore_launcher(cfg, progress)
    ensure_parquet_format(cfg, progress)
