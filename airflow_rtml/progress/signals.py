"""Progress signals: producers outside Flink say how far their stream's event time has come.

A signal is one record on a Kafka *progress topic* (JSON value, key = stream name)::

    {"stream": str, "watermark_ms": int, "source": str, "emitted_at_ms": int, "final": bool, "run": str}

``source`` names the producer; ``run`` (optional, recommended) names one *run* of it: a fresh id each time the
producer process starts (``rtml progress relay`` and :func:`~airflow_rtml.progress_relay.publish` send a
random one). A stream's progress is the minimum over its producers of each producer's progress.

Per producer, progress is the latest run's, monotone within that run (a lower value of the same run is a
regression: ignored and counted). Runs are ordered by first appearance in the topic, which is a total order
per stream (every signal of a stream has the same key, so lands on the same partition):

* ``final`` ends the *run* that sent it (it counts as END_OF_STREAM while that run is the producer's latest).
  A new run of the producer starts over: its progress is its own, so a re-run after a final is not ignored,
  and new waits wait for it.
* A new run does not take over from the one before at once: a restarted producer and a second process that
  uses the same source name look alike until the older run signals again. Until the newer run has signalled
  for :data:`RUN_TAKEOVER_MS` of its own time (from its first ``emitted_at_ms`` to its latest: one producer's
  clock, never compared with another's) and at least :data:`RUN_TAKEOVER_SIGNALS` times, with no signal of the
  older run in between, the source's progress is the minimum of both (never early; a restart delays the waits
  on the source by at most that long). A run that sent ``final`` holds nothing back.
* Signals of one stream are normally on one partition (key = stream), so read in order. Where they are not
  (partitions added, producers with different partitioners), an unnamed producer's ``final`` older (by its
  ``emitted_at_ms``) than the latest signal of its current run is stale and ignored.
* Two processes that use one source name show up as two runs that both keep signalling. Once an older run
  signals after a newer one appeared, the source is *duplicated*: its progress stays the minimum over its
  live runs (never the faster of two) and :meth:`SignalAggregator.duplicates` reports it.
* A signal without ``run`` belongs to the producer's unnamed run. For such a producer a lower value after a
  ``final`` starts a new run (a re-run); a lower value otherwise is a regression (ignored, counted, reported):
  without run ids two producers sharing one name cannot be told from one, which is why they should send one.

Pure: standard library only, no Airflow, no I/O.
"""

from __future__ import annotations

import dataclasses
import json
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from airflow_rtml.progress.watermarks import END_OF_STREAM, NO_WATERMARK, ProgressParseError, parse_watermark

__all__ = ["ProgressSignal", "SignalAggregator"]

_SIGNAL_FIELDS: dict[str, tuple[type, str]] = {
    "stream": (str, "a non-empty string"),
    "watermark_ms": (int, "an integer in [Long.MIN_VALUE, Long.MAX_VALUE] (or a numeric string in JSON)"),
    "source": (str, "a non-empty string"),
    "emitted_at_ms": (int, "an integer"),
    "final": (bool, "a boolean"),
}
_MAX_NAME = 1000  # stream / source / run names longer than this are not names
#: How long (in the newer run's ``emitted_at_ms``) an older, silent, not-final run of a producer still holds the
#: producer's progress back: twice a heartbeat of two minutes; the relay heartbeats every 30 s.
RUN_TAKEOVER_MS = 120_000
#: ... and for at least this many signals of the newer run.
RUN_TAKEOVER_SIGNALS = 3


@dataclass(frozen=True)
class ProgressSignal:
    """A record of a Kafka progress topic (key = ``stream``): run ``run`` of producer ``source`` reached
    ``watermark_ms``.

    Construction checks every field's type (a bool is not an int) and raises :class:`ProgressParseError`
    naming the field. ``final`` says this run of the producer ended; ``run`` identifies the run (None: the
    producer's unnamed run; see the module docstring).
    """

    stream: str
    watermark_ms: int
    source: str
    emitted_at_ms: int
    final: bool = False
    run: str | None = None

    def __post_init__(self) -> None:
        for name, (kind, expected) in _SIGNAL_FIELDS.items():
            value = getattr(self, name)
            valid = isinstance(value, kind) and not (kind is int and isinstance(value, bool)) and value != ""
            if valid and name == "watermark_ms":
                valid = NO_WATERMARK <= value <= END_OF_STREAM
            if valid and kind is str:
                valid = len(value) <= _MAX_NAME
            if not valid:
                raise self._error(f"field {name!r} must be {expected}, got {reprlib.repr(value)}")
        if self.run is not None and not (isinstance(self.run, str) and 0 < len(self.run) <= _MAX_NAME):
            raise self._error(f"field 'run' must be a non-empty string or absent, got {reprlib.repr(self.run)}")

    @staticmethod
    def _error(detail: str) -> ProgressParseError:
        return ProgressParseError(f"Bad progress signal: {detail}.")

    def to_json(self) -> bytes:
        """The compact UTF-8 JSON value of the record; :meth:`from_json` reads it back to an equal signal."""
        data = dataclasses.asdict(self)
        if self.run is None:
            del data["run"]
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> ProgressSignal:
        """Read a signal strictly: a missing or mistyped field raises :class:`ProgressParseError` naming it.

        ``final`` may be absent (False), ``run`` too (None); ``watermark_ms`` may be a numeric string (read by
        :func:`~airflow_rtml.progress.parse_watermark`, the same validation as every other spelling); unknown
        fields are ignored, so producers can add some. Any record that cannot be read — not JSON, nested too
        deeply for the parser, not UTF-8 — raises :class:`ProgressParseError`, never anything else.
        """
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, nesting bombs
            raise cls._error(f"not JSON ({type(err).__name__}: {str(err)[:200]}): {reprlib.repr(raw)}") from None
        if not isinstance(data, dict):
            raise cls._error(f"expected a JSON object, got {reprlib.repr(data)}")
        for name in _SIGNAL_FIELDS:
            if name not in data and name != "final":
                raise cls._error(f"field {name!r} is missing in {reprlib.repr(data)}")
        watermark = data["watermark_ms"]
        if isinstance(watermark, str):
            parsed = parse_watermark(watermark, origin="progress signal field 'watermark_ms'")
            watermark = watermark if parsed is None else parsed
        return cls(data["stream"], watermark, data["source"], data["emitted_at_ms"], data.get("final", False),
                   data.get("run"))


