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
