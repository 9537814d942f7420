"""The watermark wait's decisions on snapshots (pure), the trigger's serialization and shared-stream key, the
deferred fast path, the skew rule and vertex selection. The same code runs against real Flink in
tests/integration/test_watermark_trigger.py."""

from __future__ import annotations

import asyncio
import importlib

import pytest
from airflow.triggers.base import TaskSuccessEvent, TriggerEvent

from airflow_rtml.exceptions import (
    TRANSIENT,
    FailureReason,
    FlinkCheckpointingDisabled,
    FlinkConfigurationError,
    FlinkJobFailed,
    StreamStalled,
)
from airflow_rtml.hooks.flink import JobDetail, JobState, Vertex
from airflow_rtml.operators.streams import skew_ms
from airflow_rtml.progress import END_OF_STREAM, NO_WATERMARK, Observation
from airflow_rtml.triggers.flink import raise_for_event
from airflow_rtml.triggers.watermark import FlinkWatermarkTrigger, ProgressWait, pick_vertices, sink_vertices

END = 1_767_265_200_000  # 2026-01-01T11:00:00Z


_KINDS = {"unreachable": TRANSIENT, "not_found": FailureReason.JOB_NOT_FOUND, "api": FailureReason.API_ERROR}


def snap(at: float, progress: int | None, state: str | None = "RUNNING", **kw) -> Observation:
    """An observation at ``at`` (observer's epoch s and monotonic s alike); ``attempt`` defaults to one attempt
    seen since 0, so commit-aware tests only state what they vary."""
    if "error_kind" in kw:
        kw["error_kind"] = _KINDS.get(kw["error_kind"], kw["error_kind"])
    kw.setdefault("attempt", "a1")
    kw.setdefault("attempt_since", 0.0)
    kw.setdefault("job_id", "j1")
    return Observation(at=at, mono=at, state=state, progress_ms=progress, **kw)


def wait(**kw) -> ProgressWait:
    args = {"stream": "samples", "threshold_ms": END - 1, "commit_aware": False, "stall_timeout": None,
            "deadline": None, "by_name": True, "now": 0.0}
    return ProgressWait(**{**args, **kw})


def test_boundary_end_minus_two_waits_end_minus_one_fires():
    w = wait()
    assert all(w.evaluate(snap(t, END - 2)) is None for t in range(10))
    event = w.evaluate(snap(10, END - 1))
    assert event["status"] == "success" and event["progress_ms"] == END - 1 and event["threshold_ms"] == END - 1


def test_unknown_and_no_watermark_never_fire():
    w = wait(threshold_ms=NO_WATERMARK + 1)
    assert w.evaluate(snap(1, None)) is None
    assert w.evaluate(snap(2, NO_WATERMARK)) is None


def cp(at: float, progress: int | None, jm: int, trigger_ms: int | None, cid: int | None = None, **kw) -> Observation:
    """A commit-aware observation: the JobManager's clock ``jm`` and its latest completed checkpoint."""
    return snap(at, progress, jobmanager_ms=jm, checkpoint_completed_trigger_ms=trigger_ms,
                checkpoint_completed_id=cid, **kw)


def test_a_commit_of_the_same_attempt_fires_and_a_lower_progress_does_not_undo_the_crossing():
    w = wait(commit_aware=True)
    assert w.evaluate(cp(1.0, END, jm=10_000, trigger_ms=500)) is None  # crossed; an old checkpoint only
    assert w.evaluate(cp(2.0, END - 60_000, jm=11_000, trigger_ms=10_500, cid=7)) is None  # commit, unconfirmed
    event = w.evaluate(cp(3.0, END - 60_000, jm=12_000, trigger_ms=10_500, cid=7))  # same attempt: confirmed
    assert event["status"] == "success" and event["progress_ms"] == END and event["checkpoint_id"] == 7
    assert event["crossed_at_ms"] == 1000


def test_commit_aware_compares_flink_times_with_flink_times_only():
    # The JobManager's clock is 1 h behind the observer's: a checkpoint triggered at JM 5_001 > the crossing's
    # JM time 5_000 counts although the observer's clock says 3_600_007 s; one at JM 5_000 (equal) does not.
    w = wait(commit_aware=True)
    assert w.evaluate(cp(3_600_005.0, END, jm=5_000, trigger_ms=4_999, cid=1)) is None
    assert w.evaluate(cp(3_600_006.0, END, jm=6_000, trigger_ms=5_000, cid=2)) is None  # not after: equal
    assert w.evaluate(cp(3_600_007.0, END, jm=7_000, trigger_ms=5_001, cid=3)) is None  # after: awaiting confirmation
    assert w.evaluate(cp(3_600_008.0, END, jm=8_000, trigger_ms=5_001, cid=3))["status"] == "success"