@dataclass
class _Run:
    watermark: int
    final: bool
    first_seq: int
    last_seq: int
    last_emitted_ms: int
    first_emitted_ms: int = 0
    signals: int = 1


@dataclass
class _Source:
    runs: dict[str | None, _Run] = field(default_factory=dict)
    duplicated: bool = False

    def latest(self) -> _Run:
        return max(self.runs.values(), key=lambda r: r.first_seq)


class SignalAggregator:
    """Progress per stream from progress signals: the minimum over its producers (see the module docstring).

    With ``expected_sources``, a stream's progress stays None until each of them has reported (a producer
    that never reported must not let the minimum run ahead); other producers still count in the minimum.
    """

    def __init__(self, expected_sources: Iterable[str] | None = None):
        if isinstance(expected_sources, str):
            raise TypeError("expected_sources must be an iterable of source names, not a single string.")
        self.expected_sources = None if expected_sources is None else frozenset(expected_sources)
        self.regressions = 0
        self._streams: dict[str, dict[str, _Source]] = {}
        self._seq = 0

    def add(self, signal: ProgressSignal) -> None:
        """Take ``signal`` into account (idempotent; a regression within a run is ignored and counted)."""
        self._seq += 1
        source = self._streams.setdefault(signal.stream, {}).setdefault(signal.source, _Source())
        value = END_OF_STREAM if signal.final else signal.watermark_ms
        run = source.runs.get(signal.run)
        if run is not None and signal.run is None and run.final and value < END_OF_STREAM:
            run = None  # an unnamed producer that sends again after its final: a new run of it
        if run is not None and signal.run is None and signal.final and signal.emitted_at_ms < run.last_emitted_ms:
            self.regressions += 1  # an unnamed producer's old final read after its re-run (another partition)
            return
        if run is None:
            source.runs[signal.run] = _Run(value, signal.final, self._seq, self._seq, signal.emitted_at_ms,
                                           signal.emitted_at_ms)
        else:
            newest = source.latest()
            if run is not newest and not run.final:
                source.duplicated = True  # an older run still signals after a newer one appeared
            run.last_seq, run.signals = self._seq, run.signals + 1
            run.last_emitted_ms = max(run.last_emitted_ms, signal.emitted_at_ms)
            if value < run.watermark:
                self.regressions += 1
            else:
                run.watermark, run.final = value, run.final or signal.final
        self._prune(source)

    @staticmethod
    def _holds_back(run: _Run, newest: _Run, duplicated: bool) -> bool:
        """Whether an older run still counts: not final, and still signalling (a duplicate) or not yet taken over."""
        if run is newest or run.final:
            return run is newest
        if duplicated and run.last_seq >= newest.first_seq:
            return True
        # Measured on the newer run's own clock only (its first and latest signal), with no signal of the older
        # run since the newer one appeared: two producers' clocks are never compared.
        taken_over = (run.last_seq < newest.first_seq
                      and newest.last_emitted_ms - newest.first_emitted_ms >= RUN_TAKEOVER_MS
                      and newest.signals >= RUN_TAKEOVER_SIGNALS)
        return not taken_over

    def _prune(self, source: _Source) -> None:
        """Forget runs that can no longer matter (older than the latest and no longer holding it back)."""
        newest = source.latest()
        for key in [k for k, r in source.runs.items() if not self._holds_back(r, newest, source.duplicated)]:
            del source.runs[key]

    def _source_progress(self, source: _Source) -> int:
        newest = source.latest()
        return min(r.watermark for r in source.runs.values() if self._holds_back(r, newest, source.duplicated))

    def progress(self, stream: str) -> int | None:
        """The stream's progress; None if no producer (or not every expected one) has reported."""
        sources = self.sources(stream)
        if self.expected_sources is not None and not self.expected_sources.issubset(sources):
            return None
        return min(sources.values(), default=None)

    def sources(self, stream: str) -> dict[str, int]:
        """The stream's per-producer progress (END_OF_STREAM for a producer whose latest run sent ``final``)."""
        return {name: self._source_progress(src) for name, src in self._streams.get(stream, {}).items()}

    def duplicates(self, stream: str) -> list[str]:
        """The stream's sources that more than one live process signals under (see the module docstring)."""
        return sorted(name for name, src in self._streams.get(stream, {}).items() if src.duplicated)
