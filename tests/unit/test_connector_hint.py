"""A SQL job whose connector jar is missing says to pass ``sql_jars=`` (issue 17); the real SQL Gateway case is
tests/integration/test_submit_errors.py."""

from __future__ import annotations

from airflow_rtml.exceptions import FlinkSqlError
from airflow_rtml.operators.flink import missing_connector_hint

KAFKA_TABLE = "CREATE TEMPORARY TABLE t (x INT) WITH ('connector' = 'kafka', 'topic' = 't')"
FACTORY = ("Could not find any factory for identifier 'kafka' that implements "
           "'org.apache.flink.table.factories.DynamicTableFactory' in the classpath.")


def test_flinks_own_words_name_the_connector_and_the_local_stack_variable():
    exc = FlinkSqlError("Flink SQL statement failed", statement="INSERT ...", cause=FACTORY)
    hint = missing_connector_hint(exc, [KAFKA_TABLE], [])
    assert "no connector 'kafka'" in hint and "sql_jars=" in hint and "RTML_FLINK_KAFKA_CONNECTOR_JAR" in hint


def test_an_unreadable_cause_still_names_the_connector_without_a_jar():
    exc = FlinkSqlError("Flink SQL statement failed: Internal server error.", statement="INSERT ...", cause="?")
    assert "'kafka'" in missing_connector_hint(exc, [KAFKA_TABLE], [])
    assert missing_connector_hint(exc, [KAFKA_TABLE], ["/jars/flink-sql-connector-kafka-4.0.1-2.0.jar"]) is None
    builtin = "CREATE TEMPORARY TABLE s (x INT) WITH ('connector' = 'blackhole')"
    assert missing_connector_hint(exc, [builtin], []) is None
