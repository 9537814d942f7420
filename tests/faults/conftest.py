"""The fault suite: each test injects one real fault into the local stack by PID and reports what it checked.

Every test calls the ``fault_report`` fixture once with counts it *measured*: records or signals lost, windows or
fires duplicated, fires before their condition held. At the end of the session the rows are written to
``.rtml/faults/results.json`` and ``.rtml/faults/results.md`` (the table of ``docs/faults.md`` comes from there)
and printed. A row with a non-zero count is also a failed assertion in its test: the table never hides one.
"""

from __future__ import annotations

import json
import time

import pytest

_ROWS: list[dict] = []


@pytest.fixture
def fault_report(request):
    def record(fault: str, checked: str, *, lost: int, duplicated: int, early: int, **measured) -> None:
        _ROWS.append({"test": request.node.name, "fault": fault, "checked": checked, "lost": lost,
                      "duplicated": duplicated, "early": early, **measured})
        assert (lost, duplicated, early) == (0, 0, 0), _ROWS[-1]

    return record


def table(rows: list[dict]) -> str:
    lines = ["| fault | what was checked | lost | duplicated | early | measured |", "|---|---|---|---|---|---|"]
    for r in rows:
        extra = ", ".join(f"{k} {v}" for k, v in r.items()
                          if k not in ("test", "fault", "checked", "lost", "duplicated", "early"))
        lines.append(f"| {r['fault']} | {r['checked']} | {r['lost']} | {r['duplicated']} | {r['early']} | {extra} |")
    return "\n".join(lines) + "\n"


def pytest_sessionfinish(session, exitstatus):
    if not _ROWS:
        return
    from airflow_rtml.local.config import StackConfig

    out = StackConfig.from_env().home / "faults"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (out / "results.json").write_text(json.dumps({"date": stamp, "rows": _ROWS}, indent=2) + "\n")
    (out / "results.md").write_text(f"Fault suite, {stamp} (`pytest tests/faults`):\n\n" + table(_ROWS))


def pytest_terminal_summary(terminalreporter):
    if _ROWS:
        terminalreporter.write_sep("-", "fault suite")
        terminalreporter.write(table(_ROWS))