def test_commit_aware_needs_flinks_checkpoint_numbering_to_agree_with_its_clock():
    # Red team: the JobManager's clock set back (an NTP step) made a checkpoint triggered before the crossing look
    # "after" it. The crossing also records the highest checkpoint id triggered by then: 5 does not count.
    w = wait(commit_aware=True)
    assert w.evaluate(cp(1.0, END, jm=600_000, trigger_ms=None, checkpoint_triggered_id=5)) is None  # crossing
    assert w.evaluate(cp(2.0, END, jm=1_000, trigger_ms=700_000, cid=5)) is None  # clock stepped back 10 min
    assert w.evaluate(cp(3.0, END, jm=2_000, trigger_ms=700_000, cid=5)) is None  # still checkpoint 5
    assert w.evaluate(cp(4.0, END, jm=3_000, trigger_ms=700_001, cid=6)) is None  # 6: after by id and by time
    assert w.evaluate(cp(5.0, END, jm=4_000, trigger_ms=700_001, cid=6))["checkpoint_id"] == 6


def test_commit_aware_restart_after_the_crossing_needs_the_restored_attempt_to_cross_and_commit_again():
    # Issue 10 finding 2: the first checkpoint after a restore from a checkpoint taken *before* the crossing
    # counted as "committed". The attempt changed: the crossing is dropped.
    w = wait(commit_aware=True)
    assert w.evaluate(cp(1.0, END, jm=1_000, trigger_ms=500)) is None  # crossing, attempt a1
    restored = dict(attempt="a2", attempt_since=2.0)
    assert w.evaluate(cp(2.0, END - 60_000, jm=2_000, trigger_ms=1_500, cid=8, **restored)) is None
    assert w.evaluate(cp(3.0, END - 60_000, jm=3_000, trigger_ms=2_500, cid=9, **restored)) is None
    assert w.evaluate(cp(4.0, END - 1, jm=4_000, trigger_ms=3_500, cid=10, **restored)) is None  # crosses again
    assert w.evaluate(cp(5.0, END - 1, jm=5_000, trigger_ms=3_500, cid=10, **restored)) is None  # old checkpoint
    assert w.evaluate(cp(6.0, END - 1, jm=6_000, trigger_ms=4_500, cid=11, **restored)) is None  # its own commit
    assert w.evaluate(cp(7.0, END - 1, jm=7_000, trigger_ms=4_500, cid=11, **restored))["checkpoint_id"] == 11


def test_commit_aware_restart_between_commit_and_confirmation_drops_the_commit():
    w = wait(commit_aware=True)
    assert w.evaluate(cp(1.0, END, jm=1_000, trigger_ms=500)) is None
    assert w.evaluate(cp(2.0, END, jm=2_000, trigger_ms=1_500, cid=3)) is None  # commit seen, attempt a1
    assert w.evaluate(cp(3.0, END - 9, jm=3_000, trigger_ms=2_500, cid=4, attempt="a2", attempt_since=3.0)) is None
    assert w.evaluate(cp(4.0, END - 9, jm=4_000, trigger_ms=3_500, cid=5, attempt="a2", attempt_since=3.0)) is None


def test_commit_aware_waits_out_flinks_cache_staleness():
    # settle_s: an attempt seen for less than that, or a commit younger than that, does not count yet.
    w = wait(commit_aware=True)
    fresh = dict(attempt="a1", attempt_since=0.0, settle_s=4.0)
    assert w.evaluate(cp(1.0, END, jm=1_000, trigger_ms=None, **fresh)) is None  # attempt only 1 s old
    assert w.evaluate(cp(4.0, END, jm=4_000, trigger_ms=1_500, **fresh)) is None  # crossing only now (jm 4_000)
    assert w.evaluate(cp(5.0, END, jm=5_000, trigger_ms=4_500, cid=2, **fresh)) is None  # commit at mono 5
    assert w.evaluate(cp(8.0, END, jm=8_000, trigger_ms=4_500, cid=2, **fresh)) is None  # 3 s < settle
    assert w.evaluate(cp(9.0, END, jm=9_000, trigger_ms=4_500, cid=2, **fresh))["status"] == "success"


