"""Which waits an observation concerns (issue 10, 10,000 waits in one triggerer): the pure
:class:`~airflow_rtml.progress.WakeIndex`, and the property that matters — a wait that parks between the
observations the index names decides exactly what, and exactly when, a wait that looks at every one decides."""

from __future__ import annotations

import random

import pytest

from airflow_rtml.exceptions import TRANSIENT, FailureReason
from airflow_rtml.progress import END_OF_STREAM, NO_WATERMARK, Observation, ProgressWait, WakeIndex

T = 1_767_265_200_000  # 2026-01-01T11:00:00Z


def obs(at: float, progress: int | None, state: str | None = "RUNNING", **kw) -> Observation:
    kw.setdefault("job_id", "j1")
    kw.setdefault("attempt", "a1")
    kw.setdefault("attempt_since", 0.0)
    return Observation(at=at, mono=at, state=state, progress_ms=progress, **kw)


def wait(threshold_ms: int = T, **kw) -> ProgressWait:
    args = {"stream": "s", "threshold_ms": threshold_ms, "commit_aware": False, "stall_timeout": None,
            "deadline": None, "by_name": True, "now": 0.0}
    return ProgressWait(**{**args, **kw})


def test_a_target_equal_to_the_progress_is_woken_one_below_is_not():
    index = WakeIndex(drain_every=1000)
    index.add("at", wait(T))
    index.add("above", wait(T + 1))
    assert index.observe(obs(1, T - 1)) == []
    assert index.observe(obs(2, T)) == ["at"]  # progress >= threshold: equal crosses
    assert "at" not in index and "above" in index and len(index) == 1


def test_many_waits_at_one_target_are_all_woken_by_one_crossing_once_each():
    index = WakeIndex(drain_every=1000)
    for i in range(500):
        index.add(("same", i), wait(T))
    index.add("later", wait(T + 60_000))
    woken = index.observe(obs(1, T + 5))
    assert sorted(woken) == [("same", i) for i in range(500)]
    assert index.observe(obs(2, T + 10)) == []  # woken once: they are no longer parked
    assert list(index._where) == ["later"]


def test_a_wait_added_after_the_crossing_is_woken_by_the_next_observation_at_or_past_it():
    index = WakeIndex(drain_every=1000)
    assert index.observe(obs(1, T + 5)) == []  # nobody parked yet
    index.add("late", wait(T))
    assert index.observe(obs(2, T + 5)) == ["late"]
    index.add("late-after-failover", wait(T))
    assert index.observe(obs(3, T - 1_000)) == []  # a failover replays older watermarks: not yet again
    assert index.observe(obs(4, T)) == ["late-after-failover"]


def test_the_end_of_the_input_crosses_every_target_and_no_watermark_or_unknown_none():
    index = WakeIndex(drain_every=1000)
    index.add("a", wait(T))
    index.add("b", wait(END_OF_STREAM - 1))
    assert index.observe(obs(1, None)) == [] and index.observe(obs(2, NO_WATERMARK)) == []
    assert sorted(index.observe(obs(3, END_OF_STREAM))) == ["a", "b"]


@pytest.mark.parametrize("bad", [
    {"error_kind": FailureReason.API_ERROR, "error": "one bad answer about this job"},
    {"error_kind": FailureReason.JOB_NOT_FOUND, "error": "gone"},
    {"state": "FAILED"},
    {"state": "CANCELED"},
    {"checkpointing": False},
])
def test_a_bad_observation_wakes_every_wait_on_the_stream(bad):
    index = WakeIndex(drain_every=1000)
    for name in ("a", "b", "c"):
        index.add(name, wait(T + ord(name)))
    state = bad.pop("state", "RUNNING")
    assert sorted(index.observe(obs(1, None, state=state, **bad))) == ["a", "b", "c"]
    assert len(index) == 0


