"""SQL pieces that need no gateway: statement splitting and error-cause extraction."""

from __future__ import annotations

import json

import pytest

from airflow_rtml.exceptions import FlinkSqlError
from airflow_rtml.hooks.flink_sql import split_statements, sql_error_cause


def test_split_on_semicolons_outside_quotes_and_comments():
    sql = """
    -- a comment; with a semicolon
    CREATE TABLE t (s STRING) WITH ('connector' = 'datagen', 'x' = 'a;b');
    /* block; comment */
    INSERT INTO u SELECT 'it''s; fine' FROM t;;
    """
    out = split_statements(sql)
    assert len(out) == 2
    assert out[0].endswith("WITH ('connector' = 'datagen', 'x' = 'a;b')")
    assert out[1].endswith("INSERT INTO u SELECT 'it''s; fine' FROM t")


def test_statement_set_block_stays_one_statement():
    sql = "CREATE TABLE a (x INT);\nEXECUTE STATEMENT SET BEGIN\nINSERT INTO b SELECT x FROM a;\nINSERT INTO c SELECT x FROM a;\nEND;"
    out = split_statements(sql)
    assert len(out) == 2
    assert out[1].startswith("EXECUTE STATEMENT SET BEGIN") and out[1].endswith("END")
    assert out[1].count("INSERT INTO") == 2


def test_unclosed_statement_set_is_an_error():
    with pytest.raises(FlinkSqlError, match="no END"):
        split_statements("EXECUTE STATEMENT SET BEGIN INSERT INTO b SELECT 1;")


def test_comment_only_script_gives_no_statements():
    assert split_statements("-- nothing\n/* here */ ;") == []


def test_error_cause_keeps_flinks_reason_not_the_gateway_wrappers():
    trace = (
        "org.apache.flink.table.gateway.api.utils.SqlGatewayException: Failed to fetchResults.\n"
        "\tat org.apache.flink.table.gateway.rest.handler.statement.FetchResultsHandler.handleRequest(X.java:91)\n"
        "Caused by: org.apache.flink.table.gateway.api.utils.SqlGatewayException: Failed to fetchResults.\n"
        "Caused by: org.apache.flink.table.gateway.service.utils.SqlExecutionException: Failed to execute the operation 1.\n"
        "Caused by: org.apache.flink.table.api.ValidationException: SQL validation failed. Object 'nosuchtable' not found\n"
        "\tat org.apache.flink.table.planner.X(X.java:1)\n"
    )
    cause = sql_error_cause(json.dumps({"errors": ["Internal server error.", trace]}))
    assert cause.startswith("org.apache.flink.table.api.ValidationException: SQL validation failed.")
    assert "SqlGatewayException" not in cause and "\tat " not in cause
