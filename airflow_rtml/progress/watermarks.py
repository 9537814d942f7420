"""Event-time progress of streams: watermarks, windows, stalls and progress signals.

A record carries an *event time*: when the thing it describes happened, in epoch milliseconds UTC. Records
reach a stream out of order, so a stream cannot tell from one record that a stretch of event time is complete.
It says so with a *watermark* ``W``: "no more records with event time ``<= W`` are expected". Flink computes
watermarks per parallel part (subtask, Kafka partition); a part at ``W`` promises nothing for the others, so
the *progress* of a stream is the minimum watermark over all its parts, ignoring none. One part that has not
reported makes the progress unknown, never the minimum of the rest: a missing part must not let it run ahead.

Two values are not times. :data:`NO_WATERMARK` (Java's ``Long.MIN_VALUE``) means the stream has produced no
watermark yet and closes nothing; :data:`END_OF_STREAM` (``Long.MAX_VALUE``) means its input ended (drained
or bounded) and closes everything. Flink's REST API returns aggregated metrics as doubles, often as strings
(``"-9.223372036854776E18"``), so :func:`parse_watermark` reads ints, doubles and numeric strings and maps
the doubles of both sentinels exactly back onto them.

Batch work waits for *windows*. A tumbling window ``[start, end)`` holds the records with
``start <= ts <= end - 1``; it is *closed* once progress reaches its last timestamp, ``progress >= end - 1``,
which is the moment Flink itself fires it. Allowed lateness ``L`` keeps a window open for late records until
``progress >= end - 1 + L``. Windows are aligned as in Flink: start ``= ts - (ts - offset) mod size``.

Progress as observed from outside can go *back*: after a failover a job restarts from a checkpoint and
reports older watermarks. A window that fired stays fired, so :class:`MonotoneProgress` and
:class:`SignalAggregator` keep the highest value seen and ignore lower ones. Progress can also stop: a
running stream whose progress has not moved for a while (an idle source, a stuck partition) is *stalled*,
and :class:`StallDetector` says so instead of letting a wait hang silently.

Producers outside Flink publish their progress as :class:`ProgressSignal` records on a Kafka topic (JSON
value, key = stream name). A stream's progress there is the minimum over its producers' latest signals; a
``final`` signal means that producer ended and no longer holds the minimum back.

This module is pure: standard library only, no Airflow, no I/O, clocks injected.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from airflow_rtml.exceptions import FlinkConfigurationError, RtmlError

__all__ = [
    "END_OF_STREAM", "NO_WATERMARK", "MonotoneProgress", "ProgressParseError", "StallDetector", "Window",
    "closed_windows", "combine", "describe", "parse_watermark", "progress_from_vertex_metrics", "threshold_for",
    "window_of",
    "to_epoch_ms",
]

NO_WATERMARK: int = -(2**63)
"""Java's ``Long.MIN_VALUE``: the stream has produced no watermark yet; it closes no window."""

END_OF_STREAM: int = 2**63 - 1
"""Java's ``Long.MAX_VALUE``: the stream's input ended (drained or bounded); it closes every window."""

# A sentinel rendered as a double with 15 or more significant digits lands within 5 000 ms of itself
# (float(2**63 - 1) is 2**63). No real event time lies within 10 s of the year +-292 million.
_SENTINEL_SLACK_MS = 10_000
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_EPOCH = datetime(1970, 1, 1)


class ProgressParseError(RtmlError, ValueError):
    """A watermark or a progress signal could not be read; the message names the bad value and its origin."""


def _to_long(number: int | float | Decimal, origin: str, raw: Any) -> int:
    """Floor ``number`` (never overstating progress); a value by a sentinel becomes the sentinel.

    A value beyond the range of a Java long (past either sentinel's slack) is no watermark at all: it raises,
    whatever its spelling (``1e30``, ``"1e30"`` and ``10**30`` alike), instead of being clamped to
    END_OF_STREAM, which would close every window.
    """
    if number > END_OF_STREAM + _SENTINEL_SLACK_MS or number < NO_WATERMARK - _SENTINEL_SLACK_MS:
        raise ProgressParseError(
            f"Cannot read a watermark from {origin}: {reprlib.repr(raw)} lies outside the range of a Java long "
            f"([{NO_WATERMARK}, {END_OF_STREAM}] epoch milliseconds)."
        )
    if number >= END_OF_STREAM - _SENTINEL_SLACK_MS:
        return END_OF_STREAM
    if number <= NO_WATERMARK + _SENTINEL_SLACK_MS:
        return NO_WATERMARK
    return math.floor(number)


