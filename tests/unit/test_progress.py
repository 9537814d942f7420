"""Event-time progress domain: watermark parsing, windows, monotonicity, stalls, progress signals."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from airflow_rtml.exceptions import RtmlError
from airflow_rtml.progress import (
    END_OF_STREAM,
    NO_WATERMARK,
    MonotoneProgress,
    ProgressParseError,
    ProgressSignal,
    SignalAggregator,
    StallDetector,
    Window,
    closed_windows,
    combine,
    describe,
    parse_watermark,
    progress_from_vertex_metrics,
    threshold_for,
    window_of,
)

MIN = 60_000
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20.000Z


def test_sentinels_are_javas_long_bounds():
    assert NO_WATERMARK == -9223372036854775808
    assert END_OF_STREAM == 9223372036854775807


def test_module_imports_no_airflow():
    code = (
        "import sys, airflow_rtml.progress; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('airflow', 'pyflink')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- parse_watermark ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_700_000_000_000, 1_700_000_000_000),
        (0, 0),
        (-5, -5),
        (1.7e12, 1_700_000_000_000),
        (1700000000123.0, 1_700_000_000_123),
        ("1700000000000", 1_700_000_000_000),
        ("  1700000000000\n", 1_700_000_000_000),
        ("+42", 42),
        ("1.7E12", 1_700_000_000_000),
        ("1.7e+12", 1_700_000_000_000),
        ("1700000000123.0", 1_700_000_000_123),
        (".5E1", 5),
        ("-9223372036854775808", NO_WATERMARK),
        ("9223372036854775807", END_OF_STREAM),
        ("-9.223372036854776E18", NO_WATERMARK),
        ("9.223372036854776E18", END_OF_STREAM),
        (-9.223372036854776e18, NO_WATERMARK),
        (9.223372036854776e18, END_OF_STREAM),
        (float(END_OF_STREAM), END_OF_STREAM),  # rounds up to 2**63
        (float(NO_WATERMARK), NO_WATERMARK),
    ],
)
def test_parse_watermark_reads_ints_doubles_and_strings(value, expected):
    result = parse_watermark(value)
    assert result == expected and type(result) is int


@pytest.mark.parametrize("value", [2**70, -(2**70), 1e30, -1e300, "1e30", "1E30", "-1e999999", "1e999999",
                                   str(2**64), "9" * 65])
def test_parse_watermark_rejects_values_outside_a_java_long_in_every_spelling(value):
    # Clamping "1e30" to END_OF_STREAM closed every window of the stream (issue 10, finding 4).
    with pytest.raises(ProgressParseError, match="outside the range|not an integer"):
        parse_watermark(value)


@pytest.mark.parametrize("value", [None, "", "   ", []])
def test_parse_watermark_unknown_values_are_none(value):
    assert parse_watermark(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2**63, END_OF_STREAM),
        (-(2**63) - 1, NO_WATERMARK),
        ("9.22337203685477E18", END_OF_STREAM),  # Long.MAX_VALUE rendered with 15 significant digits
        ("-9.22337203685478E18", NO_WATERMARK),
        (END_OF_STREAM - 10_000, END_OF_STREAM),
        (NO_WATERMARK + 10_000, NO_WATERMARK),
    ],
)
def test_parse_watermark_snaps_onto_the_sentinels(value, expected):
    assert parse_watermark(value) == expected


def test_parse_watermark_leaves_values_just_outside_the_sentinel_slack_alone():
    assert parse_watermark(END_OF_STREAM - 10_001) == END_OF_STREAM - 10_001
    assert parse_watermark(NO_WATERMARK + 10_001) == NO_WATERMARK + 10_001


@pytest.mark.parametrize(("value", "expected"), [(1.9, 1), (-1.1, -2), ("2.999", 2), ("-0.5", -1)])
def test_parse_watermark_floors_fractions_so_progress_is_never_overstated(value, expected):
    assert parse_watermark(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        True,
        False,
        "abc",
        "12abc",
        "1_000",
        "0x10",
        "1,5",
        "1.2.3",
        "e5",
        "١٢٣",  # Arabic-Indic digits: int() would accept them
        [1],
        ["1"],
        {"value": "1"},
        b"123",
        object(),
    ],
)
def test_parse_watermark_rejects_garbage(value):
    with pytest.raises(ProgressParseError):
        parse_watermark(value)


def test_parse_error_names_value_and_origin_and_is_a_value_error():
    with pytest.raises(ProgressParseError, match=r"subtask 3.*'garbage'") as err:
        parse_watermark("garbage", origin="subtask 3")
    assert isinstance(err.value, ValueError) and isinstance(err.value, RtmlError)


# --- combine / vertex metrics ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([5, 3, 9], 3),
        ([7], 7),
        ([], None),
        ([5, None, 9], None),
        ([None], None),
        ([5, NO_WATERMARK, 9], NO_WATERMARK),
        ([END_OF_STREAM, 4], 4),
        ([END_OF_STREAM, END_OF_STREAM], END_OF_STREAM),
    ],
)
def test_combine_is_the_minimum_ignoring_no_part(parts, expected):
    assert combine(parts) == expected


def test_combine_accepts_a_one_shot_iterator():
    assert combine(iter([4, 2, 8])) == 2
    assert combine(x for x in ()) is None


def test_vertex_metrics_min_over_subtasks_with_double_strings():
    metrics = {"0.currentInputWatermark": "1700000000500", "1.currentInputWatermark": "1.7E12",
               "0.currentOutputWatermark": "1", "1.numRecordsIn": "99"}
    assert progress_from_vertex_metrics(metrics) == 1_700_000_000_000


def test_vertex_metrics_other_metric_and_operator_scoped_names():
    metrics = {"0.currentInputWatermark": "5", "0.Map.currentOutputWatermark": "20",
               "1.Map.currentOutputWatermark": 10.0}
    assert progress_from_vertex_metrics(metrics, metric="currentOutputWatermark") == 10


def test_vertex_metrics_aggregated_name_and_sentinel_double():
    assert progress_from_vertex_metrics({"currentInputWatermark": -9.223372036854776e18}) == NO_WATERMARK
    assert progress_from_vertex_metrics({"currentInputWatermark": "9.223372036854776E18"}) == END_OF_STREAM


def test_vertex_metrics_one_subtask_without_watermark_yet_holds_all_back():
    metrics = {"0.currentInputWatermark": "900", "1.currentInputWatermark": "-9223372036854775808"}
    assert progress_from_vertex_metrics(metrics) == NO_WATERMARK


def test_vertex_metrics_unknown_subtask_makes_progress_unknown():
    assert progress_from_vertex_metrics({"0.currentInputWatermark": "900", "1.currentInputWatermark": ""}) is None


@pytest.mark.parametrize(
    "metrics",
    [
        {},
        {"0.numRecordsIn": "1"},
        {"0.currentInput1Watermark": "5"},  # a two-input operator's per-input gauge is another metric
        {"0.xcurrentInputWatermark": "5"},
    ],
)
def test_vertex_metrics_absent_metric_is_none(metrics):
    assert progress_from_vertex_metrics(metrics) is None


def test_vertex_metrics_bad_value_names_the_entry():
    with pytest.raises(ProgressParseError, match="1.currentInputWatermark"):
        progress_from_vertex_metrics({"0.currentInputWatermark": "5", "1.currentInputWatermark": "NaN"})


# --- describe ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("watermark", "expected"),
    [
        (None, "unknown"),
        (NO_WATERMARK, "none yet"),
        (END_OF_STREAM, "ended"),
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (1_795_600_800_000, "2026-11-25T10:00:00.000Z"),
        (1_795_600_800_007, "2026-11-25T10:00:00.007Z"),
    ],
)
def test_describe(watermark, expected):
    assert describe(watermark) == expected


def test_describe_off_the_calendar_falls_back_to_milliseconds():
    assert describe(10**17) == "100000000000000000 ms since epoch"


# --- windows -----------------------------------------------------------------------------------------------


def test_window_bounds_and_dict():
    w = Window(T0, T0 + MIN)
    assert w.max_timestamp == T0 + MIN - 1
    assert w.to_dict() == {"start_ms": T0, "end_ms": T0 + MIN,
                           "start": "2023-11-14T22:13:20.000Z", "end": "2023-11-14T22:14:20.000Z"}
    json.dumps(w.to_dict())


@pytest.mark.parametrize(("start", "end"), [(10, 10), (10, 9)])
def test_empty_or_inverted_window_is_rejected(start, end):
    with pytest.raises(ValueError, match="start_ms < end_ms"):
        Window(start, end)


def test_window_closes_exactly_at_end_minus_one():
    w = Window(T0, T0 + MIN)
    assert not w.is_closed(w.end_ms - 2)
    assert w.is_closed(w.end_ms - 1)
    assert w.is_closed(w.end_ms)


def test_lateness_shifts_the_closing_point_by_exactly_lateness():
    w = Window(T0, T0 + MIN)
    assert not w.is_closed(w.end_ms - 2 + 5_000, lateness_ms=5_000)
    assert w.is_closed(w.end_ms - 1 + 5_000, lateness_ms=5_000)
    assert not w.is_closed(w.end_ms - 1, lateness_ms=5_000)


def test_unknown_and_no_watermark_close_nothing_and_end_of_stream_closes_all():
    lowest = Window(NO_WATERMARK - 1, NO_WATERMARK + 1)  # its max timestamp is NO_WATERMARK itself
    assert not lowest.is_closed(NO_WATERMARK)
    assert not Window(0, 1).is_closed(None)
    highest = Window(END_OF_STREAM - 10, END_OF_STREAM + 10)
    assert highest.is_closed(END_OF_STREAM, lateness_ms=10**9)
    assert not highest.is_closed(END_OF_STREAM - 1)


def test_threshold_for():
    assert threshold_for(T0) == T0 - 1
    assert threshold_for(T0, lateness_ms=250) == T0 + 249
    assert Window(0, T0).is_closed(threshold_for(T0, 250), 250)
    assert not Window(0, T0).is_closed(threshold_for(T0, 250) - 1, 250)


def test_negative_lateness_is_rejected():
    with pytest.raises(ValueError, match="lateness_ms"):
        threshold_for(T0, -1)
    with pytest.raises(ValueError, match="lateness_ms"):
        Window(0, 10).is_closed(None, lateness_ms=-1)


@pytest.mark.parametrize(
    ("ts", "size", "offset", "start"),
    [
        (0, 10, 0, 0),
        (9, 10, 0, 0),
        (10, 10, 0, 10),
        (-1, 10, 0, -10),
        (-10, 10, 0, -10),
        (-11, 10, 0, -20),
        (7, 10, 3, 3),
        (2, 10, 3, -7),
        (3, 10, 3, 3),
        (-8, 10, 3, -17),
        (-7, 10, 3, -7),
        (5, 10, -3, -3),  # Flink allows abs(offset) < size; -3 aligns like 7
        (7, 10, -3, 7),
        (T0 + 39_999, MIN, 0, T0 - 20_000),  # T0 = 28333333 min + 20 s
        (T0 + 40_000, MIN, 0, T0 + 40_000),
    ],
)
def test_window_of_matches_flinks_alignment(ts, size, offset, start):
    w = window_of(ts, size, offset)
    assert (w.start_ms, w.end_ms) == (start, start + size)
    assert w.start_ms <= ts <= w.max_timestamp


@pytest.mark.parametrize(("size", "offset"), [(0, 0), (-10, 0), (10, 10), (10, -10), (10, 11)])
def test_window_of_validates_size_and_offset(size, offset):
    with pytest.raises(ValueError):
        window_of(5, size, offset)


def test_closed_windows_in_order_after_the_given_end():
    got = closed_windows(100 * MIN - 1, MIN, after_end_ms=97 * MIN)
    assert got == [Window(97 * MIN, 98 * MIN), Window(98 * MIN, 99 * MIN), Window(99 * MIN, 100 * MIN)]


def test_closed_windows_boundary_and_after_end_inside_a_window():
    assert closed_windows(100 * MIN - 2, MIN, after_end_ms=99 * MIN) == []
    assert closed_windows(100 * MIN - 1, MIN, after_end_ms=99 * MIN) == [Window(99 * MIN, 100 * MIN)]
    # after_end_ms inside a window: that window ends after it, so it is the first candidate
    assert closed_windows(100 * MIN - 1, MIN, after_end_ms=99 * MIN + 1) == [Window(99 * MIN, 100 * MIN)]
    assert closed_windows(100 * MIN - 1, MIN, after_end_ms=100 * MIN - 1) == [Window(99 * MIN, 100 * MIN)]
    assert closed_windows(100 * MIN - 1, MIN, after_end_ms=100 * MIN) == []
    assert closed_windows(101 * MIN - 1, MIN, after_end_ms=100 * MIN) == [Window(100 * MIN, 101 * MIN)]


def test_closed_windows_with_offset_and_lateness():
    got = closed_windows(35 + 5 - 1, 10, after_end_ms=13, offset_ms=3, lateness_ms=5)
    assert got == [Window(13, 23), Window(23, 33)]
    assert closed_windows(33 + 5 - 2, 10, after_end_ms=23, offset_ms=3, lateness_ms=5) == []


@pytest.mark.parametrize("progress", [None, NO_WATERMARK])
def test_closed_windows_none_without_progress(progress):
    assert closed_windows(progress, MIN, after_end_ms=-(10**15)) == []


def test_closed_windows_end_of_stream_is_capped_and_pages_without_gap():
    first = closed_windows(END_OF_STREAM, MIN, after_end_ms=0, limit=5)
    assert [w.start_ms for w in first] == [0, MIN, 2 * MIN, 3 * MIN, 4 * MIN]
    again = closed_windows(END_OF_STREAM, MIN, after_end_ms=first[-1].end_ms, limit=2)
    assert again == [Window(5 * MIN, 6 * MIN), Window(6 * MIN, 7 * MIN)]
    assert len(closed_windows(END_OF_STREAM, 1, after_end_ms=0)) == 10_000


def test_closed_windows_limit_caps_ordinary_progress_too():
    assert len(closed_windows(10**6, 1, after_end_ms=0, limit=3)) == 3


@pytest.mark.parametrize(
    "kwargs",
    [{"size_ms": 0}, {"offset_ms": MIN}, {"limit": 0}, {"lateness_ms": -1}],
)
def test_closed_windows_validates_arguments(kwargs):
    args = {"size_ms": MIN, "after_end_ms": 0} | kwargs
    with pytest.raises(ValueError):
        closed_windows(T0, **args)


# --- MonotoneProgress --------------------------------------------------------------------------------------


def test_monotone_progress_never_decreases():
    m = MonotoneProgress()
    assert m.value is None
    assert m.observe(None) is False and m.value is None
    assert m.observe(NO_WATERMARK) is True and m.value == NO_WATERMARK
    assert m.observe(100) is True and m.value == 100
    assert m.observe(100) is False
    assert m.observe(40) is False and m.value == 100  # failover replay
    assert m.observe(None) is False and m.value == 100
    assert m.observe(101) is True and m.value == 101
    assert m.observe(END_OF_STREAM) is True and m.value == END_OF_STREAM
    assert m.observe(5) is False and m.value == END_OF_STREAM


def test_monotone_progress_initial_value_is_the_floor():
    m = MonotoneProgress(initial=500)
    assert m.value == 500
    assert m.observe(499) is False and m.value == 500
    assert m.observe(501) is True


# --- StallDetector -----------------------------------------------------------------------------------------


def test_stall_after_exactly_the_timeout_without_a_move():
    d = StallDetector(30, now=1000.0)
    assert d.observe(5, now=1000.0) is False
    assert d.observe(5, now=1029.9) is False
    assert d.observe(5, now=1030.0) is True
    assert d.stalled_for == 30.0 and d.last_progress == 5


def test_a_move_resets_the_stall_clock():
    d = StallDetector(30, now=0.0)
    d.observe(5, now=0.0)
    assert d.observe(5, now=31.0) is True
    assert d.observe(6, now=32.0) is False and d.stalled_for == 0.0
    assert d.observe(6, now=61.0) is False and d.stalled_for == 29.0
    assert d.observe(6, now=62.0) is True


def test_a_lower_value_counts_as_a_move():
    d = StallDetector(30, now=0.0)
    d.observe(100, now=0.0)
    assert d.observe(90, now=40.0) is False and d.last_progress == 90


def test_unknown_progress_is_no_move():
    d = StallDetector(30, now=0.0)
    d.observe(5, now=0.0)
    assert d.observe(None, now=20.0) is False
    assert d.observe(None, now=30.0) is True
    assert d.last_progress == 5
    assert d.observe(5, now=31.0) is True  # same value again after unknown: still no move


def test_never_any_progress_stalls_from_construction():
    d = StallDetector(10, now=100.0)
    assert d.stalled_for == 0.0 and d.last_progress is None
    assert d.observe(None, now=109.0) is False
    assert d.observe(None, now=110.0) is True and d.stalled_for == 10.0


def test_stuck_at_no_watermark_is_a_stall():
    d = StallDetector(10, now=0.0)
    assert d.observe(NO_WATERMARK, now=0.0) is False
    assert d.observe(NO_WATERMARK, now=10.0) is True


def test_end_of_stream_is_never_a_stall():
    d = StallDetector(10, now=0.0)
    d.observe(END_OF_STREAM, now=0.0)
    assert d.observe(END_OF_STREAM, now=1e6) is False
    assert d.observe(None, now=2e6) is False
    assert d.stalled_for == 2e6


@pytest.mark.parametrize("timeout", [0, -1])
def test_stall_timeout_must_be_positive(timeout):
    with pytest.raises(ValueError):
        StallDetector(timeout, now=0.0)


# --- ProgressSignal ----------------------------------------------------------------------------------------

GOOD = {"stream": "features", "watermark_ms": T0, "source": "producer-1", "emitted_at_ms": T0 + 5, "final": False}


@pytest.mark.parametrize("final", [False, True])
def test_signal_round_trips_through_json(final):
    sig = ProgressSignal("features", T0, "producer-1", T0 + 5, final)
    raw = sig.to_json()
    assert isinstance(raw, bytes)
    assert json.loads(raw) == {"stream": "features", "watermark_ms": T0, "source": "producer-1",
                               "emitted_at_ms": T0 + 5, "final": final}
    assert ProgressSignal.from_json(raw) == sig
    assert ProgressSignal.from_json(raw.decode()) == sig


@pytest.mark.parametrize("watermark", [NO_WATERMARK, END_OF_STREAM])
def test_signal_round_trips_the_sentinels_exactly(watermark):
    sig = ProgressSignal("s", watermark, "p", 0)
    assert ProgressSignal.from_json(sig.to_json()).watermark_ms == watermark


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1700000000000", T0), ("1.7E12", T0), ("-9.223372036854776E18", NO_WATERMARK),
     ("9.223372036854776E18", END_OF_STREAM)],
)
def test_signal_watermark_may_be_a_numeric_string(value, expected):
    assert ProgressSignal.from_json(json.dumps(GOOD | {"watermark_ms": value})).watermark_ms == expected


def test_signal_final_defaults_to_false_and_unknown_fields_are_ignored():
    data = {k: v for k, v in GOOD.items() if k != "final"} | {"schema": 2}
    assert ProgressSignal.from_json(json.dumps(data)) == ProgressSignal("features", T0, "producer-1", T0 + 5)


@pytest.mark.parametrize("field", ["stream", "watermark_ms", "source", "emitted_at_ms"])
def test_signal_missing_field_is_named(field):
    data = {k: v for k, v in GOOD.items() if k != field}
    with pytest.raises(ProgressParseError, match=f"'{field}' is missing"):
        ProgressSignal.from_json(json.dumps(data))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stream", 5),
        ("stream", ""),
        ("stream", None),
        ("source", ["p"]),
        ("source", ""),
        ("watermark_ms", True),
        ("watermark_ms", 1.7e12),
        ("watermark_ms", None),
        ("watermark_ms", ""),
        ("watermark_ms", 2**63),
        ("watermark_ms", -(2**63) - 1),
        ("emitted_at_ms", False),
        ("emitted_at_ms", "1700000000000"),
        ("emitted_at_ms", 1.5),
        ("final", "true"),
        ("final", 1),
        ("final", None),
    ],
)
def test_signal_mistyped_field_is_named(field, value):
    with pytest.raises(ProgressParseError, match=f"field '{field}' must be"):
        ProgressSignal.from_json(json.dumps(GOOD | {field: value}))


def test_signal_empty_string_watermark_is_reported_as_sent():
    with pytest.raises(ProgressParseError, match="field 'watermark_ms' must be .*got ''"):
        ProgressSignal.from_json(json.dumps(GOOD | {"watermark_ms": ""}))


def test_signal_bad_numeric_string_watermark_names_the_field():
    with pytest.raises(ProgressParseError, match="watermark_ms.*'soon'"):
        ProgressSignal.from_json(json.dumps(GOOD | {"watermark_ms": "soon"}))


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ("42", "expected a JSON object"),
        ("null", "expected a JSON object"),
    ],
)
def test_signal_non_object_payload_is_rejected(raw, match):
    with pytest.raises(ProgressParseError, match=match):
        ProgressSignal.from_json(raw)


def test_signal_constructor_validates_too():
    with pytest.raises(ProgressParseError, match="field 'watermark_ms'"):
        ProgressSignal("s", True, "p", 0)
    with pytest.raises(ProgressParseError, match="field 'final'"):
        ProgressSignal("s", 1, "p", 0, final=0)


# --- SignalAggregator --------------------------------------------------------------------------------------


def sig(source: str, watermark: int, *, stream: str = "features", final: bool = False) -> ProgressSignal:
    return ProgressSignal(stream, watermark, source, 0, final)


def test_aggregator_is_the_min_over_producers():
    agg = SignalAggregator()
    assert agg.progress("features") is None
    agg.add(sig("a", 500))
    assert agg.progress("features") == 500
    agg.add(sig("b", 300))
    assert agg.progress("features") == 300
    agg.add(sig("b", 800))
    assert agg.progress("features") == 500
    assert agg.sources("features") == {"a": 500, "b": 800}
    assert agg.progress("other") is None and agg.sources("other") == {}


def test_aggregator_keeps_streams_apart():
    agg = SignalAggregator()
    agg.add(sig("a", 500, stream="x"))
    agg.add(sig("a", 100, stream="y"))
    assert (agg.progress("x"), agg.progress("y"), agg.regressions) == (500, 100, 0)


def test_aggregator_ignores_and_counts_a_regression_per_source():
    agg = SignalAggregator()
    agg.add(sig("a", 500))
    agg.add(sig("b", 600))
    agg.add(sig("a", 499))
    assert agg.progress("features") == 500 and agg.regressions == 1
    agg.add(sig("a", 500))  # a repeat is idempotent, not a regression
    assert agg.regressions == 1
    agg.add(sig("b", 550))
    assert agg.sources("features") == {"a": 500, "b": 600} and agg.regressions == 2


def test_aggregator_sources_is_a_copy():
    agg = SignalAggregator()
    agg.add(sig("a", 5))
    agg.sources("features")["a"] = 1
    assert agg.progress("features") == 5


def test_a_final_producer_no_longer_holds_the_min_back():
    agg = SignalAggregator()
    agg.add(sig("a", 100))
    agg.add(sig("b", 900))
    agg.add(sig("a", 150, final=True))
    assert agg.progress("features") == 900
    assert agg.sources("features")["a"] == END_OF_STREAM
    agg.add(sig("a", 200))  # after its final, a producer that signals again is a new run of it, not ignored
    assert agg.progress("features") == 200 and agg.sources("features")["a"] == 200 and agg.regressions == 0


def test_all_producers_final_means_end_of_stream():
    agg = SignalAggregator()
    agg.add(sig("a", 100, final=True))
    agg.add(sig("b", 200, final=True))
    assert agg.progress("features") == END_OF_STREAM


def test_expected_sources_hold_progress_until_each_reported():
    agg = SignalAggregator(expected_sources=["a", "b"])
    agg.add(sig("a", 900))
    assert agg.progress("features") is None
    agg.add(sig("c", 50))  # an unexpected producer does not complete the set, but counts in the min
    assert agg.progress("features") is None
    agg.add(sig("b", 700))
    assert agg.progress("features") == 50


def test_expected_source_that_ended_counts_as_reported():
    agg = SignalAggregator(expected_sources={"a", "b"})
    agg.add(sig("a", 10, final=True))
    agg.add(sig("b", 20, final=True))
    assert agg.progress("features") == END_OF_STREAM


def test_expected_sources_as_a_single_string_is_rejected():
    with pytest.raises(TypeError):
        SignalAggregator(expected_sources="ab")


def rsig(watermark: int, run: str, at_ms: int, *, final: bool = False, source: str = "p") -> ProgressSignal:
    return ProgressSignal("features", watermark, source, at_ms, final, run)


def test_a_new_run_takes_over_only_after_the_old_one_is_silent_long_enough():
    # A restarted producer and a second process under the same name look alike until the older run signals
    # again: until the takeover (120 s of the new run's time and 3 of its signals) the minimum of both counts.
    from airflow_rtml.progress.signals import RUN_TAKEOVER_MS

    agg = SignalAggregator()
    agg.add(rsig(500, "r1", 0))
    agg.add(rsig(900, "r2", 1_000))  # a new run, higher
    assert agg.progress("features") == 500  # not yet: r1 may still be alive
    agg.add(rsig(950, "r2", 2_000))
    agg.add(rsig(960, "r2", 1_000 + RUN_TAKEOVER_MS - 1))
    assert agg.progress("features") == 500  # r2 has signalled for less than the takeover time (its own clock)
    agg.add(rsig(970, "r2", 1_000 + RUN_TAKEOVER_MS))
    assert agg.progress("features") == 970 and agg.duplicates("features") == []  # taken over: a restart


def test_a_new_run_with_a_clock_far_ahead_does_not_take_over_sooner():
    # Red team: compared across two producers' clocks, a second process 3 minutes ahead took over a live run.
    agg = SignalAggregator()
    agg.add(rsig(100, "slow", 0))
    for i in range(3):
        agg.add(rsig(900 + i, "fast", 180_000 + i))  # its own span: 2 ms
    assert agg.progress("features") == 100


def test_two_live_processes_under_one_source_name_are_detected_and_the_slower_counts():
    agg = SignalAggregator()
    agg.add(rsig(100, "slow", 0))
    agg.add(rsig(900, "fast", 10))
    agg.add(rsig(110, "slow", 20))  # the older run signals after the newer one appeared: two processes
    agg.add(rsig(990, "fast", 500_000))  # far past the takeover time: still the minimum of both
    assert agg.progress("features") == 110 and agg.duplicates("features") == ["p"]


def test_a_final_run_holds_nothing_back_and_a_rerun_counts_from_its_own_progress():
    agg = SignalAggregator()
    agg.add(rsig(500, "r1", 0, final=True))
    assert agg.progress("features") == END_OF_STREAM
    agg.add(rsig(200, "r2", 10))  # a re-run after the final: its own progress, at once
    assert agg.progress("features") == 200


def test_a_lower_value_of_the_same_run_is_a_regression():
    agg = SignalAggregator()
    agg.add(rsig(500, "r1", 0))
    agg.add(rsig(400, "r1", 1))
    assert agg.progress("features") == 500 and agg.regressions == 1
