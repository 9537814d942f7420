"""The adversarial suite's harness: a fake cluster, and a race of real waits over it.

Every case states a hostile input and asserts the two things that matter: **no early fire** (a wait never
succeeds before its condition holds) and **no effect on other waiters** (the bystander's wait, on the same
cluster, loop and shared fetches, still ends exactly as it should). Results are collected for the table in
docs/guarantees.md (``RTML_ADVERSARIAL_REPORT=path`` writes them as JSON lines).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_cluster import T, FakeCluster, FakeServer  # noqa: E402

from airflow_rtml.triggers.watermark import FlinkWatermarkTrigger  # noqa: E402

REPORT = os.environ.get("RTML_ADVERSARIAL_REPORT")


@pytest.fixture
def cluster(monkeypatch):
    c = FakeCluster()
    server = FakeServer(c)
    c.url = server.url
    port = server.url.rsplit(":", 1)[1]
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_ADV", f"flink-rest://127.0.0.1:{port}?watermark_source=rest&timeout=2")
    monkeypatch.setenv("AIRFLOW_CONN_FLINK_ADV_REPORTER", json.dumps({
        "conn_type": "flink_rest", "host": "127.0.0.1", "port": int(port),
        "extra": {"metrics_reporter_urls": [f"{server.url}/metrics"], "timeout": 2}}))
    yield c
    server.stop()


def wait_on(job: str, *, conn: str = "flink_adv", threshold_ms: int = T, **kw) -> FlinkWatermarkTrigger:
    return FlinkWatermarkTrigger(threshold_ms=threshold_ms, job_name=job, flink_conn_id=conn,
                                 poll_interval=kw.pop("poll_interval", 0.1), **kw)


def race(triggers: dict[str, FlinkWatermarkTrigger], script: list[tuple[float, Callable[[], None]]],
         duration: float) -> dict[str, dict | None]:
    """Run every trigger's real ``run()`` in one event loop (so they share the overview and scrape caches, as
    in a triggerer) for ``duration`` seconds, applying ``script`` (at t seconds, call fn); return each
    trigger's first event payload, or None if it was still waiting at the end."""
    results: dict[str, dict | None] = {name: None for name in triggers}

    async def one(name: str, trigger: FlinkWatermarkTrigger) -> None:
        try:
            async with aclosing(trigger.run()) as events:
                async for event in events:
                    results[name] = dict(getattr(event, "payload", None) or {"status": "success"})
                    return
        except Exception as exc:  # noqa: BLE001 - a trigger that crashed is an outcome, never "still waiting"
            results[name] = {"status": "raised", "reason": f"{type(exc).__name__}: {exc}"[:300]}

    async def main() -> None:
        tasks = [asyncio.create_task(one(n, t)) for n, t in triggers.items()]
        start = time.monotonic()
        for at, fn in sorted(script, key=lambda s: s[0]):
            await asyncio.sleep(max(0.0, at - (time.monotonic() - start)))
            fn()
        await asyncio.sleep(max(0.0, duration - (time.monotonic() - start)))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    return results


def record(case: str, victim: dict | None, bystander_ok: bool) -> None:
    """Append one result row (case, whether the victim fired early, whether the bystander was affected)."""
    if REPORT:
        with open(REPORT, "a") as fh:
            fh.write(json.dumps({"case": case, "early": bool(victim and victim.get("status") == "success"),
                                 "bystander_affected": not bystander_ok,
                                 "victim": (victim or {}).get("status", "waiting"),
                                 "reason": (victim or {}).get("reason")}) + "\n")


def check(case: str, results: dict[str, dict | None], expected: str = "waiting", threshold_ms: int = T) -> dict | None:
    """The suite's two assertions on a race of ``victim`` and ``bystander``: the victim never fired early, and
    the bystander fired exactly at its crossing. ``expected``: ``"waiting"`` (the victim still waits),
    ``"failed:<reason>"`` (it failed with that reason) or ``"any"`` (anything but a success). Returns the
    victim's event."""
    victim, bystander = results["victim"], results["bystander"]
    bystander_ok = bystander is not None and bystander["status"] == "success" and bystander["progress_ms"] == threshold_ms
    record(case, victim, bystander_ok)
    assert not (victim and victim["status"] == "success"), f"{case}: the victim fired early: {victim}"
    assert bystander_ok, f"{case}: the bystander was affected: {bystander}"
    if expected == "waiting":
        assert victim is None, f"{case}: the victim should still wait, got {victim}"
    elif expected.startswith("failed:"):
        reason = expected.split(":", 1)[1]
        assert victim is not None and victim["status"] == "failed" and victim["reason"] == reason, (case, victim)
    return victim
