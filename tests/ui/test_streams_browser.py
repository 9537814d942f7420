"""The Streams view in a real headless browser, in the real local Airflow: a running Flink job, an open wait on
it deferred in the real triggerer; the page must render the job's state and watermark as Flink's REST API
gives them, and the wait's target as its trigger carries it. Screenshots go to docs/img/ (see docs/ui.md)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
from support import wait_for

DAG_ID = "stream_wait_results"
MINUTE = 60_000
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.mark.timeout(420)
def test_the_streams_page_shows_the_job_and_the_open_wait_as_rest_does(stack, job, hook, in_browser):
    from airflow_rtml.streams.flink import read_progress

    now = int(time.time() * 1000)
    job.produce(now)
    assert job.wait_progress(hook, now) == now
    target = now + 30 * MINUTE  # never reached while the test runs: the wait stays open
    client = httpx.Client(base_url=f"{stack.cfg.airflow_url}/api/v2", timeout=30)
    run_id = f"ui-{uuid.uuid4().hex[:8]}"
    try:
        wait_for("the example DAG to be parsed", lambda: client.get(f"/dags/{DAG_ID}").status_code == 200, 120, 2)
        assert client.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200
        conf = {"job_name": job.name, "deferred_target_ms": target, "reached_target_ms": now}
        resp = client.post(f"/dags/{DAG_ID}/dagRuns", json={"dag_run_id": run_id, "logical_date": None, "conf": conf})
        assert resp.status_code == 200, resp.text
        ti_url = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/wait_in_triggerer"
        wait_for("the wait to be deferred", lambda: client.get(ti_url).json()["state"] == "deferred", 180)

        rest = read_progress(hook, job_name=job.name)
        # The task's extra link, as the Airflow UI gets it: computed on the worker when the wait deferred.
        links = client.get(f"{ti_url}/links").json()["extra_links"]
        stream_link = links["Stream progress"]
        assert stream_link.startswith(f"/rtml/?stream={job.name}&dag_id={DAG_ID}&run_id={run_id}"), links

        def look(browser) -> dict:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{stack.cfg.airflow_url}/rtml/")
            section = page.locator(f'section.stream[data-stream="{job.name}"]')
            section.wait_for(timeout=30_000)
            row = section.locator('tr.wait[data-task="wait_in_triggerer"]')
            row.wait_for(timeout=30_000)
            seen = {"state": section.locator('[data-field="state"]').inner_text(),
                    "job_id": section.locator('[data-field="job_id"]').inner_text(),
                    "watermark_ms": int(section.locator('[data-field="watermark"]').get_attribute("data-ms")),
                    "target_ms": int(row.locator('[data-field="target"]').get_attribute("data-ms")),
                    "row": row.inner_text()}
            IMG.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(IMG / "streams-view.png"), full_page=True)
            # The same page inside Airflow's UI, from its navigation (the plugin's external view).
            page.goto(f"{stack.cfg.airflow_url}/plugin/streams")
            page.frame_locator("iframe").locator(f'section.stream[data-stream="{job.name}"]').wait_for(timeout=30_000)
            page.screenshot(path=str(IMG / "streams-view-in-airflow.png"))
            # The "Stream progress" link: this stream outlined and first, this task's wait highlighted.
            page.goto(f"{stack.cfg.airflow_url}{stream_link}")
            page.locator("section.stream.focus").wait_for(timeout=30_000)
            seen["focused_stream"] = page.locator("section.stream.focus").get_attribute("data-stream")
            seen["first_stream"] = page.locator("section.stream").first.get_attribute("data-stream")
            seen["focused_tasks"] = [r.get_attribute("data-task") for r in page.locator("tr.wait.focus").all()]
            # A link to a stream without an open wait says so, and lists the others.
            page.goto(f"{stack.cfg.airflow_url}/rtml/?stream=no-such-stream&task_id=t")
            page.locator("#focus-note:not([hidden])").wait_for(timeout=30_000)
            seen["note"] = page.locator("#focus-note").inner_text()
            page.close()
            return seen

        seen = in_browser(look)
        assert seen["state"] == rest.state == "RUNNING", seen
        assert seen["job_id"] == rest.job_id, seen
        assert seen["watermark_ms"] == rest.progress_ms == now, seen
        assert seen["target_ms"] == target - 1, seen  # the threshold: the window ending at target is closed
        assert DAG_ID in seen["row"] and run_id in seen["row"], seen
        assert seen["focused_stream"] == seen["first_stream"] == job.name, seen
        assert seen["focused_tasks"] == ["wait_in_triggerer"], seen
        assert seen["note"].startswith("No open wait on no-such-stream now"), seen
    finally:
        client.patch(f"/dags/{DAG_ID}/dagRuns/{run_id}", json={"state": "failed"})
        client.patch(f"/dags/{DAG_ID}", json={"is_paused": True})
        client.close()
