"""One waiter's decision over a stream's observations: when, and how, a progress wait ends.

A stream reader (:mod:`airflow_rtml.streams`) turns each poll of a stream into one :class:`Observation`; every
waiter on that stream gets the same observation and decides for itself with a :class:`ProgressWait`.

**Never early.** A wait succeeds only when an observation's progress is ``>= threshold_ms``; a progress the
reader could not establish for every parallel part is ``None`` (unknown), never the minimum of the rest.

**Commit-aware** (exactly-once sinks make a closed window readable only with the next completed checkpoint):
the wait also needs a checkpoint *triggered after* the crossing was observed, *in the same attempt of the
job*, completed. It compares Flink's times with Flink's times (never the observer's clock with the
JobManager's), and allows for the staleness of what Flink's REST API serves from caches (``settle_s``: the
longest of ``web.refresh-interval``, ``metrics.fetcher.update-interval`` and the checkpoint-statistics cache,
plus one poll):

1. the crossing: an observation whose own progress (not an earlier one's) is ``>= threshold_ms``, of an
   attempt the reader has seen unchanged for at least ``settle_s`` (so the metrics it read are that attempt's);
   it records the attempt (read *before* the watermark) and the JobManager's clock read *after* the watermark
   (``jobmanager_ms``);
2. the commit: a later observation of the same attempt whose latest completed checkpoint was triggered after
   that JobManager time (``checkpoint_completed_trigger_ms > jobmanager_ms`` of the crossing) *and* numbered
   after every checkpoint triggered by then (``checkpoint_completed_id >`` the crossing's
   ``checkpoint_triggered_id``: a JobManager clock set back cannot make an older checkpoint count);
3. the confirmation: an observation at least ``settle_s`` later (observer's monotonic clock, compared only with
   itself) still shows the same attempt, so no failover happened between the crossing and the commit.

Any change of attempt (a failover, a restore from a checkpoint, a new job of the name) before the confirmation
drops the crossing: the restored attempt has to cross again, and a checkpoint of *its own* must commit it.
A job with checkpointing disabled can never commit a window: the reader says so and the wait fails at once.

**Monotone.** A fired wait stays fired (it ended); a lower progress never makes a wait forget that it saw a
higher one for its messages. Deadlines are absolute epoch seconds on the observer's clock (they only end a
wait, never fire one). Pure: standard library only, clock injected through ``Observation.at``.

**Which waits an observation concerns.** Thousands of waits on one stream see the same observations, and most
of them would only note "not yet". A :class:`WakeIndex` tells, per observation, which waits it may end or whose
decision it may change — a progress at or past their threshold, a failure, an end of the job, a stall coming
due — so only those need to look at it now. The others look later, in order: a wait still evaluates *every*
observation of the stream, so it decides exactly what it would have decided at once; an observation the index
does not name can only be looked at later, never decided differently. A wait whose next decision may depend on
any observation (a commit-aware crossing waiting for its checkpoint) looks at every one as it comes.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right, insort
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_rtml.exceptions import TRANSIENT, FailureReason
from airflow_rtml.progress.events import EventStatus, make_event
from airflow_rtml.progress.watermarks import (
    END_OF_STREAM,
    NO_WATERMARK,
    MonotoneProgress,
    StallDetector,
    describe,
)

__all__ = ["FAILURE_STATES", "CommittedProgress", "Observation", "ProgressWait", "WakeIndex", "short_cause"]

_CAUSE_LINE = re.compile(r"^(Caused by: .*|[A-Za-z_][\w.]*(Error|Exception)\b.*)$")

#: Job states that end every wait on the job as failed.
FAILURE_STATES = frozenset({"FAILED", "CANCELED"})


@dataclass(frozen=True)
class Observation:
    """What one poll of a stream established; shared, read-only, by every waiter on the stream.

    :param at: when (observer's epoch seconds; deadlines and stall detection only).
    :param job_id: the Flink job observed (None for a Kafka progress stream).
    :param state: the job's state (``"RUNNING"`` for a readable Kafka progress stream), None when unknown.
    :param progress_ms: the stream's progress (min over *all* parallel parts), None when unknown.
    :param attempt: identity of the job attempt that produced ``progress_ms`` (job id and subtask attempt
        numbers), read before the watermark; None when not established.
    :param attempt_since: observer's monotonic seconds when the reader first saw ``attempt``.
    :param jobmanager_ms: the JobManager's clock, read after the watermark (commit-aware streams only).
    :param checkpoint_triggered_id: the highest checkpoint id Flink had triggered, read after the watermark.
    :param checkpoint_completed_id: the latest completed checkpoint's id.
    :param checkpoint_completed_trigger_ms: its trigger time on the JobManager's clock.
    :param settle_s: how stale Flink's cached REST answers can be (see the module docstring).
    :param mono: observer's monotonic seconds at the observation (durations only).
    :param checkpointing: False when the job has checkpointing disabled; None when not read.
    :param root_cause: Flink's exception text for a failed job.
    :param error: what went wrong reading the stream, for messages.
    :param error_kind: :data:`~airflow_rtml.exceptions.TRANSIENT` (retried until each waiter's deadline) or the
        :class:`~airflow_rtml.exceptions.FailureReason` that ends every wait this observation concerns.
    :param detail: extra payload for the events (e.g. a Kafka stream's producers).
    """

    at: float
    job_id: str | None = None
    state: str | None = None
    progress_ms: int | None = None
    attempt: Hashable | None = None
    attempt_since: float | None = None
    jobmanager_ms: int | None = None
    checkpoint_triggered_id: int | None = None
    checkpoint_completed_id: int | None = None
    checkpoint_completed_trigger_ms: int | None = None
    settle_s: float = 0.0
    mono: float = 0.0
    checkpointing: bool | None = None
    root_cause: str | None = None
    error: str | None = None
    error_kind: FailureReason | str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def transient(self) -> bool:
        """The stream could not be read this time; the next poll tries again."""
        return self.error_kind == TRANSIENT


def short_cause(text: str | None, lines: int = 12) -> str:
    """A Java stack trace reduced to what says *why*: its first line, every ``Caused by:`` line, and the
    exception lines of an embedded Python traceback (a PyFlink UDF's error). Stack frames are dropped."""
    if not text:
        return "(Flink reported no exception)"
    all_lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    kept = all_lines[:1]
    for ln in all_lines[1:]:
        if _CAUSE_LINE.match(ln) and ln not in kept:
            kept.append(ln[:500])
    return "\n".join(kept[-lines:] if len(kept) > lines else kept)


@dataclass(frozen=True)
class _Crossing:
    attempt: Hashable
    jobmanager_ms: int  # the JobManager's clock, read after the crossing watermark
    triggered_id: int  # the highest checkpoint id triggered by then (0: none)


@dataclass(frozen=True)
class _Commit:
    attempt: Hashable
    checkpoint_id: int | None
    mono: float  # when the commit was observed (observer's monotonic clock)


class ProgressWait:
    """One waiter's view of a stream's observations: decides when (and how) the wait ends. Pure, clock injected.

    :param stream: label for messages.
    :param threshold_ms: progress to reach.
    :param commit_aware: also wait for a commit of the crossing (see the module docstring).
    :param stall_timeout: seconds without movement of a RUNNING stream's progress that fail the wait.
    :param deadline: absolute epoch seconds; None = no limit.
    :param by_name: the stream is a job *name* (FINISHED is not the end: a new job of the name may follow).
    :param now: the clock at creation (stall detection starts here).
    :param job_missing_timeout: a wait by name whose job is not there (no job of the name is listed) waits this
        many seconds for it to appear (it may be submitted by another DAG) before failing with ``job_not_found``;
        None or 0: fail at once. The deadline still ends the wait first if it comes first.
    :param missing_since: when the job was first seen missing, if known before this wait's first observation
        (a reschedule-mode sensor builds a new wait for every poke: the first poke's time).
    """

    __slots__ = ("stream", "threshold_ms", "commit_aware", "deadline", "by_name", "progress", "stall",
                 "crossed_at_ms", "last_event_time", "job_missing_timeout", "_missing_since", "_crossing", "_commit",
                 "_last")

    def __init__(self, *, stream: str, threshold_ms: int, commit_aware: bool, stall_timeout: float | None,
                 deadline: float | None, by_name: bool, now: float, job_missing_timeout: float | None = None,
                 missing_since: float | None = None):
        self.stream, self.threshold_ms, self.commit_aware = stream, threshold_ms, commit_aware
        self.deadline, self.by_name = deadline, by_name
        self.job_missing_timeout = job_missing_timeout if by_name and job_missing_timeout else None
        self._missing_since = missing_since
        self.progress = MonotoneProgress()
        self.stall = StallDetector(stall_timeout, now) if stall_timeout else None
        self.crossed_at_ms: float | None = None  # observer's clock, information only
        self.last_event_time = MonotoneProgress()  # progress before the input ended (Long.MAX_VALUE)
        self._crossing: _Crossing | None = None
        self._commit: _Commit | None = None  # awaiting confirmation
        self._last: Observation | None = None

    # ------------------------------------------------------------------ events
    def _event(self, status: EventStatus, obs: Observation, message: str,
               reason: FailureReason | None = None) -> dict:
        checkpoint_id = self._commit.checkpoint_id if self._commit else obs.checkpoint_completed_id
        return make_event(
            status, obs.job_id or "", message, obs.state, reason, obs.root_cause,
            stream=self.stream, progress_ms=self.progress.value, progress=describe(self.progress.value),
            threshold_ms=self.threshold_ms, checkpoint_id=checkpoint_id,
            checkpoint_trigger_ms=obs.checkpoint_completed_trigger_ms,
            crossed_at_ms=int(self.crossed_at_ms) if self.crossed_at_ms is not None else None,
            last_event_time_ms=self.last_event_time.value, **dict(obs.detail),
        )

    def timeout_event(self, obs: Observation | None = None, now: float | None = None) -> dict:
        """The timeout event (the deadline passed); its message says exactly what was and was not reached."""
        obs = obs or self._last or Observation(at=now or 0.0)
        reached = self.progress.value is not None and self.progress.value >= self.threshold_ms
        if reached and self.commit_aware:
            what = (f"reached {describe(self.progress.value)} (>= {describe(self.threshold_ms)}), but no "
                    "checkpoint triggered after the crossing completed in the same attempt of the job before the "
                    f"deadline (latest completed checkpoint: {obs.checkpoint_completed_id})")
        else:
            what = (f"did not reach {describe(self.threshold_ms)} before the deadline "
                    f"(progress {describe(self.progress.value)})")
        last = f"; last error: {obs.error}" if obs.error else ""
        return self._event(EventStatus.TIMEOUT, obs, f"Stream {self.stream} {what}{last}")

    @property
    def needs_every_observation(self) -> bool:
        """Whether any observation may change what this wait decides next (a commit-aware crossing is awaiting
        its checkpoint, or the commit its confirmation), so it must look at each one as it comes; otherwise only
        the observations a :class:`WakeIndex` names need to be looked at at once."""
        return self._crossing is not None or self._commit is not None or self._missing_since is not None

    # ------------------------------------------------------------------ decision
    def evaluate(self, obs: Observation) -> dict | None:
        """The terminal event this observation causes, or None while the wait goes on."""
        self._last = obs
        kind = obs.error_kind
        if kind == FailureReason.JOB_NOT_FOUND and self.job_missing_timeout and obs.job_id is None:
            return self._missing(obs)  # no job of the name is listed (yet): a 404 of a known job id is not this
        if obs.job_id is not None:
            self._missing_since = None  # the job is there (again)
        if kind is not None and kind != TRANSIENT:
            return self._event(EventStatus.FAILED, obs, obs.error or str(kind), FailureReason(kind))
        state = obs.state
        if state in FAILURE_STATES:
            return self._event(
                EventStatus.FAILED, obs,
                f"Stream {self.stream}: Flink job {obs.job_id} is {state} while waiting for progress "
                f">= {describe(self.threshold_ms)}. Root cause:\n{short_cause(obs.root_cause)}",
                FailureReason.JOB_FAILED,
            )
        if self.commit_aware and obs.checkpointing is False:
            return self._event(
                EventStatus.FAILED, obs,
                f"Stream {self.stream}: Flink job {obs.job_id} has checkpointing disabled, so no checkpoint will "
                "ever commit a window and a commit-aware wait cannot succeed. To fix this, enable checkpointing "
                "in the job (execution.checkpointing.interval) or wait with commit_aware=False.",
                FailureReason.CHECKPOINTING_DISABLED,
            )
        self.progress.observe(obs.progress_ms)
        if obs.progress_ms not in (None, NO_WATERMARK, END_OF_STREAM):
            self.last_event_time.observe(obs.progress_ms)
        reached_now = obs.progress_ms is not None and obs.progress_ms >= self.threshold_ms
        reached = self.progress.value is not None and self.progress.value >= self.threshold_ms
        if reached and self.crossed_at_ms is None:
            self.crossed_at_ms = obs.at * 1000
        if not self.commit_aware and reached:
            return self._event(EventStatus.SUCCESS, obs,
                               f"Stream {self.stream} reached {describe(self.progress.value)} "
                               f"(>= {describe(self.threshold_ms)})")
        if self.commit_aware and self._committed(obs, reached_now):
            return self._event(
                EventStatus.SUCCESS, obs,
                f"Stream {self.stream} reached {describe(self.progress.value)} (>= {describe(self.threshold_ms)}) "
                f"and checkpoint {self._commit.checkpoint_id}, triggered after the crossing, committed it",
            )
        if not reached and state == "RUNNING" and self.stall and self.stall.observe(obs.progress_ms, obs.at):
            return self._event(
                EventStatus.FAILED, obs,
                f"Stream {self.stream} is stalled: progress {describe(self.stall.last_progress)} has not moved "
                f"for {self.stall.stalled_for:.0f}s (target {describe(self.threshold_ms)}). To fix this, check "
                "for an idle source or a stuck partition (Flink's source idleness / watermark alignment).",
                FailureReason.STALLED,
            )
        if state == "FINISHED" and not self.by_name and not reached:
            return self._event(
                EventStatus.FAILED, obs,
                f"Stream {self.stream}: Flink job {obs.job_id} FINISHED at progress "
                f"{describe(self.progress.value)}, before {describe(self.threshold_ms)}",
                FailureReason.UNEXPECTED_STATE,
            )
        if self.deadline is not None and obs.at >= self.deadline:
            return self.timeout_event(obs)
        return None  # a transient observation: the next one retries; the deadline bounds the wait

    def _missing(self, obs: Observation) -> dict | None:
        """A wait by name whose job is not listed: None while it may still appear, else the failure event."""
        if self._missing_since is None or self._missing_since > obs.at:
            self._missing_since = obs.at
        waited = obs.at - self._missing_since
        if waited >= self.job_missing_timeout:
            return self._event(
                EventStatus.FAILED, obs,
                f"{obs.error or f'No Flink job is named {self.stream!r}.'} No job of that name appeared within "
                f"{self.job_missing_timeout:.0f}s (job_missing_timeout).", FailureReason.JOB_NOT_FOUND)
        if self.deadline is not None and obs.at >= self.deadline:
            return self.timeout_event(obs)
        return None

    def _committed(self, obs: Observation, reached_now: bool) -> bool:
        """Steps 1–3 of the module docstring; True once a commit of the crossing is confirmed."""
        if self._crossing is not None and obs.attempt is not None and obs.attempt != self._crossing.attempt:
            self._crossing, self._commit = None, None  # a failover / restore / new job: cross again
        if obs.attempt is None or obs.transient:
            return False
        if self._commit is not None:
            return obs.mono - self._commit.mono >= obs.settle_s  # step 3
        if self._crossing is None:
            settled = obs.attempt_since is not None and obs.mono - obs.attempt_since >= obs.settle_s
            if reached_now and settled and obs.jobmanager_ms is not None:
                self._crossing = _Crossing(obs.attempt, obs.jobmanager_ms, obs.checkpoint_triggered_id or 0)  # step 1
            return False
        trigger_ms, completed = obs.checkpoint_completed_trigger_ms, obs.checkpoint_completed_id
        # Both Flink's clock and Flink's checkpoint numbering must say "after": a JobManager clock set back (an NTP
        # step) cannot make a checkpoint triggered before the crossing count.
        if (trigger_ms is not None and trigger_ms > self._crossing.jobmanager_ms
                and completed is not None and completed > self._crossing.triggered_id):
            self._commit = _Commit(obs.attempt, completed, obs.mono)  # step 2
        return False


class _Ladder:
    """Tokens filed under a number, in order: :meth:`take_upto` removes and returns those filed at or below a
    value. An entry is one ``(key, n, token)`` tuple in one sorted list (``n`` unique per index: a tie-break,
    and what finds the entry again)."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: list[tuple] = []

    def __bool__(self) -> bool:
        return bool(self._entries)

    def add(self, key, n: int, token: Hashable) -> None:
        insort(self._entries, (key, n, token))

    def discard(self, key, n: int) -> None:
        i = bisect_left(self._entries, (key, n))
        if i < len(self._entries) and self._entries[i][1] == n:
            del self._entries[i]

    def take_upto(self, value) -> list:
        end = bisect_right(self._entries, (value, math.inf))
        taken = [token for _, _, token in self._entries[:end]]
        del self._entries[:end]
        return taken

    def first(self):
        return self._entries[0][0] if self._entries else None


class _Filing:
    """Where a parked token is filed."""

    __slots__ = ("n", "threshold_ms", "stalls_from", "deadline", "due", "by_id")

    def __init__(self, n: int, threshold_ms: int, stalls_from: float | None, deadline: float | None, due: int,
                 by_id: bool):
        self.n, self.threshold_ms, self.stalls_from, self.deadline = n, threshold_ms, stalls_from, deadline
        self.due, self.by_id = due, by_id


class WakeIndex:
    """The waits parked on one stream, filed by what can concern them: :meth:`observe` returns (and forgets) the
    ones an observation concerns, in O(those · log n), not O(all waits), per observation.

    An observation concerns a parked :class:`ProgressWait` when it may end it or change its next decision (see
    :meth:`ProgressWait.evaluate`): its progress is ``>= threshold_ms`` (a crossing; for a commit-aware wait, the
    crossing it records), it is a non-transient error, a failed or canceled job or a job with checkpointing
    disabled (every wait), a FINISHED job (waits on a job id), or its ``at`` reaches the time from which the
    wait's stall detector could report a stall (waits with ``stall_timeout`` that have not crossed). Naming a
    wait that then decides nothing is harmless (it looks, and parks again). A wait is also named once in every
    ``drain_every`` observations, so that it looks at what queued up meanwhile (its progress line; a bounded
    queue): at most ``drain_every`` after it parked, at a phase of its own (the waits of a stream do not all look
    at the same observation). :meth:`expire` names the waits whose deadline passed, so one timer serves a
    stream's waits.

    A wait whose :attr:`~ProgressWait.needs_every_observation` is true must not park: it looks at every
    observation. Pure: no I/O, clocks passed in; tokens are any hashable (a future, in the triggerer).

    :param drain_every: observations after which a parked wait is named in any case (>= 1).
    """

    __slots__ = ("drain_every", "seq", "_n", "_where", "_thresholds", "_stalls", "_deadlines", "_by_id", "_due")

    def __init__(self, drain_every: int = 12):
        if drain_every < 1:
            raise ValueError(f"drain_every must be >= 1, got {drain_every}.")
        self.drain_every = drain_every
        #: Observations seen so far.
        self.seq = 0
        self._n = 0
        self._reset()

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, token: Hashable) -> bool:
        return token in self._where

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline of a parked wait (None: none has one)."""
        return self._deadlines.first()

    def add(self, token: Hashable, wait: ProgressWait) -> None:
        """Park ``token`` for ``wait`` (replacing an earlier filing of the same token)."""
        if wait.needs_every_observation:
            raise ValueError(f"The wait on {wait.stream} needs every observation: it cannot park.")
        self.discard(token)
        self._n += 1
        reached = wait.progress.value is not None and wait.progress.value >= wait.threshold_ms
        deadline = wait.deadline if wait.deadline is not None and math.isfinite(wait.deadline) else None
        filing = self._where[token] = _Filing(
            self._n, wait.threshold_ms, wait.stall.stalls_from if wait.stall is not None and not reached else None,
            deadline, self._next_look(wait), not wait.by_name)
        self._thresholds.add(filing.threshold_ms, filing.n, token)
        if filing.stalls_from is not None:
            self._stalls.add(filing.stalls_from, filing.n, token)
        if filing.deadline is not None:
            self._deadlines.add(filing.deadline, filing.n, token)
        if filing.by_id:
            self._by_id[token] = None
        self._due.setdefault(filing.due, {})[token] = None

    def _next_look(self, wait: ProgressWait) -> int:
        """The first observation after now that is ``wait``'s periodic look: the next one in its phase."""
        phase = hash((id(wait),)) % self.drain_every  # its identity, mixed (raw ids share low bits): stable, spread
        return self.seq + 1 + (phase - self.seq - 1) % self.drain_every

    def discard(self, token: Hashable) -> None:
        """Forget ``token`` (no error if it is not parked)."""
        filing = self._where.pop(token, None)
        if filing is None:
            return
        self._thresholds.discard(filing.threshold_ms, filing.n)
        if filing.stalls_from is not None:
            self._stalls.discard(filing.stalls_from, filing.n)
        if filing.deadline is not None:
            self._deadlines.discard(filing.deadline, filing.n)
        if filing.by_id:
            self._by_id.pop(token, None)
        bucket = self._due.get(filing.due)
        if bucket is not None:
            bucket.pop(token, None)
            if not bucket:
                del self._due[filing.due]

    def clear(self) -> list:
        """Forget every parked token; return them."""
        tokens = list(self._where)
        self._reset()
        return tokens

    def _reset(self) -> None:
        self._where: dict = {}  # token -> _Filing
        self._thresholds, self._stalls, self._deadlines = _Ladder(), _Ladder(), _Ladder()
        self._by_id: dict = {}  # tokens a FINISHED job concerns
        self._due: dict[int, dict] = {}  # seq -> {token: None}

    def observe(self, obs: Observation) -> list:
        """The tokens ``obs`` concerns (see the class docstring), each once; they are no longer parked."""
        self.seq += 1
        kind = obs.error_kind
        if (kind is not None and kind != TRANSIENT) or obs.state in FAILURE_STATES or obs.checkpointing is False:
            return self.clear()
        woken = self._due.pop(self.seq, {})
        if obs.progress_ms is not None:
            woken.update(dict.fromkeys(self._thresholds.take_upto(obs.progress_ms)))
        if self._stalls:
            woken.update(dict.fromkeys(self._stalls.take_upto(obs.at)))
        if obs.state == "FINISHED" and self._by_id:
            woken.update(self._by_id)
        return self._forget(woken)

    def expire(self, now: float) -> list:
        """The tokens whose wait's deadline is at or before ``now`` (epoch s); they are no longer parked."""
        return self._forget(dict.fromkeys(self._deadlines.take_upto(now)))

    def _forget(self, tokens: dict) -> list:
        for token in tokens:
            self.discard(token)
        return list(tokens)


class CommittedProgress:
    """The highest progress that a completed checkpoint has committed, by the rule of a commit-aware wait
    (for the commit-aware relay: it publishes only progress an exactly-once sink has made readable).

    Each new high progress becomes a candidate: a commit-aware :class:`ProgressWait` for exactly that value;
    once it succeeds, the candidate is committed. A failover drops the candidate (the wait's rule) and the next
    observation of the restored attempt starts a new one; a committed value never goes down.
    """

    def __init__(self, stream: str):
        self.stream = stream
        self.value: int | None = None
        self._wait: ProgressWait | None = None

    def observe(self, obs: Observation) -> int | None:
        """Take ``obs`` into account; return the committed progress (None until the first commit)."""
        if self._wait is not None:
            event = self._wait.evaluate(obs)
            if event is not None:
                if event["status"] == EventStatus.SUCCESS.value:
                    self.value = max(self.value or NO_WATERMARK, self._wait.threshold_ms)
                self._wait = None
        candidate = obs.progress_ms
        if self._wait is None and candidate not in (None, NO_WATERMARK) and (self.value is None or candidate > self.value):
            self._wait = ProgressWait(stream=self.stream, threshold_ms=candidate, commit_aware=True,
                                      stall_timeout=None, deadline=None, by_name=True, now=obs.at)
            self._wait.evaluate(obs)
        return self.value
