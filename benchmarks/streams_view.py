"""The Streams view's cost (issue 15): page load with 20 streams and 200 open waits, and the cluster requests per
minute with 1 and 5 browser tabs open, cached (ours) against the same page reading the cluster on every request
(the baseline: ``max_age=0``).

The real app (``airflow_rtml.plugins.app``: readers, cache, page) served by uvicorn on 127.0.0.1:18095, the real
``FlinkStreamReader`` on the REST source, against ``fake_jobmanager.py`` with 20 RUNNING jobs (its own process,
counting requests). Stand-ins: the 200 open waits (normally read from Airflow's DB; 10 per job) and the login
(Airflow's ``get_user``). Tabs are Debian's chromium under Playwright, each polling every 5 s as the page does.

    .venv/bin/python benchmarks/streams_view.py      # ~3 min -> benchmarks/results/streams_view.json
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
JM_PORT, APP_PORT = 18094, 18095
JOBS, WAITS = 20, 200
WINDOW_S = 30.0


def counted() -> int:
    import httpx

    return httpx.get(f"http://127.0.0.1:{JM_PORT}/__count").json()["total"]


def serve(max_age: float):
    import uvicorn
    from airflow.api_fastapi.common.db.common import _get_session
    from airflow.api_fastapi.core_api.security import get_user

    from airflow_rtml.plugins.app import FlinkReaders, create_app
    from airflow_rtml.plugins.board import OpenWait

    now = time.time()
    waits = [OpenWait.from_trigger(dag_id=f"dag_{i % JOBS}", run_id=f"run_{i}", task_id="wait", map_index=-1,
                                   waiting_since=now - i, kwargs={"flink_conn_id": "flink_bench",
                                                                  "job_name": f"bench-job-{i % JOBS}",
                                                                  "threshold_ms": int(now * 1000) + 60_000})
             for i in range(WAITS)]
    app = create_app(FlinkReaders(poll_interval=5.0), waits=lambda _s, _d: waits, max_age=max_age,
                     windows=lambda *_: {})
    app.dependency_overrides[get_user] = lambda: object()
    app.dependency_overrides[_get_session] = lambda: None
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=APP_PORT, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server


def tabs_requests_per_min(browser, n: int) -> float:
    pages = [browser.new_page() for _ in range(n)]
    for p in pages:
        p.goto(f"http://127.0.0.1:{APP_PORT}/")
    time.sleep(6)  # every tab has loaded and polled once
    before = counted()
    time.sleep(WINDOW_S)
    after = counted()
    for p in pages:
        p.close()
    return (after - before) * 60 / WINDOW_S


def page_loads(browser, runs: int = 5) -> list[float]:
    times = []
    for _ in range(runs):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        t0 = time.perf_counter()
        page.goto(f"http://127.0.0.1:{APP_PORT}/")
        page.wait_for_function(f"document.querySelectorAll('tr.wait').length === {WAITS}", timeout=60_000)
        times.append(time.perf_counter() - t0)
        page.close()
    return times


def main() -> None:
    import airflow.api_fastapi.app as api_app
    from playwright.sync_api import sync_playwright

    class AllReadable:
        def get_authorized_dag_ids(self, *, user, method):
            return {f"dag_{i}" for i in range(JOBS)}

    api_app.get_auth_manager = lambda: AllReadable()
    os.environ["AIRFLOW_CONN_FLINK_BENCH"] = f"flink-rest://127.0.0.1:{JM_PORT}?watermark_source=rest"
    jm = subprocess.Popen([sys.executable, str(HERE / "fake_jobmanager.py"), "--port", str(JM_PORT), "--jobs",
                           str(JOBS)], stdout=subprocess.PIPE, text=True)
    try:
        assert jm.stdout.readline().startswith("READY")
        results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                     "load_before": os.getloadavg()},
                         "streams": JOBS, "open_waits": WAITS, "window_s": WINDOW_S}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
            for label, max_age in (("cached", 5.0), ("uncached_baseline", 0.0)):
                server = serve(max_age)
                loads = page_loads(browser)
                row = {"max_age_s": max_age, "page_load_s": {"first": round(loads[0], 3),
                                                             "median": round(statistics.median(loads), 3),
                                                             "runs": [round(x, 3) for x in loads]}}
                for n in (1, 5):
                    row[f"cluster_requests_per_min_{n}_tabs"] = round(tabs_requests_per_min(browser, n), 1)
                results[label] = row
                server.should_exit = True
                time.sleep(1)
            browser.close()
        c, b = results["cached"], results["uncached_baseline"]
        results["ratio_5_tabs_baseline_vs_cached"] = round(
            b["cluster_requests_per_min_5_tabs"] / max(c["cluster_requests_per_min_5_tabs"], 1), 1)
        results["cached_5_tabs_vs_1_tab"] = round(
            c["cluster_requests_per_min_5_tabs"] / max(c["cluster_requests_per_min_1_tabs"], 1), 2)
        out = HERE / "results" / "streams_view.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))
    finally:
        jm.terminate()
        jm.wait(10)


if __name__ == "__main__":
    main()
