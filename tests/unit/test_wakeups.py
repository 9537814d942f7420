"""Parked waits in a real shared stream (issue 10, 10,000 waits in one triggerer): watermark triggers subscribed
through Airflow's own ``SharedStreamManager`` to a scripted poll loop, as the triggerer runs them. A wait parks
between the observations that concern it and still ends exactly as a wait that looks at every one."""

from __future__ import annotations

import asyncio
import time

import pytest
from airflow.triggers.shared_stream import SharedStreamManager

from airflow_rtml.exceptions import FailureReason
from airflow_rtml.progress import Observation
from airflow_rtml.streams.wakeups import WakeHub
from airflow_rtml.triggers.watermark import FlinkWatermarkTrigger

T = 1_767_265_200_000  # 2026-01-01T11:00:00Z


class ScriptedReader:
    """A poll loop whose observations the test publishes (``await stream.publish(...)``)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.polls = 0

    async def observations(self):
        while True:
            item = await self.queue.get()
            if isinstance(item, BaseException):
                raise item
            self.polls += 1
            yield item


@pytest.fixture(autouse=True)
def reader(monkeypatch):
    scripted = ScriptedReader()
    monkeypatch.setattr(FlinkWatermarkTrigger, "poller", staticmethod(lambda kwargs, hook=None: scripted))
    return scripted


def obs(progress: int | None, state: str | None = "RUNNING", at: float | None = None, **kw) -> Observation:
    at = time.time() if at is None else at
    return Observation(at=at, mono=time.monotonic(), state=state, progress_ms=progress, job_id="j1", attempt="a1",
                       attempt_since=0.0, **kw)


def trigger(threshold_ms: int, **kw) -> FlinkWatermarkTrigger:
    return FlinkWatermarkTrigger(threshold_ms=threshold_ms, job_name="job", poll_interval=1.0, **kw)


class Triggerer:
    """The part of Airflow's ``TriggerRunner.run_trigger`` that matters here: subscribe, filter, collect."""

    def __init__(self, queue_size: int = 1024) -> None:
        self.manager = SharedStreamManager(max_subscriber_queue=queue_size)
        self.events: dict[str, dict] = {}
        self.errors: dict[str, str] = {}
        self.tasks: list[asyncio.Task] = []
        self._ids = 0

    def start(self, name: str, trig: FlinkWatermarkTrigger) -> None:
        self._ids += 1
        trigger_id = self._ids

        async def run() -> None:
            key = trig.shared_stream_key()
            stream = self.manager.subscribe(trigger_id=trigger_id, trigger=trig, key=key)
            try:
                async for event in trig.filter_shared_stream(stream):
                    self.events[name] = event.payload
            except Exception as exc:  # noqa: BLE001 - an outcome of the test
                self.errors[name] = f"{type(exc).__name__}: {exc}"
            finally:
                await self.manager.unsubscribe(trigger_id, key)

        self.tasks.append(asyncio.create_task(run(), name=name))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.manager.stop_all()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def hub() -> WakeHub:
    found = WakeHub.of(trigger(T).shared_stream_key())
    assert found is not None
    return found


def test_waits_park_and_only_those_a_crossing_concerns_look_and_fire():
    async def scenario(reader: ScriptedReader):
        triggerer = Triggerer()
        for i in range(50):
            triggerer.start(f"w{i}", trigger(T + i))
        await settle()
        await reader.queue.put(obs(T - 10))
        await settle()
        assert len(hub().index) == 50  # every wait looked once, then parked
        await reader.queue.put(obs(T + 9))  # crosses T .. T+9 exactly
        await settle()
        assert sorted(triggerer.events) == sorted(f"w{i}" for i in range(10))
        assert all(e["status"] == "success" and e["progress_ms"] == T + 9 for e in triggerer.events.values())
        assert len(hub().index) == 40  # the others never woke up
        await triggerer.stop()

    asyncio.run(_with_reader(scenario))


