"""The board's arithmetic: lag, rate over the history, ETA of a wait at the current rate, stall."""

from __future__ import annotations

import asyncio

from airflow_rtml.plugins.board import OpenWait, ProgressCache, board
from airflow_rtml.progress import Observation

KEY = ("flink_default", "job", None, None)


def test_eta_is_the_distance_to_the_target_at_the_measured_rate():
    readings = iter([Observation(at=1000.0, state="RUNNING", progress_ms=10_000),
                     Observation(at=1010.0, state="RUNNING", progress_ms=30_000)])  # 2 event-s per s

    async def read(_key):
        return next(readings)

    cache = ProgressCache(read, max_age=0)
    wait = OpenWait(dag_id="d", run_id="r", task_id="t", map_index=-1, waiting_since=990.0, target_ms=50_000,
                    stream=KEY)
    asyncio.run(board([wait], cache, now=1000.0))
    [stream] = asyncio.run(board([wait], cache, now=1010.0))["streams"]
    assert stream["rate_ms_per_s"] == 2000 and not stream["stalled"]
    assert stream["lag_ms"] == 1_010_000 - 30_000
    [row] = stream["waits"]
    assert row["eta_s"] == 10.0 and row["waiting_s"] == 20.0


def test_a_stream_that_does_not_move_is_stalled_and_has_no_eta():
    async def read(_key):
        return Observation(at=asyncio.get_running_loop().time(), state="RUNNING", progress_ms=5)

    cache = ProgressCache(read, max_age=0)
    wait = OpenWait(dag_id="d", run_id="r", task_id="t", map_index=-1, waiting_since=None, target_ms=10, stream=KEY)
    asyncio.run(board([wait], cache))
    asyncio.run(board([wait], cache))
    [stream] = asyncio.run(board([wait], cache))["streams"]
    assert stream["stalled"] and stream["waits"][0]["eta_s"] is None


def test_a_wait_started_in_the_triggerer_is_counted_not_read_as_a_stream_named_by_its_template():
    """start_from_trigger: the trigger row keeps the task's arguments unrendered ('{{ params.job_name }}'); the
    page must not read (nor list) a stream of that name."""
    reads = []

    async def read(key):
        reads.append(key)
        return Observation(at=1000.0, state="RUNNING", progress_ms=10_000)

    templated = OpenWait(dag_id="d", run_id="r", task_id="t", map_index=-1, waiting_since=990.0, target_ms=None,
                         stream=("flink_default", "{{ params.job_name }}", None, None))
    plain = OpenWait(dag_id="d", run_id="r", task_id="u", map_index=-1, waiting_since=990.0, target_ms=1,
                     stream=KEY)
    out = asyncio.run(board([templated, plain], ProgressCache(read, max_age=0), now=1000.0))
    assert [s["job_name"] for s in out["streams"]] == ["job"] and out["unrendered_waits"] == 1
    assert reads == [KEY]
