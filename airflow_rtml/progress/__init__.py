"""The event-time core: watermarks, windows, progress signals and the decision of a progress wait.

Pure: standard library only, no Airflow, no I/O, clocks injected (a test forbids an Airflow import here).

* :mod:`~airflow_rtml.progress.watermarks` — watermark values and their one validation, windows (one ended-input
  rule), monotone progress, stall detection;
* :mod:`~airflow_rtml.progress.signals` — progress signals on a Kafka topic and their aggregation (runs,
  duplicated sources);
* :mod:`~airflow_rtml.progress.waits` — :class:`Observation` (what one poll of a stream established) and
  :class:`ProgressWait` (never early; commit-aware on Flink's own checkpoint ids, per attempt),
  :class:`WakeIndex` (which of many waits one observation concerns);
* :mod:`~airflow_rtml.progress.events` — the typed trigger event payloads.

Everything is re-exported here: ``from airflow_rtml.progress import parse_watermark`` keeps working.
"""

from airflow_rtml.progress.events import EventStatus, FailureReason, make_event
from airflow_rtml.progress.signals import ProgressSignal, SignalAggregator
from airflow_rtml.progress.waits import (
    FAILURE_STATES,
    CommittedProgress,
    Observation,
    ProgressWait,
    WakeIndex,
    short_cause,
)
from airflow_rtml.progress.watermarks import (
    END_OF_STREAM,
    NO_WATERMARK,
    MonotoneProgress,
    ProgressParseError,
    StallDetector,
    Window,
    closed_windows,
    combine,
    describe,
    parse_watermark,
    progress_from_vertex_metrics,
    threshold_for,
    to_epoch_ms,
    window_of,
)

__all__ = [
    "END_OF_STREAM", "FAILURE_STATES", "CommittedProgress", "NO_WATERMARK", "EventStatus", "FailureReason", "MonotoneProgress",
    "Observation", "ProgressParseError", "ProgressSignal", "ProgressWait", "SignalAggregator", "StallDetector", "WakeIndex",
    "Window", "closed_windows", "combine", "describe", "make_event", "parse_watermark",
    "progress_from_vertex_metrics", "short_cause", "threshold_for", "window_of",
    "to_epoch_ms",
]
