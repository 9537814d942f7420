"""A trivial bounded PyFlink SQL job: 1,000 generated rows into a blackhole sink.

Runs in the Flink venv (submitted with `flink run -py`), never in Airflow's.
"""

import sys

from pyflink.table import EnvironmentSettings, TableEnvironment

job_name = sys.argv[1] if len(sys.argv) > 1 else "rtml-trivial-sql"
t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
t_env.get_config().set("pipeline.name", job_name)
t_env.execute_sql(
    "CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '1000', 'rows-per-second' = '200')"
)
t_env.execute_sql("CREATE TABLE sink (id BIGINT) WITH ('connector' = 'blackhole')")
t_env.execute_sql("INSERT INTO sink SELECT id FROM gen")