def parse_watermark(value: Any, *, origin: str = "a watermark value") -> int | None:
    """Read a watermark (epoch ms) from an int, a double or a numeric string; None when it is unknown.

    This is the one validation every spelling of a watermark goes through (Flink REST, the TaskManagers'
    reporters, progress signals). ``None``, ``""`` and ``[]`` (Flink's answer for a metric not registered
    yet) are unknown. Fractions are floored and doubles of ``Long.MIN_VALUE``/``Long.MAX_VALUE`` map exactly
    onto the sentinels. NaN, infinities, bools, values outside a Java long's range and anything else raise
    :class:`ProgressParseError` naming the value and ``origin``.
    """
    if value is None or (isinstance(value, list) and not value):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if len(text) <= 64 and _NUMBER.fullmatch(text):
            return _to_long(Decimal(text), origin, value)
    elif isinstance(value, float) and math.isfinite(value):
        return _to_long(value, origin, value)
    elif isinstance(value, int) and not isinstance(value, bool):  # True must not read as 1 ms
        return _to_long(value, origin, value)
    raise ProgressParseError(
        f"Cannot read a watermark from {origin}: {reprlib.repr(value)} is not an integer, a finite double "
        "or a numeric string (epoch milliseconds)."
    )


def combine(parts: Iterable[int | None]) -> int | None:
    """Progress of a stream from its parallel parts: their minimum; None if any part is unknown or there are none."""
    lowest: int | None = None
    for part in parts:
        if part is None:
            return None
        lowest = part if lowest is None else min(lowest, part)
    return lowest


def progress_from_vertex_metrics(metrics: Mapping[str, Any], metric: str = "currentInputWatermark") -> int | None:
    """Progress of a Flink vertex from its metrics ``{"<subtask>.<metric>": value}``; None if unknown or absent.

    Takes the minimum over every entry named ``metric`` or ending with ``"." + metric`` (an aggregated answer
    has the bare name); one unknown subtask makes the result unknown. A bad value raises
    :class:`ProgressParseError` naming the metric entry.
    """
    suffix = "." + metric
    return combine(
        parse_watermark(value, origin=f"Flink metric {name!r}")
        for name, value in metrics.items()
        if name == metric or name.endswith(suffix)
    )


def _iso(ms: int) -> str:
    """``ms`` as ISO-8601 UTC with milliseconds (``2026-11-25T10:00:00.000Z``), or plain ms off the calendar."""
    try:
        return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds") + "Z"
    except OverflowError:
        return f"{ms} ms since epoch"


def describe(watermark: int | None) -> str:
    """A human reading of a watermark: ``unknown``, ``none yet``, ``ended`` or its ISO-8601 UTC time."""
    if watermark is None:
        return "unknown"
    if watermark <= NO_WATERMARK:
        return "none yet"
    if watermark >= END_OF_STREAM:
        return "ended"
    return _iso(watermark)


def threshold_for(end_ms: int, lateness_ms: int = 0) -> int:
    """The lowest progress that closes every window ending at or before ``end_ms``: ``end_ms - 1 + lateness_ms``."""
    if lateness_ms < 0:
        raise ValueError(f"lateness_ms must be >= 0, got {lateness_ms}.")
    return end_ms - 1 + lateness_ms


@dataclass(frozen=True)
class Window:
    """An event-time window ``[start_ms, end_ms)``; construction guarantees ``start_ms < end_ms``."""

    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise ValueError(f"A window needs start_ms < end_ms, got [{self.start_ms}, {self.end_ms}).")

    @property
    def max_timestamp(self) -> int:
        """The last event time inside the window, ``end_ms - 1``: Flink fires the window when progress reaches it."""
        return self.end_ms - 1

    def is_closed(self, progress: int | None, lateness_ms: int = 0) -> bool:
        """Whether ``progress >= end_ms - 1 + lateness_ms``; None and NO_WATERMARK never, END_OF_STREAM always."""
        threshold = threshold_for(self.end_ms, lateness_ms)
        if progress is None or progress == NO_WATERMARK:
            return False
        return progress == END_OF_STREAM or progress >= threshold

    def to_dict(self) -> dict:
        """The window as plain JSON types: its bounds in ms and as ISO-8601 UTC (``end`` is exclusive)."""
        return {"start_ms": self.start_ms, "end_ms": self.end_ms,
                "start": _iso(self.start_ms), "end": _iso(self.end_ms)}


