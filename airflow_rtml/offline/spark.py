"""How a Spark job of the offline half is submitted: the Airflow way, with the Spark provider's
``SparkSubmitOperator``, running the ``spark-submit`` that the stack's Spark venv (``pyspark`` from PyPI) ships.

Why spark-submit rather than a SparkSession inside the task: Spark then runs in its own venv and JVM (pyspark
needs pyarrow >= 18 and its own Java processes; the Airflow worker stays small), the job file is an ordinary
PySpark script that runs unchanged with ``--master yarn`` or on Kubernetes, and the operator's log is Spark's.

No Airflow import here.
"""

from __future__ import annotations

import os
from pathlib import Path


def spark_env() -> dict[str, str]:
    """``env_vars`` for ``SparkSubmitOperator``: the Spark provider looks ``spark-submit`` up on PATH (it accepts
    no path), so PATH starts with the Spark venv's bin; executors use that venv's Python; Spark binds loopback."""
    home = os.environ.get("RTML_SPARK_HOME")
    python = os.environ.get("RTML_SPARK_PYTHON")
    if not home or not python:
        raise RuntimeError(
            "RTML_SPARK_HOME / RTML_SPARK_PYTHON are not set. To fix this, run inside the local stack (`rtml local "
            "up` sets them for Airflow) or set them to a Spark installation and its Python."
        )
    env = {
        "PATH": f"{Path(python).parent}{os.pathsep}{Path(home) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYSPARK_PYTHON": python,
        "SPARK_HOME": home,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    if os.environ.get("JAVA_HOME"):
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    return env


def spark_conf(metastore_uri: str | None = None, warehouse: str | None = None) -> dict[str, str]:
    """``conf`` for ``SparkSubmitOperator``: Hive support on the stack's metastore, small local footprint."""
    uri = metastore_uri or os.environ.get("RTML_HIVE_METASTORE_URI", "thrift://127.0.0.1:9083")
    conf = {
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.hive.metastore.uris": uri,
        "spark.ui.enabled": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.memory": "512m",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.session.timeZone": "UTC",
    }
    if warehouse:
        conf["spark.sql.warehouse.dir"] = warehouse
    return conf
