"""A wait's progress lines (issue 17): the first observation that does not end the wait is logged at once — a
deferred task's log says what it waits for and how far the stream is — then one line per interval."""

from __future__ import annotations

from airflow_rtml.progress import Observation, ProgressWait
from airflow_rtml.triggers.base import ProgressLog

T = 1_767_265_200_000  # 2026-01-01T11:00:00Z


class Lines:
    def __init__(self):
        self.lines: list[str] = []

    def info(self, fmt, *args):
        self.lines.append(fmt % args)


def test_the_first_observation_is_logged_then_one_line_per_interval():
    log, wait = Lines(), ProgressWait(stream="s", threshold_ms=T - 1, commit_aware=False, stall_timeout=None,
                                      deadline=None, by_name=True, now=0.0)
    progress_log = ProgressLog(log, "s", T - 1, every_s=3600)
    for i, progress in enumerate((T - 60_000, T - 30_000, T - 10_000)):
        obs = Observation(at=100.0 + i, job_id="j", state="RUNNING", progress_ms=progress)
        assert wait.evaluate(obs) is None
        progress_log.observe(wait, obs)
    assert len(log.lines) == 1, log.lines  # at once, then not again within the interval
    assert "2026-01-01T10:59:59.999Z" in log.lines[0] and "2026-01-01T10:59:00.000Z" in log.lines[0]
    assert "60.0s of event time to go" in log.lines[0]