def test_a_wait_that_subscribes_after_the_crossing_fires_on_its_first_observation():
    async def scenario(reader: ScriptedReader):
        triggerer = Triggerer()
        triggerer.start("early", trigger(T + 1_000))
        await settle()
        await reader.queue.put(obs(T + 5))
        await settle()
        triggerer.start("late", trigger(T))
        await settle()
        assert "late" not in triggerer.events  # nothing seen yet: a new subscriber gets later observations
        await reader.queue.put(obs(T + 5))
        await settle()
        assert triggerer.events["late"]["status"] == "success" and "early" not in triggerer.events
        await triggerer.stop()

    asyncio.run(_with_reader(scenario))


def test_a_failed_job_fails_every_parked_wait_at_once_and_a_bad_answer_only_its_stream():
    async def scenario(reader: ScriptedReader):
        triggerer = Triggerer()
        for i in range(5):
            triggerer.start(f"w{i}", trigger(T + i))
        await settle()
        await reader.queue.put(obs(T - 10))
        await settle()
        await reader.queue.put(obs(None, state="FAILED", root_cause="java.lang.RuntimeException: boom"))
        await settle()
        assert {e["reason"] for e in triggerer.events.values()} == {FailureReason.JOB_FAILED.value}
        assert len(triggerer.events) == 5
        await triggerer.stop()

    asyncio.run(_with_reader(scenario))


def test_a_parked_wait_looks_at_what_queued_up_before_its_deadline_then_times_out():
    async def scenario(reader: ScriptedReader):
        triggerer = Triggerer()
        triggerer.start("timed", trigger(T, deadline=time.time() + 0.5))
        await settle()
        for progress in (T - 30, T - 20, T - 10):  # none concerns the wait: it stays parked
            await reader.queue.put(obs(progress))
            await settle()
        assert len(hub().index) == 1
        t0 = time.monotonic()
        while "timed" not in triggerer.events and time.monotonic() - t0 < 3:
            await asyncio.sleep(0.05)
        event = triggerer.events["timed"]
        assert event["status"] == "timeout" and event["progress_ms"] == T - 10  # queued ones looked at first
        assert time.monotonic() - t0 < 1.0  # the hub's timer, not the next observation, ended it
        await triggerer.stop()

    asyncio.run(_with_reader(scenario))


def test_a_stall_fails_a_parked_wait_at_the_observation_it_comes_due():
    async def scenario(reader: ScriptedReader):
        triggerer = Triggerer()
        now = time.time()
        triggerer.start("stall", trigger(T, stall_timeout=30.0))
        await settle()
        await reader.queue.put(obs(T - 10, at=now))
        await settle()
        await reader.queue.put(obs(T - 10, at=now + 20))
        await settle()
        assert "stall" not in triggerer.events and len(hub().index) == 1
        await reader.queue.put(obs(T - 10, at=now + 31))
        await settle()
        assert triggerer.events["stall"]["reason"] == FailureReason.STALLED.value
        await triggerer.stop()

    asyncio.run(_with_reader(scenario))


def test_a_commit_aware_wait_parks_until_its_crossing_then_looks_at_every_observation():
    def commit_obs(progress, cp_completed, cp_trigger_ms, jm_ms, triggered):
        return obs(progress, jobmanager_ms=jm_ms, checkpoint_triggered_id=triggered,
                   checkpoint_completed_id=cp_completed, checkpoint_completed_trigger_ms=cp_trigger_ms, settle_s=0.0)

    async def scenario(reader: ScriptedReader):
        triggerer = Triggerer()
        triggerer.start("commit", trigger(T, commit_aware=True))
        key = trigger(T, commit_aware=True).shared_stream_key()
        await settle()
        await reader.queue.put(commit_obs(T - 10, 1, 1_000, 2_000, 1))
        await settle()
        assert len(WakeHub.of(key).index) == 1
        await reader.queue.put(commit_obs(T, 1, 1_000, 3_000, 1))  # the crossing: recorded, not committed
        await settle()
        assert "commit" not in triggerer.events and len(WakeHub.of(key).index) == 0  # looks at every one now
        await reader.queue.put(commit_obs(T, 2, 3_500, 4_000, 2))  # a checkpoint triggered after: the commit
        await settle()
        await reader.queue.put(commit_obs(T, 2, 3_500, 5_000, 2))  # still the same attempt: confirmed
        await settle()
        assert triggerer.events["commit"]["status"] == "success"
        assert triggerer.events["commit"]["checkpoint_id"] == 2
        await triggerer.stop()

    asyncio.run(_with_reader(scenario))