def test_a_transient_error_wakes_nobody():
    index = WakeIndex(drain_every=1000)
    index.add("a", wait(T))
    assert index.observe(obs(1, None, state=None, error_kind=TRANSIENT, error="503")) == []
    assert "a" in index


def test_a_finished_job_concerns_waits_on_its_id_not_waits_on_its_name():
    index = WakeIndex(drain_every=1000)
    index.add("by-id", wait(T, by_name=False))
    index.add("by-name", wait(T, by_name=True))
    assert index.observe(obs(1, None, state="FINISHED")) == ["by-id"]
    assert "by-name" in index


def test_a_stall_wait_is_woken_when_its_stall_can_come_due_not_before():
    index = WakeIndex(drain_every=1000)
    w = wait(T, stall_timeout=30.0, now=100.0)
    assert w.evaluate(obs(100.0, T - 10_000)) is None  # progress known at 100: a stall from 130 on
    index.add("stall", w)
    index.add("other", wait(T))
    assert index.observe(obs(120.0, T - 10_000)) == []
    assert index.observe(obs(129.99, T - 10_000)) == []
    assert index.observe(obs(129.9995, T - 10_000)) == ["stall"]  # up to a millisecond early, never late
    # A crossed commit-aware wait is not watched for a stall (the wait does not check it once reached).
    crossed = wait(T, stall_timeout=30.0, commit_aware=True)
    crossed.progress.observe(T)
    index.add("crossed", crossed)
    assert index.observe(obs(10_000.0, T - 5)) == []


def test_a_parked_wait_looks_once_in_every_drain_every_observations_at_a_phase_of_its_own():
    index = WakeIndex(drain_every=4)
    waits = [wait(T) for _ in range(400)]
    for i, w in enumerate(waits):
        index.add(i, w)
    looks: dict[int, list[int]] = {i: [] for i in range(len(waits))}
    for k in range(1, 17):
        for i in index.observe(obs(k, T - 100)):
            looks[i].append(k)
            index.add(i, waits[i])  # it looked, and parks again
    for ks in looks.values():
        assert 1 <= ks[0] <= 4 and all(b - a == 4 for a, b in zip(ks, ks[1:])) and len(ks) == 4
    per_observation = [sum(k in ks for ks in looks.values()) for k in range(1, 5)]
    assert min(per_observation) > 50  # spread over the phases, not all at one observation


def test_deadlines_expire_in_order_and_discard_forgets_every_filing():
    index = WakeIndex(drain_every=1000)
    index.add("soon", wait(T, deadline=50.0))
    index.add("later", wait(T, deadline=70.0, by_name=False, stall_timeout=5.0))
    index.add("never", wait(T))
    assert index.next_deadline == 50.0
    assert index.expire(49.9) == [] and index.expire(50.0) == ["soon"]
    assert index.next_deadline == 70.0
    index.discard("later")
    index.discard("later")  # no error
    assert index.next_deadline is None and list(index._where) == ["never"]
    assert index.observe(obs(1, None, state="FINISHED")) == [] and index.observe(obs(1000.0, T - 9)) == []
    index.add("never", wait(T + 1))  # filed again: replaces the old filing
    assert len(index) == 1 and index.observe(obs(3, T)) == [] and index.observe(obs(4, T + 1)) == ["never"]


def test_a_wait_that_needs_every_observation_cannot_park():
    w = wait(T, commit_aware=True)
    w.evaluate(obs(1.0, T, jobmanager_ms=1, checkpoint_triggered_id=1, settle_s=0.0))  # the crossing recorded
    assert w.needs_every_observation
    with pytest.raises(ValueError):
        WakeIndex().add("x", w)