def window_of(ts_ms: int, size_ms: int, offset_ms: int = 0) -> Window:
    """The tumbling window of ``size_ms`` containing ``ts_ms``, aligned like Flink's (negative ``ts_ms`` too).

    ``size_ms`` must be positive and ``abs(offset_ms) < size_ms`` (Flink's rule; ``-o`` aligns like ``size - o``).
    """
    if size_ms <= 0:
        raise ValueError(f"size_ms must be > 0, got {size_ms}.")
    if not -size_ms < offset_ms < size_ms:
        raise ValueError(f"offset_ms must satisfy abs(offset_ms) < size_ms ({size_ms}), got {offset_ms}.")
    start = ts_ms - (ts_ms - offset_ms) % size_ms
    return Window(start, start + size_ms)


def closed_windows(
    progress: int | None, size_ms: int, *, after_end_ms: int, offset_ms: int = 0, lateness_ms: int = 0,
    limit: int = 10_000,
) -> list[Window]:
    """The tumbling windows with ``end_ms > after_end_ms`` that ``progress`` closes, oldest first, at most ``limit``.

    Unknown progress and NO_WATERMARK close none. END_OF_STREAM (or a progress far ahead) closes more windows
    than any list holds: the first ``limit`` are returned, and calling again with ``after_end_ms`` set to the
    last one's ``end_ms`` continues without gap or repeat.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}.")
    window = window_of(after_end_ms, size_ms, offset_ms)  # the first aligned window ending after after_end_ms
    closed: list[Window] = []
    while len(closed) < limit and window.is_closed(progress, lateness_ms):
        closed.append(window)
        window = Window(window.end_ms, window.end_ms + size_ms)
    return closed


class MonotoneProgress:
    """The highest progress observed: a lower value (a failover replaying old watermarks) never lowers it."""

    __slots__ = ("_value",)  # one per wait and stream: 10,000 waits in a triggerer hold 20,000 of them

    def __init__(self, initial: int | None = None):
        self._value = initial

    @property
    def value(self) -> int | None:
        """The highest progress observed so far; None until a known value arrives."""
        return self._value

    def observe(self, progress: int | None) -> bool:
        """Take ``progress`` into account; True exactly when it raised the value (None, equal or lower do not)."""
        if progress is None or (self._value is not None and progress <= self._value):
            return False
        self._value = progress
        return True


class StallDetector:
    """Tells when a running stream's progress has not moved for ``stall_timeout_s`` seconds of an injected clock."""

    __slots__ = ("stall_timeout_s", "_last_progress", "_moved_at", "_seen_at")

    def __init__(self, stall_timeout_s: float, now: float):
        if stall_timeout_s <= 0:
            raise ValueError(f"stall_timeout_s must be > 0, got {stall_timeout_s}.")
        self.stall_timeout_s = stall_timeout_s
        self._last_progress: int | None = None
        self._moved_at = now
        self._seen_at = now

    def observe(self, progress: int | None, now: float) -> bool:
        """Record ``progress`` at ``now``; True when stalled (no move for ``>= stall_timeout_s``).

        Any change of the known progress is a move, down included (a restarted job is alive); None is not.
        A stream whose last known progress is END_OF_STREAM has ended and is never stalled.
        """
        if progress is not None and progress != self._last_progress:
            self._last_progress = progress
            self._moved_at = now
        self._seen_at = now
        return self._last_progress != END_OF_STREAM and self.stalled_for >= self.stall_timeout_s

    @property
    def stalled_for(self) -> float:
        """Seconds from the last move (or construction) to the last observation."""
        return self._seen_at - self._moved_at

    @property
    def stalls_from(self) -> float:
        """The clock value before which no observation can make :meth:`observe` report a stall: the last move
        plus ``stall_timeout_s``, less a millisecond (so float rounding can only make it early, never late).
        Later moves only push the stall further away."""
        return self._moved_at + self.stall_timeout_s - 0.001

    @property
    def last_progress(self) -> int | None:
        """The last known progress; None until one was observed."""
        return self._last_progress


def to_epoch_ms(value: Any) -> int:
    """An event-time instant as epoch ms: a datetime (naive = UTC), an ISO-8601 string, or an int of ms."""
    if isinstance(value, bool):
        raise FlinkConfigurationError(f"target must be a time, got {value!r}.")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise FlinkConfigurationError(
                f"target {value!r} is not a time. To fix this, pass a datetime, an ISO-8601 string "
                "(e.g. '{{ data_interval_end }}') or epoch milliseconds."
            ) from exc
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp() * 1000)
    raise FlinkConfigurationError(f"target must be a datetime, ISO-8601 string or epoch ms, got {type(value)}.")