def test_parked_waits_never_overflow_a_small_subscriber_queue(monkeypatch):
    monkeypatch.setenv("AIRFLOW__TRIGGERER__SHARED_STREAM_SUBSCRIBER_QUEUE_SIZE", "8")

    async def scenario(reader: ScriptedReader):
        triggerer = Triggerer(queue_size=8)
        for i in range(3):
            triggerer.start(f"w{i}", trigger(T + i))
        await settle()
        assert hub().index.drain_every == 4  # half the queue
        for k in range(40):
            await reader.queue.put(obs(T - 100 + k))
            await settle()
        assert not triggerer.errors and not triggerer.events
        await triggerer.stop()

    asyncio.run(_with_reader(scenario))


def test_when_the_poll_loop_dies_every_parked_wait_ends_with_it():
    async def scenario(reader: ScriptedReader):
        triggerer = Triggerer()
        for i in range(3):
            triggerer.start(f"w{i}", trigger(T + i))
        await settle()
        await reader.queue.put(obs(T - 10))
        await settle()
        assert len(hub().index) == 3
        await reader.queue.put(RuntimeError("the reader broke"))
        await settle()
        assert sorted(triggerer.errors) == ["w0", "w1", "w2"] and "the reader broke" in triggerer.errors["w0"]
        assert WakeHub.of(trigger(T).shared_stream_key()) is None
        await triggerer.stop()

    asyncio.run(_with_reader(scenario))


def test_a_trigger_run_alone_drives_its_own_loop_and_never_parks():
    async def scenario(reader: ScriptedReader):
        events = []

        async def run():
            async for event in trigger(T).run():
                events.append(event.payload)

        task = asyncio.create_task(run())
        await settle()
        for progress in (T - 20, T - 10):
            await reader.queue.put(obs(progress))
            await settle()
        assert len(hub().index) == 0 and reader.polls == 2  # it looked at each one, driving the loop itself
        await reader.queue.put(obs(T))
        await task
        assert events[0]["status"] == "success"

    asyncio.run(_with_reader(scenario))


async def _with_reader(scenario):
    await scenario(FlinkWatermarkTrigger.poller({}))  # the test's scripted reader (the autouse fixture)


def test_a_crossing_that_concerns_thousands_of_waits_wakes_them_a_bounded_number_per_loop_iteration():
    from airflow_rtml.progress import ProgressWait
    from airflow_rtml.streams.wakeups import WAKE_PER_STEP

    async def scenario(_reader: ScriptedReader):
        hub = WakeHub(("test", "burst"), drain_every=1000)

        async def source():
            yield obs(T - 10)
            yield obs(T)  # concerns every wait below

        published = hub.publish(source())
        await anext(published)
        waits = [ProgressWait(stream="s", threshold_ms=T, commit_aware=False, stall_timeout=None, deadline=None,
                              by_name=True, now=0.0) for _ in range(3 * WAKE_PER_STEP + 7)]
        futures = [hub.park(w) for w in waits]
        await anext(published)
        resolved = []
        for _ in range(6):
            await asyncio.sleep(0)
            resolved.append(sum(f.done() for f in futures))
        assert resolved[0] <= WAKE_PER_STEP and resolved[-1] == len(futures)
        assert all(b - a <= WAKE_PER_STEP for a, b in zip([0, *resolved], resolved))
        await published.aclose()

    asyncio.run(_with_reader(scenario))
