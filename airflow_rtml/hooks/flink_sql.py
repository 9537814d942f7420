"""FlinkSqlGatewayHook: run SQL on a Flink session cluster through the Flink SQL Gateway's REST endpoint.

Connection type ``flink_sql_gateway`` (default id ``flink_sql_gateway_default``): host, port (default 8083),
schema (``http``/``https``), login/password, and the same allow-listed extras as ``flink_rest``
(``verify``, ``ca_bundle``, ``client_cert``, ``client_key``, ``bearer_token``, ``timeout``).

A statement runs in a gateway *session*; an ``INSERT`` (or ``EXECUTE STATEMENT SET``) submits a Flink job to
the cluster behind the gateway and its result carries the job id. Closing the session does not stop the job.
Guarantees: a failed statement raises :class:`~airflow_rtml.exceptions.FlinkSqlError` with Flink's reason
(parse / validation error), never a bare HTTP 500; statements run one after another, and a failure stops the
rest. Not idempotent by itself: the submit operator makes it so by adopting a running job of the same name.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from airflow_rtml.exceptions import FlinkApiError, FlinkSqlError, FlinkWaitTimeout
from airflow_rtml.hooks.flink import FlinkHttpHook, _Call
from airflow_rtml.sql_script import split_statements, strip_comments  # noqa: F401 - public here too

API = "/v2"  # sessions, statements, operations, results with jobID: Flink >= 1.17


class OperationStatus(str, Enum):
    """States of a SQL Gateway operation (``org.apache.flink.table.gateway.api.results.OperationStatus``)."""

    INITIALIZED = "INITIALIZED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    CANCELED = "CANCELED"
    CLOSED = "CLOSED"
    ERROR = "ERROR"
    TIMEOUT = "TIMEOUT"

    @property
    def is_terminal(self) -> bool:
        return self not in (OperationStatus.INITIALIZED, OperationStatus.PENDING, OperationStatus.RUNNING)


@dataclass(frozen=True)
class StatementResult:
    """What one statement produced: the submitted job's id (INSERT), or the first page of rows."""

    statement: str
    result_kind: str
    job_id: str | None = None
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)


_NOISE = re.compile(r"SqlGatewayException|SqlExecutionException|RestHandlerException|Failed to fetchResults")


def sql_error_cause(body: str | None) -> str:
    """Flink's reason from a failed operation's error body: the ``Caused by`` lines that name the real error
    (parse / validation / planning), without the gateway's wrapper exceptions and stack frames."""
    text = body or ""
    try:
        import json

        errors = json.loads(text).get("errors") or []
        text = "\n".join(str(e) for e in errors)
    except (ValueError, AttributeError):
        pass
    causes = [ln.strip().removeprefix("Caused by: ") for ln in text.splitlines() if ln.strip().startswith("Caused by:")]
    useful = [c for c in causes if not _NOISE.search(c)]
    if useful:
        return "\n".join(useful[:3])
    first = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("at ")]
    return "\n".join(first[:3]) or "(the SQL Gateway gave no reason)"