def test_commit_aware_on_a_job_without_checkpointing_fails_at_once():
    event = wait(commit_aware=True, deadline=1e12).evaluate(snap(1.0, END - 5, checkpointing=False))
    assert event["reason"] == "checkpointing_disabled" and "execution.checkpointing.interval" in event["message"]
    with pytest.raises(FlinkCheckpointingDisabled):
        raise_for_event(event)


def test_commit_aware_timeout_after_the_crossing_says_what_was_missing():
    # Issue 10 finding 12: "did not reach X (progress Y > X)" contradicted itself.
    w = wait(commit_aware=True, deadline=10.0)
    assert w.evaluate(cp(1.0, END + 36_000, jm=1_000, trigger_ms=500, cid=1)) is None
    event = w.evaluate(cp(10.0, END + 36_000, jm=10_000, trigger_ms=500, cid=1))
    assert event["status"] == "timeout"
    assert "did not reach" not in event["message"] and "no checkpoint triggered after the crossing" in event["message"]


def test_failed_job_fails_at_once_with_root_cause_and_raises_job_failed():
    event = wait().evaluate(snap(1, END - 5, state="FAILED", root_cause="java.io.IOException: disk full\n\tat x"))
    assert event["reason"] == "job_failed"
    with pytest.raises(FlinkJobFailed, match="disk full"):
        raise_for_event(event)


def test_stall_is_reported_after_the_timeout_and_only_while_running():
    w = wait(stall_timeout=10)
    assert w.evaluate(snap(0, END - 100)) is None
    assert w.evaluate(snap(9, END - 100)) is None
    assert w.evaluate(snap(9.5, None, state="RESTARTING")) is None
    event = w.evaluate(snap(10, END - 100))
    assert event["reason"] == "stalled" and "has not moved for 10s" in event["message"]
    with pytest.raises(StreamStalled) as err:
        raise_for_event(event)
    assert err.value.stream == "samples" and err.value.progress_ms == END - 100


def test_progress_that_moves_is_not_a_stall_and_an_ended_stream_never_stalls():
    w = wait(stall_timeout=5)
    assert all(w.evaluate(snap(t, END - 1000 + t)) is None for t in range(0, 20, 2))
    ended = wait(stall_timeout=1, threshold_ms=END_OF_STREAM)
    assert ended.evaluate(snap(0, END_OF_STREAM)) is not None  # END_OF_STREAM reaches every threshold


def test_job_id_wait_fails_when_that_job_finished_but_a_name_wait_keeps_waiting():
    assert wait(by_name=False).evaluate(snap(1, None, state="FINISHED"))["reason"] == "unexpected_state"
    assert wait(by_name=True).evaluate(snap(1, None, state="FINISHED")) is None  # an upgrade in progress


def test_deadline_and_transient_errors():
    w = wait(deadline=100.0)
    assert w.evaluate(snap(50, None, state=None, error="connection refused", error_kind="unreachable")) is None
    event = w.evaluate(snap(100, None, state=None, error="connection refused", error_kind="unreachable"))
    assert event["status"] == "timeout" and "connection refused" in event["message"]
    assert wait().evaluate(snap(1, None, state=None, error="no job", error_kind="not_found"))["reason"] == \
        "job_not_found"


def test_serialize_round_trip_and_shared_key():
    trig = FlinkWatermarkTrigger(threshold_ms=END - 1, job_name="samples", commit_aware=True, stall_timeout=60,
                                 poll_interval=0.5, deadline=1.9e9, end_task_on_success=True)
    path, kwargs = trig.serialize()
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (path, kwargs)
    other_waiter = FlinkWatermarkTrigger(threshold_ms=END + 3_600_000, job_name="samples", commit_aware=True,
                                         poll_interval=0.5, deadline=1.8e9)
    assert other_waiter.shared_stream_key() == trig.shared_stream_key()  # same stream: one poll loop
    assert FlinkWatermarkTrigger(threshold_ms=1, job_name="features", commit_aware=True,
                                 poll_interval=0.5).shared_stream_key() != trig.shared_stream_key()
    with pytest.raises(FlinkConfigurationError):
        FlinkWatermarkTrigger(threshold_ms=1)


async def _snapshots(*snaps):
    for s in snaps:
        yield s


def _events(trigger: FlinkWatermarkTrigger, *snaps) -> list:
    async def go():
        return [e async for e in trigger.filter_shared_stream(_snapshots(*snaps))]

    return asyncio.run(go())


