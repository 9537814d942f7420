"""The board's arithmetic: lag, rate over the history, ETA of a wait at the current rate, stall."""

from __future__ import annotations

import asyncio

from airflow_rtml.plugins.board import OpenWait, ProgressCache, board
from airflow_rtml.progress import Observation

KEY = ("flink", "flink_default", "job", None, None)


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


def test_a_stream_that_does_not_move_for_a_minute_is_stalled_and_has_no_eta():
    """Stalled: progress unchanged over STALL_AFTER_S of observation; a shorter look says nothing."""
    clock = iter([1000.0, 1030.0, 1059.0, 1061.0])

    async def read(_key):
        return Observation(at=next(clock), state="RUNNING", progress_ms=5)

    cache = ProgressCache(read, max_age=0)
    wait = OpenWait(dag_id="d", run_id="r", task_id="t", map_index=-1, waiting_since=None, target_ms=10, stream=KEY)
    looks = [asyncio.run(board([wait], cache, now=1100.0))["streams"][0] for _ in range(4)]
    assert [s["stalled"] for s in looks] == [False, False, False, True], [s["unchanged_s"] for s in looks]
    assert looks[-1]["unchanged_s"] == 61.0 and looks[-1]["waits"][0]["eta_s"] is None


def test_a_stream_that_moved_recently_is_not_stalled_and_an_ended_one_is_ended():
    readings = iter([(1000.0, 5), (1050.0, 7), (1120.0, 7), (1130.0, 2**63 - 1), (1300.0, 2**63 - 1)])

    async def read(_key):
        at, progress = next(readings)
        return Observation(at=at, state="RUNNING", progress_ms=progress)

    cache = ProgressCache(read, max_age=0)
    wait = OpenWait(dag_id="d", run_id="r", task_id="t", map_index=-1, waiting_since=None, target_ms=10, stream=KEY)
    looks = [asyncio.run(board([wait], cache, now=1300.0))["streams"][0] for _ in range(5)]
    assert looks[2]["stalled"] and looks[2]["unchanged_s"] == 70.0  # unchanged since 1050
    assert [s["ended"] for s in looks] == [False, False, False, True, True]
    assert not looks[4]["stalled"] and looks[4]["lag_ms"] is None  # an ended input is not a stall
    assert all(p[1] != 2**63 - 1 for p in looks[4]["history"])  # the chart keeps its scale


def test_a_kafka_stream_shows_its_topic_and_producers():
    key = ("kafka", "kafka_default", "rtml.progress", "samples", ("backfill", "flink:j"))

    async def read(k):
        assert k == key
        return Observation(at=1000.0, state="RUNNING", progress_ms=40,
                           detail={"topic": "rtml.progress", "sources": {"backfill": 40, "flink:j": 90}, "malformed": 2})

    wait = OpenWait.from_trigger(dag_id="d", run_id="r", task_id="t", map_index=-1, waiting_since=None,
                                 kwargs={"topic": "rtml.progress", "stream": "samples", "threshold_ms": 99,
                                         "expected_sources": ["flink:j", "backfill"], "kafka_config_id": None},
                                 classpath="airflow_rtml.triggers.kafka.KafkaWatermarkTrigger")
    assert wait.stream == key
    [stream] = asyncio.run(board([wait], ProgressCache(read, max_age=0), now=1000.0))["streams"]
    assert (stream["source"], stream["stream"], stream["topic"], stream["conn_id"]) == \
        ("kafka", "samples", "rtml.progress", "kafka_default")
    assert stream["sources"] == {"backfill": 40, "flink:j": 90} and stream["malformed"] == 2
    assert stream["expected_sources"] == ["backfill", "flink:j"] and "job_id" not in stream
    assert stream["waits"][0]["target_ms"] == 99


def test_windows_are_shown_under_their_stream():
    async def read(_key):
        return Observation(at=1000.0, state="RUNNING", progress_ms=5)

    wait = OpenWait(dag_id="d", run_id="r", task_id="t", map_index=-1, waiting_since=None, target_ms=10, stream=KEY)
    windows = {"job": [{"window_start_ms": 0, "window_end_ms": 60_000, "runs": []}], "other": [{}]}
    [stream] = asyncio.run(board([wait], ProgressCache(read, max_age=0), now=1000.0, windows=windows))["streams"]
    assert stream["windows"] == windows["job"]


def test_a_wait_started_in_the_triggerer_is_counted_not_read_as_a_stream_named_by_its_template():
    """start_from_trigger: the trigger row keeps the task's arguments unrendered ('{{ params.job_name }}'); the
    page must not read (nor list) a stream of that name."""
    reads = []

    async def read(key):
        reads.append(key)
        return Observation(at=1000.0, state="RUNNING", progress_ms=10_000)

    templated = OpenWait(dag_id="d", run_id="r", task_id="t", map_index=-1, waiting_since=990.0, target_ms=None,
                         stream=("flink", "flink_default", "{{ params.job_name }}", None, None))
    plain = OpenWait(dag_id="d", run_id="r", task_id="u", map_index=-1, waiting_since=990.0, target_ms=1,
                     stream=KEY)
    out = asyncio.run(board([templated, plain], ProgressCache(read, max_age=0), now=1000.0))
    assert [s["job_name"] for s in out["streams"]] == ["job"] and out["unrendered_waits"] == 1
    assert reads == [KEY]
