"""Example PyFlink SQL job: generated rows into a blackhole sink. Runs in Flink's own Python, not Airflow's.

argv: <job name> [rows]. With a row count the job is bounded (it FINISHES); without, it streams until stopped.
"""

import sys

from pyflink.table import EnvironmentSettings, TableEnvironment

job_name = sys.argv[1]
rows = sys.argv[2] if len(sys.argv) > 2 else None

t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
t_env.get_config().set("pipeline.name", job_name)
t_env.get_config().set("execution.checkpointing.interval", "2s")
bounded = f", 'number-of-rows' = '{int(rows)}'" if rows else ""
t_env.execute_sql(
    f"CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '200'{bounded})"
)
t_env.execute_sql("CREATE TABLE sink (id BIGINT) WITH ('connector' = 'blackhole')")
t_env.execute_sql("INSERT INTO sink SELECT id FROM gen")