def test_filter_yields_one_event_and_the_fast_path_ends_the_task_in_the_triggerer():
    plain = _events(FlinkWatermarkTrigger(threshold_ms=END - 1, job_name="s"), snap(1, END - 2), snap(2, END),
                    snap(3, END + 1))
    assert len(plain) == 1 and type(plain[0]) is TriggerEvent and plain[0].payload["status"] == "success"
    fast = _events(FlinkWatermarkTrigger(threshold_ms=END - 1, job_name="s", end_task_on_success=True),
                   snap(1, END))
    assert isinstance(fast[0], TaskSuccessEvent) and fast[0].xcoms["return_value"]["progress_ms"] == END
    failed = _events(FlinkWatermarkTrigger(threshold_ms=END - 1, job_name="s", end_task_on_success=True),
                     snap(1, END - 9, state="CANCELED"))
    assert type(failed[0]) is TriggerEvent and failed[0].payload["reason"] == "job_failed"  # resumes to raise


def test_vertex_selection():
    detail = JobDetail("j", "job", JobState.RUNNING, 0, (Vertex("a", "Source: events", 1, "RUNNING"),
                                                         Vertex("b", "Window(TUMBLE) -> Sink: out", 1, "RUNNING")))
    plan = {"nodes": [{"id": "a"}, {"id": "b", "inputs": [{"id": "a"}]}]}
    assert sink_vertices(detail, plan) == ["b"]
    assert pick_vertices(detail, plan, "Source") == ["a"]
    with pytest.raises(FlinkConfigurationError, match="Window"):
        pick_vertices(detail, plan, "Join")


def test_skew():
    assert skew_ms(1000, 4000) == 3000 and skew_ms(4000, 1000) == -3000
    assert skew_ms(None, 1) is None and skew_ms(NO_WATERMARK, 5) is None


def test_window_event_trigger_fires_once_per_window_and_never_again_for_the_same_one():
    from airflow_rtml.triggers.watermark import FlinkWindowEventTrigger

    minute = 60_000
    trig = FlinkWindowEventTrigger(window_size_ms=minute, job_name="s", lateness_ms=0, poll_interval=1.0)
    path, kwargs = trig.serialize()
    assert type(trig)(**kwargs).serialize() == (path, kwargs)
    assert trig.shared_stream_key() == FlinkWatermarkTrigger(threshold_ms=1, job_name="s").shared_stream_key()
    events = _events(trig, snap(1, None), snap(2, END + 5), snap(3, END + minute - 2), snap(4, END + minute - 1),
                     snap(5, END + minute - 1), snap(6, END - 10 * minute),  # failover: lower value, no re-fire
                     snap(7, END + 3 * minute - 1))
    starts = [e.payload["window_start_ms"] for e in events]
    assert starts == [END, END + minute, END + 2 * minute]  # the first window holds the first progress
    assert events[0].payload["window_end"] == "2026-01-01T11:01:00.000Z"
    assert events[0].payload["watermark_ms"] == END + minute - 1


def test_window_event_trigger_stops_at_the_window_of_the_last_progress_when_the_input_ends():
    from airflow_rtml.triggers.watermark import FlinkWindowEventTrigger

    minute = 60_000
    trig = FlinkWindowEventTrigger(window_size_ms=minute, job_name="s", poll_interval=1.0)
    # A drained or bounded job reports END_OF_STREAM, then FINISHED (no progress): its last window closes, and
    # no window after it ever does (before the fix: 10,000 more events per poll, forever).
    events = _events(trig, snap(1, END + 5), snap(2, END + minute + 7), snap(3, END_OF_STREAM),
                     snap(4, None, state="FINISHED"), snap(5, None, state="FINISHED"))
    assert [e.payload["window_start_ms"] for e in events] == [END, END + minute]
    assert _events(FlinkWindowEventTrigger(window_size_ms=minute, job_name="s"), snap(1, END_OF_STREAM),
                   snap(2, None, state="FINISHED")) == []  # ended before any event time was seen: nothing to close


def test_ended_input_wait_carries_its_last_event_time():
    w = wait(threshold_ms=END + 3_600_000)
    for i, p in enumerate((END + 5, END + 60_007, END_OF_STREAM)):
        event = w.evaluate(snap(i, p))
    assert event["status"] == "success" and event["progress_ms"] == END_OF_STREAM
    assert event["last_event_time_ms"] == END + 60_007


