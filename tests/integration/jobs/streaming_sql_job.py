"""An unbounded PyFlink SQL job (datagen -> blackhole) for lifecycle tests; argv[1] = job name.

With argv[2] == "fail", a Python UDF raises after a few rows: the job FAILS with a known root cause.
"""

import sys

from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment
from pyflink.table.udf import udf

job_name = sys.argv[1] if len(sys.argv) > 1 else "rtml-streaming"
fail = len(sys.argv) > 2 and sys.argv[2] == "fail"

t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
t_env.get_config().set("pipeline.name", job_name)
t_env.get_config().set("execution.checkpointing.interval", "2s")
t_env.get_config().set("restart-strategy.type", "none")
t_env.execute_sql("CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '20')")
t_env.execute_sql("CREATE TABLE sink (id BIGINT) WITH ('connector' = 'blackhole')")


@udf(result_type=DataTypes.BIGINT())
def explode(x):
    raise ValueError("rtml-test-boom: this job fails on purpose")


if fail:
    t_env.create_temporary_function("explode", explode)
    t_env.execute_sql("INSERT INTO sink SELECT explode(id) FROM gen")
else:
    t_env.execute_sql("INSERT INTO sink SELECT id FROM gen")