class FlinkSqlGatewayHook(FlinkHttpHook):
    """Run SQL statements through a Flink SQL Gateway (REST endpoint, API v2).

    :param flink_sql_gateway_conn_id: a ``flink_sql_gateway`` connection id.
    :param retry_limit: attempts per request for transient errors (connection, timeout, 429; a 5xx is retried
        for session/status calls, never for fetching a failed statement's result).
    :param retry_delay: first backoff delay in seconds.
    """

    conn_name_attr = "flink_sql_gateway_conn_id"
    default_conn_name = "flink_sql_gateway_default"
    conn_type = "flink_sql_gateway"
    hook_name = "Flink SQL Gateway"
    default_port = 8083
    service_name = "Flink SQL Gateway"

    def __init__(
        self, flink_sql_gateway_conn_id: str = default_conn_name, retry_limit: int = 4, retry_delay: float = 0.5
    ):
        super().__init__(flink_sql_gateway_conn_id, retry_limit, retry_delay)

    def test_connection(self) -> tuple[bool, str]:
        """Cheap and bounded: one ``GET /v2/info``."""
        try:
            info = self._call(_Call("GET", f"{API}/info", retry=False))
            return True, f"Connected to {info.get('productName')} {info.get('version')} SQL Gateway at {self.base_url}"
        except Exception as exc:  # noqa: BLE001 - the UI wants a message, not a traceback
            return False, f"Cannot reach the Flink SQL Gateway: {exc}"

    # ------------------------------------------------------------------ sessions and operations
    def open_session(self, properties: dict[str, str] | None = None, name: str | None = None) -> str:
        """Open a session whose configuration is ``properties`` (e.g. ``pipeline.name``); return its handle."""
        body: dict[str, Any] = {"properties": dict(properties or {})}
        if name:
            body["sessionName"] = name
        return self._call(_Call("POST", f"{API}/sessions", json=body, parse=lambda b: b["sessionHandle"]))

    def close_session(self, session: str) -> None:
        """Close a session; jobs its statements submitted keep running."""
        self._call(_Call("DELETE", f"{API}/sessions/{session}"))

    def submit_statement(self, session: str, statement: str, execution_config: dict[str, str] | None = None) -> str:
        """Start a statement; return its operation handle (the statement runs asynchronously)."""
        body: dict[str, Any] = {"statement": statement}
        if execution_config:
            body["executionConfig"] = execution_config
        return self._call(_Call("POST", f"{API}/sessions/{session}/statements", json=body,
                                parse=lambda b: b["operationHandle"]))

    def get_operation_status(self, session: str, operation: str) -> OperationStatus:
        return self._call(_Call("GET", f"{API}/sessions/{session}/operations/{operation}/status",
                                parse=lambda b: OperationStatus(b["status"])))

    def fetch_results(self, session: str, operation: str, token: int = 0, *, retry: bool = True) -> dict:
        """One page of an operation's results (raw JSON, ``rowFormat=JSON``)."""
        return self._call(_Call("GET", f"{API}/sessions/{session}/operations/{operation}/result/{token}",
                                params={"rowFormat": "JSON"}, retry=retry))

    def cancel_operation(self, session: str, operation: str) -> None:
        self._call(_Call("POST", f"{API}/sessions/{session}/operations/{operation}/cancel"))

    # ------------------------------------------------------------------ statements
    def execute(
        self, session: str, statement: str, *, execution_config: dict[str, str] | None = None,
        timeout: float = 300, poll_interval: float = 0.2, max_rows: int = 10_000,
    ) -> StatementResult:
        """Run one statement to completion and return its result (at most ``max_rows`` rows of a query).

        For an ``INSERT`` the gateway finishes once the job is *submitted*; the result holds its job id.
        Raises :class:`FlinkSqlError` with Flink's reason if the statement fails, :class:`FlinkWaitTimeout`
        (after cancelling the operation) if it does not finish within ``timeout`` seconds.
        """
        operation = self.submit_statement(session, statement, execution_config)
        deadline = time.monotonic() + timeout
        while True:
            status = self.get_operation_status(session, operation)
            if status.is_terminal:
                break
            if time.monotonic() > deadline:
                self.cancel_operation(session, operation)
                raise FlinkWaitTimeout(f"SQL statement still {status.value} after {timeout:.0f}s: {statement[:200]}")
            time.sleep(poll_interval)
        if status is not OperationStatus.FINISHED:
            raise self._statement_failed(session, operation, statement, status)
        return self._collect(session, operation, statement, deadline, poll_interval, max_rows)

    def _collect(
        self, session: str, operation: str, statement: str, deadline: float, poll_interval: float, max_rows: int
    ) -> StatementResult:
        """Follow the result pages to the end (EOS), ``max_rows`` rows, or the deadline."""
        columns: list[str] = []
        rows: list[list[Any]] = []
        job_id, kind, token = None, "", 0
        while True:
            body = self.fetch_results(session, operation, token)
            results = body.get("results") or {}
            columns = [c.get("name") for c in results.get("columns") or []] or columns
            rows.extend(row.get("fields") for row in results.get("data") or [])
            job_id = job_id or body.get("jobID")
            kind = body.get("resultKind") or kind
            next_uri = body.get("nextResultUri")
            if body.get("resultType") == "EOS" or not next_uri or len(rows) >= max_rows:
                break
            if time.monotonic() > deadline:
                self.log.warning("Stopped reading results of %r at the deadline (%d rows)", statement[:80], len(rows))
                break
            if body.get("resultType") == "NOT_READY" or not results.get("data"):
                time.sleep(poll_interval)
            token = int(next_uri.split("/result/")[1].split("?")[0])
        if job_id is None and columns == ["job id"] and rows:
            job_id = rows[0][0]
        return StatementResult(statement, kind, job_id, columns, rows[:max_rows])

    def _statement_failed(self, session: str, operation: str, statement: str, status: OperationStatus) -> FlinkSqlError:
        cause = None
        if status is OperationStatus.ERROR:
            # The reason only comes back as the body of the (500) answer to fetching the result.
            try:
                self.fetch_results(session, operation, retry=False)
            except FlinkApiError as exc:
                cause = sql_error_cause(exc.detail or exc.body)
        cause = cause or f"the operation ended {status.value}"
        first_line = statement.strip().splitlines()[0][:200] if statement.strip() else ""
        return FlinkSqlError(
            f"Flink SQL statement failed: {cause}\nStatement: {first_line}\nTo fix this, correct the statement "
            "(the line/column above count from its first line) or check the tables and connectors it uses.",
            statement=statement, cause=cause,
        )

    def run_statements(
        self, statements: list[str] | str, *, properties: dict[str, str] | None = None,
        session_name: str | None = None, timeout: float = 300,
    ) -> list[StatementResult]:
        """Run statements in order in one fresh session (closed afterwards); return each one's result.

        ``statements`` may be one script (split with :func:`split_statements`). The first failing statement
        raises :class:`FlinkSqlError`; statements after it do not run.
        """
        stmts = split_statements(statements) if isinstance(statements, str) else list(statements)
        if not stmts:
            raise FlinkSqlError("No SQL statement to run. To fix this, pass at least one statement.", statement="")
        session = self.open_session(properties, session_name)
        try:
            return [self.execute(session, s, timeout=timeout) for s in stmts]
        finally:
            try:
                self.close_session(session)
            except Exception as exc:  # noqa: BLE001 - a leaked session expires on the gateway; the result stands
                self.log.warning("Could not close SQL Gateway session %s: %s", session, exc)
