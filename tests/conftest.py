"""Shared fixtures. Integration tests run against the real embedded stack (never a mock of it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The stack's state folder and DAGs belong to this checkout, whatever the current directory.
os.environ.setdefault("RTML_PROJECT_DIR", str(REPO))

from airflow_rtml.local.config import StackConfig  # noqa: E402
from airflow_rtml.local.stack import LocalStack  # noqa: E402


def pytest_collection_modifyitems(items):
    # The fault suite kills the stack's components: it runs last, so no other test runs on a stack just healed.
    items.sort(key=lambda item: "tests/faults/" in str(item.fspath))
    for item in items:
        if any(f"tests/{suite}" in str(item.fspath) for suite in ("integration", "system", "faults")):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack_config() -> StackConfig:
    return StackConfig.from_env()


@pytest.fixture
def stack(stack_config) -> LocalStack:
    """The embedded stack, up and healthy. Idempotent: a running stack is reused (a health check only).

    If a component cannot start, this raises with the component's log tail: the test fails, loudly.
    """
    s = LocalStack(stack_config, progress=lambda msg: print(msg, flush=True))
    s.up(install=True)
    return s


@pytest.fixture
def hook(stack, monkeypatch):
    """A FlinkRestHook on the local cluster; the process env points Airflow's default connections (Flink REST,
    SQL Gateway) and the PythonDriver jar at the local stack, as the stack does for its own Airflow."""
    from airflow_rtml.hooks.flink import FlinkRestHook

    ports = stack.cfg.ports
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_DEFAULT", f"flink-rest://127.0.0.1:{ports.flink_rest}")
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_SQL_GATEWAY_DEFAULT", f"flink-sql-gateway://127.0.0.1:{ports.flink_sql_gateway}")
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_REPORTER",
                       f"flink-rest://127.0.0.1:{ports.flink_rest}?metrics_reporter_port={ports.flink_tm_metrics}")
    monkeypatch.setenv("RTML_FLINK_PYTHON_JAR", str(stack.cfg.flink_python_jar))
    return FlinkRestHook()


@pytest.fixture
def job(stack, hook):
    """A running event-time Flink job (tests/event_time.py) whose watermark the test drives; cancelled after."""
    from event_time import start_event_time_job
    from support import cancel_jobs_named

    j = start_event_time_job(stack)
    yield j
    cancel_jobs_named(hook, j.name)