# ---------------------------------------------------------------------- parked == eager, decision for decision
def _random_stream(rng: random.Random, n: int) -> list[Observation]:
    """Observations of a hostile stream: progress that moves, stands still, goes back (failovers, new attempts),
    unknown values, transient and permanent errors, a FINISHED job, checkpoints; the clock advances."""
    out, at, progress, attempt, cp = [], 0.0, T - 50, 1, 0
    for _ in range(n):
        at += rng.choice((0.5, 1.0, 5.0, 20.0))
        roll = rng.random()
        kw: dict = {}
        state = "RUNNING"
        if roll < 0.05:
            kw = {"error_kind": TRANSIENT, "error": "503"}
            state, value = None, None
        elif roll < 0.08:
            value = None
        elif roll < 0.10:
            attempt += 1  # a failover: an older watermark, another attempt
            progress -= rng.randint(0, 40)
            value = progress
        elif roll < 0.11:
            state, value = "FINISHED", None
        else:
            if rng.random() < 0.6:
                progress += rng.randint(0, 6)
            value = progress
        if rng.random() < 0.3:
            cp += 1
        out.append(Observation(at=at, mono=at, state=state, progress_ms=value, job_id="j1",
                               attempt=f"a{attempt}" if state else None, attempt_since=0.0,
                               jobmanager_ms=int(at * 1000), checkpoint_triggered_id=cp,
                               checkpoint_completed_id=max(0, cp - rng.randint(0, 1)),
                               checkpoint_completed_trigger_ms=int(at * 1000) - rng.randint(0, 3000),
                               settle_s=rng.choice((0.0, 2.0)), **kw))
    end, cut = rng.random(), rng.randint(1, len(out))  # the stream may end badly, anywhere
    if end < 0.2:
        out[cut:] = [obs(out[cut - 1].at + 1, None, state="FAILED", root_cause="boom")]
    elif end < 0.35:
        out[cut:] = [obs(out[cut - 1].at + 1, None, error_kind=FailureReason.API_ERROR, error="bad entry")]
    elif end < 0.45:
        out[cut:] = [obs(out[cut - 1].at + 1, None, checkpointing=False)]
    return out


def _random_wait(rng: random.Random, stream: list[Observation]) -> ProgressWait:
    reached = [o.progress_ms for o in stream if o.progress_ms is not None] or [T]
    threshold = rng.choice(reached) + rng.choice((0, 0, 1, -1)) if rng.random() < 0.7 else T + rng.randint(-60, 400)
    return wait(threshold, commit_aware=rng.random() < 0.3, stall_timeout=rng.choice((None, None, 15.0, 40.0)),
                by_name=rng.random() < 0.7, now=0.0)


@pytest.mark.parametrize("seed", range(120))
def test_parked_waits_decide_exactly_what_and_when_eager_waits_decide(seed):
    rng = random.Random(seed)
    stream = _random_stream(rng, rng.randint(20, 120))
    specs = [rng.getstate() for _ in range(30)]
    # Eager: every wait looks at every observation as it comes.
    eager: dict[int, tuple[int, dict]] = {}
    waits = []
    for i, state in enumerate(specs):
        rng.setstate(state)
        waits.append(_random_wait(rng, stream))
    for k, o in enumerate(stream):
        for i, w in enumerate(waits):
            if i not in eager and (event := w.evaluate(o)) is not None:
                eager[i] = (k, event)
    # Parked: a wait looks only when the index names it (then at everything queued, in order), or at every
    # observation while it needs every one.
    index = WakeIndex(drain_every=rng.randint(1, 7))
    parked: dict[int, tuple[int, dict]] = {}
    waits = []
    for i, state in enumerate(specs):
        rng.setstate(state)
        waits.append(_random_wait(rng, stream))
    seen = [0] * len(waits)  # observations each wait has looked at
    for k, o in enumerate(stream):
        woken = set(index.observe(o))
        for i, w in enumerate(waits):
            if i in parked or not (i in woken or seen[i] == 0 or i not in index):
                continue
            for j in range(seen[i], k + 1):
                event = w.evaluate(stream[j])
                if event is not None:
                    parked[i] = (k, event)
                    break
            seen[i] = k + 1
            if i not in parked and not w.needs_every_observation:
                index.add(i, w)
            else:
                index.discard(i)
    assert parked == eager