def test_window_sensor_emits_up_to_the_last_event_time_of_an_ended_input_then_raises_stream_ended():
    from datetime import timedelta

    from airflow.sdk import Asset
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from airflow_rtml.exceptions import StreamEnded
    from airflow_rtml.sensors.watermark import StreamWindowSensor

    asset = Asset(name="minutes", uri="rtml://t/minutes")
    sensor = StreamWindowSensor(task_id="w", job_name="s", asset=asset, window=timedelta(minutes=1))
    ended = {"status": "success", "job_id": "j1", "progress_ms": END_OF_STREAM, "last_event_time_ms": END + 30_000}
    out = sensor.execute_complete({"outlet_events": OutletEventAccessors()}, ended, cursor=END - 60_000)
    # [10:59, 11:00) and [11:00, 11:01) hold event time; nothing after the last one (not 100 windows per run)
    assert out["partition_keys"] == ["2026-01-01T10:59:00Z", "2026-01-01T11:00:00Z"]
    with pytest.raises(StreamEnded, match="already emitted"):
        sensor.execute_complete({"outlet_events": OutletEventAccessors()}, ended, cursor=END + 60_000)
    with pytest.raises(StreamEnded, match="before this wait saw an event time"):
        sensor.execute_complete({"outlet_events": OutletEventAccessors()}, {**ended, "last_event_time_ms": None},
                                cursor=END)


def test_window_event_trigger_keeps_its_cursor_in_every_asset_it_feeds():
    """Airflow runs one trigger for identical watchers on two assets; its state store then has no single
    accessor (``aget`` raises ValueError). The cursor is kept in each asset's store and resumed from there."""
    from airflow.sdk.execution_time.context import AssetStateStoreAccessors

    from airflow_rtml.triggers.watermark import FlinkWindowEventTrigger

    class Accessor:  # one asset's store, in memory (the real one talks to the API server)
        def __init__(self):
            self.values = {}

        async def aget(self, key, default=None):
            return self.values.get(key, default)

        async def aset(self, key, value):
            self.values[key] = value

    minute = 60_000
    store = AssetStateStoreAccessors(inlets=[])
    a, b = Accessor(), Accessor()
    store._by_name, store._by_uri, store._total = {"a": a, "b": b}, {}, 2
    with pytest.raises(ValueError):
        asyncio.run(store.aget("k"))  # what the trigger hit before
    trig = FlinkWindowEventTrigger(window_size_ms=minute, job_name="s")
    trig.asset_state_store = store
    assert len(_events(trig, snap(1, END + 5), snap(2, END + 2 * minute))) == 2
    assert a.values == b.values == {FlinkWindowEventTrigger.CURSOR_KEY: END + 2 * minute}
    resumed = FlinkWindowEventTrigger(window_size_ms=minute, job_name="s")
    resumed.asset_state_store = store
    assert [e.payload["window_start_ms"] for e in _events(resumed, snap(1, END + 3 * minute))] == [END + 2 * minute]


def test_window_event_trigger_follows_a_new_job_of_the_name_after_the_input_ended():
    from airflow_rtml.triggers.watermark import FlinkWindowEventTrigger

    minute = 60_000
    trig = FlinkWindowEventTrigger(window_size_ms=minute, job_name="s")
    events = _events(trig, snap(1, END + 5), snap(2, END_OF_STREAM), snap(3, None, state="FINISHED"),
                     snap(4, END + 3 * minute + 5, job_id="j2"))  # restarted from a savepoint: a new job id
    assert [e.payload["window_start_ms"] for e in events] == [END, END + minute, END + 2 * minute]
    assert events[-1].payload["job_id"] == "j2"


def test_a_wait_started_at_its_deadline_still_takes_its_one_look():
    # The sensors' look before deferring is a wait whose deadline is "now": it must see one observation
    # (and succeed on it), not time out before the first poll answered.
    import time as _time

    async def slow_first():
        await asyncio.sleep(0.3)
        yield snap(_time.time(), END)

    trigger = FlinkWatermarkTrigger(threshold_ms=END - 1, job_name="s", deadline=_time.time())

    async def go():
        return [e async for e in trigger.filter_shared_stream(slow_first())]

    events = asyncio.run(go())
    assert events[0].payload["status"] == "success", events[0].payload


def test_a_wait_ends_at_its_deadline_while_the_next_observation_does_not_come():
    import time as _time

    async def hangs():
        yield snap(_time.time(), END - 100)
        await asyncio.sleep(30)
        yield snap(_time.time(), END)  # pragma: no cover - never reached

    trigger = FlinkWatermarkTrigger(threshold_ms=END - 1, job_name="s", deadline=_time.time() + 0.5)
    t0 = _time.monotonic()

    async def go():
        return [e async for e in trigger.filter_shared_stream(hangs())]

    events = asyncio.run(go())
    assert events[0].payload["status"] == "timeout" and _time.monotonic() - t0 < 1.5
