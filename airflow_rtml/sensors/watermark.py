"""StreamWatermarkSensor: a batch step waits until its input stream has completed a stretch of event time.

The stream → batch dependency for clock-scheduled DAGs: an hourly training task downstream of
``StreamWatermarkSensor(job_name="samples")`` starts when the sample stream's watermark says the run's hour is
complete (``progress >= data_interval_end - 1 + lateness``), and — with ``commit_aware=True`` — a checkpoint
has committed it, not when the clock says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypedDict

from airflow.sdk import Asset, BaseSensorOperator, Context, PokeReturnValue
from airflow.triggers.base import StartTriggerArgs

from airflow_rtml.exceptions import FlinkConfigurationError, StreamEnded
from airflow_rtml.hooks.flink import FlinkRestHook
from airflow_rtml.links import FlinkJobLink, StreamProgressLink
from airflow_rtml.operators.flink import _default_deferrable
from airflow_rtml.progress import (
    END_OF_STREAM,
    EventStatus,
    Window,
    closed_windows,
    describe,
    threshold_for,
    to_epoch_ms,
    window_of,
)
from airflow_rtml.sensors.base import _UNSET, FlinkSensorTimeout, RtmlSensorMixin, deprecated_alias  # noqa: F401
from airflow_rtml.triggers.base import ProgressLog
from airflow_rtml.triggers.flink import raise_for_event
from airflow_rtml.triggers.watermark import (
    INPUT_WATERMARK,
    FlinkWatermarkTrigger,
    _seconds_or_none,
    decide,
    wait_result,
)


def run_trigger_blocking(trigger: FlinkWatermarkTrigger, hook: FlinkRestHook) -> dict:
    """The trigger's own loop on a worker (the sync path): the same reader, the same decisions (:func:`decide`)."""
    hook.base_url  # noqa: B018 - resolve the connection synchronously, before the event loop starts
    reader = FlinkWatermarkTrigger.poller(trigger.serialize()[1], hook=hook)

    async def first() -> dict:
        async with aclosing(reader.observations()) as observations, \
                aclosing(decide(trigger.new_wait(), observations, trigger.log)) as events:
            async for event in events:
                return event
        raise RuntimeError("the poll loop ended")  # pragma: no cover - it never does

    return asyncio.run(first())


def first_look(trigger: FlinkWatermarkTrigger, hook: FlinkRestHook) -> dict | None:
    """One poll on the worker before deferring: the wait's event if that poll already decides it (reached,
    failed), else None. A deferral whose trigger fires at once costs a round trip and, in Airflow 3.3.2, can race
    the executor's report of the deferring process."""
    probe = FlinkWatermarkTrigger(**{**trigger.serialize()[1], "deadline": time.time(), "end_task_on_success": False})
    event = run_trigger_blocking(probe, hook)
    return None if event["status"] == "timeout" else event


def _first_poke_at(context: Context) -> float | None:
    """Epoch seconds of a reschedule-mode sensor's first poke in this try (Airflow's own record), or None."""
    ti = context.get("ti")
    try:
        first = ti.get_first_reschedule_date(context) if ti is not None else None
    except Exception:  # noqa: BLE001 - an Airflow without it: the missing job's grace counts from this poke
        return None
    return first.timestamp() if first is not None else None


class WatermarkWaitResult(TypedDict):
    """What :class:`StreamWatermarkSensor` returns (its XCom ``return_value``), on every path: finished on the
    worker (poke or reschedule mode, or the look before deferring) or resumed after the triggerer.

    ``progress_ms`` is the stream's progress when the wait fired (``>= threshold_ms``; ``Long.MAX_VALUE`` for an
    ended input), ``threshold_ms`` what it waited for (``target - 1 + lateness``), ``checkpoint_id`` the
    checkpoint that committed the crossing (commit-aware waits; else the latest completed one, or None),
    ``last_event_time_ms`` the highest progress seen before an input ended (equals ``progress_ms`` otherwise).
    """

    stream: str
    job_id: str | None
    progress_ms: int | None
    threshold_ms: int
    checkpoint_id: int | None
    last_event_time_ms: int | None


log = logging.getLogger(__name__)
#: The DAG object's attribute counting its StreamWatermarkSensor tasks with start_from_trigger=True.
_FROM_TRIGGER_WAITS = "_rtml_waits_from_trigger"


class StreamWatermarkSensor(RtmlSensorMixin, BaseSensorOperator):
    """Wait until a Flink job's event-time progress has passed ``target`` (an Airflow sensor; deferrable).

    Returns (XCom) a :class:`WatermarkWaitResult` dict on every path. Raises
    :class:`~airflow_rtml.exceptions.FlinkJobFailed` (job FAILED/CANCELED, with Flink's root cause),
    :class:`~airflow_rtml.exceptions.StreamStalled` (no progress for ``stall_timeout``),
    :class:`~airflow_rtml.exceptions.FlinkJobNotFound`, :class:`~airflow_rtml.sensors.base.FlinkSensorTimeout`
    (a :class:`~airflow_rtml.exceptions.FlinkWaitTimeout`; with ``soft_fail=True`` the task is skipped instead)
    — the same on the worker and in the triggerer. Many sensors on one job share one poll loop in the triggerer.

    Each poke is one read of the stream (:class:`~airflow_rtml.streams.flink.FlinkStreamReader`) decided by the
    same :class:`~airflow_rtml.progress.ProgressWait` the trigger uses. In ``mode="reschedule"`` each poke is a
    new process, so what needs several observations (``commit_aware``, ``stall_timeout``) is refused there: use
    ``deferrable=True`` or ``mode="poke"``. Never early on any path.

    Templated fields: ``target``, ``job_name``, ``job_id``, ``vertex``.

    :param job_name: the Flink job's name (``pipeline.name``), followed across upgrades (give exactly one of
        ``job_name``, ``job_id``).
    :param job_id: one job run, by id; its FINISHING before the threshold fails the wait.
    :param target: event time that must be complete (a datetime, ISO-8601 string or epoch ms): waits for
        ``progress >= target - 1 + lateness``, i.e. the window ending at ``target`` is closed. Default (None):
        the run's ``data_interval_end``; a run without data interval (Airflow 3: a manual or asset-triggered run
        without logical date) waits for its ``dag_run.run_after`` instead, and says so in the log.
    :param lateness: allowed lateness of the consumer (keeps the window open that much longer; not negative).
    :param commit_aware: also wait for a checkpoint after the crossing (exactly-once sinks made it visible).
    :param vertex: vertex id or part of its name whose input watermark is the progress (default: the sinks).
    :param metric: the watermark metric (default ``currentInputWatermark``).
    :param stall_timeout: fail with ``StreamStalled`` when a RUNNING job's progress does not move this long
        (seconds or timedelta); None: no stall check (only ``timeout`` ends a quiet wait).
    :param flink_conn_id: a ``flink_rest`` connection: the JobManager's REST API (with the extra
        ``metrics_reporter_port`` or ``metrics_reporter_urls``, progress is read from the TaskManagers' reporters).
    :param job_missing_timeout: how long a wait by ``job_name`` waits for a job of that name to appear (another
        DAG may be submitting it) before it raises ``FlinkJobNotFound`` (seconds or timedelta; default 5 minutes;
        0 or None: at once). The log says every minute that the job is not there yet. This is also what keeps a
        ``@continuous`` producer DAG over a missing job from starting a run every second. A wait by ``job_id``
        fails at once.
    :param deferrable: wait in the triggerer (default from ``[operators] default_deferrable``); it takes one
        look on the worker first, and a wait that look already decides does not defer.
    :param poke_interval: seconds (or timedelta) between reads of the stream, on the worker and in the
        triggerer; default 1.
    :param timeout: seconds (or timedelta) from the first try until the wait fails with ``FlinkSensorTimeout``
        (an absolute deadline in the triggerer, kept across triggerer restarts); default 6 hours.
    :param poll_interval: deprecated name of ``poke_interval`` (a ``DeprecationWarning``; giving both with
        different values raises ``FlinkConfigurationError``).
    :param start_from_trigger: start the wait in the triggerer: the scheduler defers the task directly, no worker
        slot is taken before the wait (Airflow 3.3's ``start_trigger_args``); the triggerer renders ``target``,
        ``job_name``, ``job_id`` and ``vertex``. The task still resumes on a worker to return its result or raise.
        Not for mapped tasks (Airflow 3.3 hands a mapped task's trigger none of its expanded arguments: such a
        task logs a warning and defers from the worker as with ``deferrable=True``).
    :param mode: ``"poke"`` (default: keeps the worker slot between reads) or ``"reschedule"`` (gives it back
        between reads; refuses ``commit_aware=True`` and ``stall_timeout``, which need several observations in
        one process); the worker path only: ``deferrable=True`` waits in the triggerer whatever the mode.
    :param soft_fail: a timeout skips the task instead of failing it, on the worker and in the triggerer; a
        FAILED job, a stall or an unknown job still fail it. Mutually exclusive with ``never_fail``.
    :param exponential_backoff: worker path only: read ever less often (Airflow's backoff from
        ``poke_interval``, capped by ``max_wait``); the triggerer reads every ``poke_interval``.
    :param max_wait: worker path only: the longest interval between reads with ``exponential_backoff``
        (seconds or timedelta).
    :param silent_fail: worker path only (Airflow's meaning): an exception a read raises other than a timeout
        (e.g. ``FlinkJobFailed``, ``StreamStalled``) is logged and the sensor reads on, so a failure ends the
        task only at the timeout. Transient errors are retried without it.
    :param never_fail: worker path only (Airflow's meaning): any exception a read raises (a failure too) skips
        the task instead of failing it; in the triggerer it acts like ``soft_fail``. Mutually exclusive with
        ``soft_fail``.
    """

    template_fields: Sequence[str] = ("target", "job_name", "job_id", "vertex")
    operator_extra_links = (StreamProgressLink(), FlinkJobLink())
    #: Round 1 ended a deferred success in the triggerer (``TaskSuccessEvent``). Airflow 3.3 stores XComs pushed
    #: that way JSON-encoded a second time, so ``xcom_pull`` returned a *string*: the task now always resumes on
    #: a worker and returns the dict from :meth:`execute_complete` (about 0.5 s later downstream).
    end_in_triggerer = False

    def __init__(
        self,
        *,
        job_name: str | None = None,
        job_id: str | None = None,
        target: Any = None,
        lateness: timedelta = timedelta(0),
        commit_aware: bool = False,
        vertex: str | None = None,
        metric: str = INPUT_WATERMARK,
        stall_timeout: timedelta | float | None = None,
        flink_conn_id: str = FlinkRestHook.default_conn_name,
        deferrable: bool | None = None,
        poke_interval: timedelta | float = 1.0,
        timeout: timedelta | float = timedelta(hours=6),
        poll_interval: Any = _UNSET,
        start_from_trigger: bool = False,
        job_missing_timeout: timedelta | float | None = timedelta(minutes=5),
        **kwargs: Any,
    ):
        task_id = kwargs.get("task_id", "?")
        poke_interval = deprecated_alias(task_id, "poll_interval", "poke_interval", poll_interval, poke_interval, 1.0)
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        if (job_name is None) == (job_id is None):
            raise FlinkConfigurationError(f"{self.task_id}: give exactly one of job_name= or job_id=.")
        if lateness < timedelta(0):
            raise FlinkConfigurationError(f"{self.task_id}: lateness must not be negative.")
        if isinstance(stall_timeout, (int, float)) and not isinstance(stall_timeout, bool):
            stall_timeout = timedelta(seconds=stall_timeout)
        self.job_name, self.job_id, self.target = job_name, job_id, target
        self.lateness, self.commit_aware, self.vertex, self.metric = lateness, commit_aware, vertex, metric
        self.stall_timeout = stall_timeout
        if isinstance(job_missing_timeout, timedelta):
            job_missing_timeout = job_missing_timeout.total_seconds()
        try:
            self.job_missing_timeout = _seconds_or_none("job_missing_timeout", job_missing_timeout)
        except FlinkConfigurationError as exc:
            raise FlinkConfigurationError(f"{self.task_id}: {exc}") from None
        self.flink_conn_id = flink_conn_id
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        if self.reschedule and not self.deferrable and (commit_aware or stall_timeout):
            raise FlinkConfigurationError(
                f"{self.task_id}: mode='reschedule' starts a new process for every poke, so a wait that needs "
                "several observations of the stream (commit_aware=True, stall_timeout=) cannot be decided in it. "
                "To fix this, use deferrable=True (waits in the triggerer, no worker slot) or mode='poke'."
            )
        self._threshold: int | None = None
        self._deadline: float | None = None
        self._poking: tuple | None = None  # (reader, wait, progress log) kept across pokes of one process
        self.start_from_trigger = bool(start_from_trigger)
        if self.start_from_trigger:
            if deferrable is False:
                raise FlinkConfigurationError(
                    f"{self.task_id}: start_from_trigger=True waits in the triggerer from the start; it cannot be "
                    "combined with deferrable=False. To fix this, drop one of them.")
            self.deferrable = True
            self.start_trigger_args = self._start_trigger_args()
            self._count_waits_from_trigger()

    #: Waits with ``start_from_trigger=True`` in one DAG from which a warning says what they cost the triggerer.
    FROM_TRIGGER_WARN_AT = 200

    def _count_waits_from_trigger(self) -> None:
        """Warn once per DAG when it holds :attr:`FROM_TRIGGER_WARN_AT` such waits: Airflow 3.3's triggerer
        deserializes the whole DAG for each of them (the cost grows with the square of the DAG's size)."""
        dag = getattr(self, "_dag", None)  # not .dag: outside a DAG that property raises RuntimeError
        if dag is None:
            return
        count = getattr(dag, _FROM_TRIGGER_WAITS, 0) + 1  # on the DAG object: a DAG's hash changes as it grows
        setattr(dag, _FROM_TRIGGER_WAITS, count)
        if count == self.FROM_TRIGGER_WARN_AT:
            log.warning(
                "DAG %s has %d waits with start_from_trigger=True. Airflow's triggerer deserializes the whole DAG "
                "for each of them when it starts them, in its event loop: measured, 1,000 in one DAG blocked it "
                "for over 30 s and Airflow marked it unhealthy (benchmarks/README.md). To fix this, split the "
                "waits over several DAGs, or use deferrable=True without start_from_trigger for a large fan-out "
                "(a mapped task, which also takes a worker slot only briefly).", dag.dag_id, count)

    # Airflow's default for a run that has no data interval is handled here, in the template: a wait started in
    # the triggerer has no execute() to pick it.
    DEFAULT_TARGET_TEMPLATE = ("{{ data_interval_end if data_interval_end is defined and data_interval_end is not "
                               "none else dag_run.run_after }}")

    def _start_trigger_args(self) -> StartTriggerArgs:
        """What the scheduler defers this task with when it starts in the triggerer (``start_from_trigger``): the
        wait's trigger kwargs with the templated fields unrendered (the triggerer renders them with the run's
        context), the target resolved to a threshold and the timeout to a deadline when the wait starts."""
        return StartTriggerArgs(
            trigger_cls=f"{FlinkWatermarkTrigger.__module__}.{FlinkWatermarkTrigger.__qualname__}",
            trigger_kwargs={
                "target": self.DEFAULT_TARGET_TEMPLATE if self.target in (None, "") else self.target,
                "lateness_ms": int(self.lateness.total_seconds() * 1000),
                "job_name": self.job_name or None, "job_id": self.job_id or None, "vertex": self.vertex,
                "metric": self.metric, "commit_aware": self.commit_aware,
                "stall_timeout": self.stall_timeout.total_seconds() if self.stall_timeout else None,
                "flink_conn_id": self.flink_conn_id, "poll_interval": float(self.poke_interval),
                "timeout_s": float(self.timeout), "end_task_on_success": False,
                **({"job_missing_timeout": self.job_missing_timeout} if self.job_missing_timeout else {}),
            },
            next_method="execute_complete",
            next_kwargs=None,
            timeout=timedelta(seconds=float(self.timeout) + FlinkWatermarkTrigger.START_TIMEOUT_GRACE_S),
        )

    # ------------------------------------------------------------------ what to wait for
    def resolve_target(self, context: Context) -> int:
        """``target`` as epoch ms; unset, the run's data interval end, else its ``run_after``."""
        if self.target not in (None, ""):
            return to_epoch_ms(self.target)
        end = context.get("data_interval_end")
        if end is not None:
            return to_epoch_ms(end)
        run_after = getattr(context.get("dag_run"), "run_after", None)
        if run_after is not None:
            self.log.info("This run has no data interval (no logical date): target defaults to its run_after, %s",
                          run_after)
            return to_epoch_ms(run_after)
        raise FlinkConfigurationError(
            f"{self.task_id}: target= is unset and this run has neither a data interval (data_interval_end) nor a "
            "run_after to default to. To fix this, pass target= (a datetime, an ISO-8601 string such as "
            "'{{ dag_run.run_after }}', or epoch ms)."
        )

    def threshold_ms(self, target_ms: int) -> int:
        return threshold_for(target_ms, int(self.lateness.total_seconds() * 1000))

    def trigger(self, deadline: float, threshold_ms: int | None = None) -> FlinkWatermarkTrigger:
        """The wait as a trigger (deferred path; its kwargs also build the worker path's reader and wait)."""
        if threshold_ms is None:  # round-1 call: the threshold of ``target`` as given
            threshold_ms = self.threshold_ms(to_epoch_ms(self.target))
        return FlinkWatermarkTrigger(
            threshold_ms=threshold_ms,
            job_name=self.job_name or None, job_id=self.job_id or None, vertex=self.vertex, metric=self.metric,
            commit_aware=self.commit_aware,
            stall_timeout=self.stall_timeout.total_seconds() if self.stall_timeout else None,
            flink_conn_id=self.flink_conn_id, poll_interval=self.poke_interval, deadline=deadline,
            end_task_on_success=False, job_missing_timeout=self.job_missing_timeout,
        )

    # ------------------------------------------------------------------ paths
    def execute(self, context: Context) -> WatermarkWaitResult:
        if self.start_from_trigger:  # the scheduler did not start it in the triggerer: say so, then defer from here
            self.log.warning(
                "start_from_trigger=True, but this wait started on a worker: Airflow starts a task in the triggerer "
                "only when it is not mapped (a mapped task's expanded arguments do not reach its trigger in Airflow "
                "3.3) and the installed Airflow supports it. It defers from the worker instead.")
        return self._wait_for(context, self.threshold_ms(self.resolve_target(context)))

    def _wait_for(self, context: Context, threshold_ms: int, **resume_kwargs: Any) -> Any:
        """Wait for ``threshold_ms`` on the path the arguments choose; return :meth:`execute_complete`'s value."""
        self._threshold, self._deadline, self._poking = threshold_ms, time.time() + self.timeout, None
        stream = self.job_name or self.job_id
        self.log.info("Waiting for stream %s to reach progress %s (timeout %.0fs, %s)", stream,
                      describe(threshold_ms), self.timeout, "deferrable" if self.deferrable else f"mode={self.mode}")
        if self.deferrable:
            trigger = self.trigger(self._deadline, threshold_ms)
            event = first_look(trigger, FlinkRestHook(self.flink_conn_id))
            if event is not None:  # already decided: no deferral whose trigger would fire at once
                return self.execute_complete(context, event, **resume_kwargs)
            self.defer(trigger=trigger, method_name="execute_complete", kwargs=resume_kwargs or None)
        return self.execute_complete(context, self._run_sensor(context), **resume_kwargs)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One read of the stream, decided by the wait; done with the success event as its value. Raises the
        wait's exception for a failure, :class:`FlinkSensorTimeout` at the deadline."""
        if self._threshold is None:
            self._threshold = self.threshold_ms(self.resolve_target(context))
        if self._poking is None or self.reschedule:
            deadline = None if self.reschedule else self._deadline  # reschedule: Airflow's own timeout check
            trigger = self.trigger(deadline, self._threshold)
            hook = FlinkRestHook(self.flink_conn_id)
            hook.base_url  # noqa: B018 - resolve the connection before the event loop starts
            # A new wait per poke in reschedule mode: a missing job is missing since the first poke at most.
            wait = trigger.new_wait(missing_since=_first_poke_at(context) if self.reschedule else None)
            self._poking = (FlinkWatermarkTrigger.poller(trigger.serialize()[1], hook=hook), wait,
                            ProgressLog(self.log, trigger.stream, self._threshold))
        reader, wait, progress_log = self._poking
        obs = asyncio.run(reader.poll_once())
        event = wait.evaluate(obs)
        if event is None:
            progress_log.observe(wait, obs)
            return False
        if event["status"] == EventStatus.TIMEOUT.value:
            raise self._timeout_error(event["message"])
        raise_for_event(event)
        return PokeReturnValue(is_done=True, xcom_value=event)

    def execute_complete(self, context: Context, event: dict) -> WatermarkWaitResult:
        """Raise the wait's exception for a failed event (:class:`FlinkSensorTimeout` for a timeout); return the
        crossing."""
        if event["status"] == EventStatus.TIMEOUT.value:
            raise self._timeout_error(event.get("message", "the wait timed out"))
        raise_for_event(event)
        self.log.info("%s", event["message"])
        return wait_result(event)  # type: ignore[return-value]


class _WindowOrder(set):
    """An outlet's partition keys that iterate in window order (the order given), then any others sorted; with
    ``extras``, each key's own event ``extra``.

    Airflow 3.3 registers one asset event per partition key, iterating the accessor's key set and reading its
    (single, shared) ``extra`` for each: iterating this set switches the accessor's ``extra`` to the key's own
    before the key is handed out, so every event carries its own window and no other."""

    def __init__(self, ordered: list[str], keys: set[str], accessor: Any = None,
                 extras: dict[str, dict] | None = None):
        super().__init__(keys)
        self._order = [k for k in dict.fromkeys(ordered) if k in keys] + sorted(set(keys) - set(ordered))
        self._accessor, self._extras = accessor, extras or {}

    def __iter__(self):
        for key in list(self._order):
            if self._accessor is not None and key in self._extras:
                self._accessor.extra = self._extras[key]
            yield key

    def update(self, *others) -> None:
        for keys in others:
            for key in keys:
                if key not in self:
                    self._order.append(key)
                    super().add(key)


def window_partition_key(window: Window) -> str:
    """The partition key of a window: its start, ISO-8601 UTC with seconds (``2026-01-01T10:00:00Z``)."""
    return datetime.fromtimestamp(window.start_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_from_partition_key(key: str, size: timedelta) -> Window:
    """The window a partition key names (the inverse of :func:`window_partition_key`)."""
    start = to_epoch_ms(key)
    return Window(start, start + int(size.total_seconds() * 1000))


class WindowWaitResult(TypedDict):
    """What :class:`StreamWindowSensor` returns (XCom ``return_value``): the stream, the partition keys it
    emitted (window starts, in window order) and the progress that closed them."""

    stream: str
    partition_keys: list[str]
    progress_ms: int


class StreamWindowSensor(StreamWatermarkSensor):
    """Wait until the stream's next event-time window(s) close; emit each as a partition of ``asset``.

    The stream → batch dependency in Airflow's data-aware terms: run this in a producer DAG with
    ``schedule="@continuous"`` (one run at a time), and schedule the consumer with
    ``PartitionedAssetTimetable(assets=asset)``: it runs **once per closed window**, its ``partition_key``
    being the window start (:func:`window_partition_key`; :func:`window_from_partition_key` turns it back).

    Exactly once: the cursor is the last window this sensor emitted for this stream, read from the asset's
    latest events (each window's event ``extra`` carries ``stream``, its own ``window`` and
    ``last_window_end_ms``); events are registered
    only when the task succeeds, so a retried or cleared run emits the same keys, never a gap. The first run for
    a stream starts at the window holding ``start``, or without it at the window that holds the stream's progress
    when it first reports one (and logs a warning that earlier windows are not emitted).

    An input that ends (watermark ``Long.MAX_VALUE``, e.g. a drained stop) closes the window of its last event
    time and no later one; the run after that raises :class:`~airflow_rtml.exceptions.StreamEnded` instead of
    emitting windows without end.

    Returns a :class:`WindowWaitResult` dict on every path; raises what :class:`StreamWatermarkSensor` raises.

    Templated fields: ``target``, ``job_name``, ``job_id``, ``vertex``, ``start``.

    :param asset: the Asset that stands for the stream's closed windows (set as outlet unless ``outlets`` is
        given; the cursor is read from its latest events). One event per window, in window order; its ``extra``
        holds ``stream``, ``job_id``, ``window`` (``start_ms``, ``end_ms``, ``start``, ``end``),
        ``window_start_ms``, ``window_end_ms``, ``last_window_end_ms`` (its window's end), ``progress_ms``,
        ``checkpoint_id`` and ``crossed_at_ms``.
    :param window: window size (tumbling, aligned to the epoch plus ``offset``, as in Flink; positive).
    :param offset: window offset.
    :param max_windows: most windows emitted by one run (a stream far ahead catches up over several runs).
    :param start: event time of the first window to emit for a new stream (a datetime, ISO-8601 string or
        epoch ms; the window holding it is the first); used only while no window was emitted for the stream.
        Default: the window holding the stream's progress when it first reports one; windows that closed before
        it are not emitted, and the log says so.
    :param job_name: the Flink job's name (``pipeline.name``), followed across upgrades (give exactly one of
        ``job_name``, ``job_id``).
    :param job_id: one job run, by id.
    :param target: not used: the next window to close decides what to wait for (accepted, and templated, as
        an argument of :class:`StreamWatermarkSensor`).
    :param lateness: allowed lateness: a window ``[s, e)`` closes at progress ``e - 1 + lateness``.
    :param commit_aware: also wait for a checkpoint after the crossing (exactly-once sinks made it visible).
    :param vertex: vertex id or part of its name whose input watermark is the progress (default: the sinks).
    :param metric: the watermark metric (default ``currentInputWatermark``).
    :param stall_timeout: fail with ``StreamStalled`` when a RUNNING job's progress does not move this long
        (seconds or timedelta); None: no stall check.
    :param flink_conn_id: a ``flink_rest`` connection, as for :class:`StreamWatermarkSensor`.
    :param job_missing_timeout: how long a wait by ``job_name`` waits for the job to appear before it raises
        ``FlinkJobNotFound`` (default 5 minutes; 0: at once): a ``@continuous`` producer DAG over a job that is not
        submitted yet makes one run per this long, not one a second.
    :param deferrable: wait in the triggerer (default from ``[operators] default_deferrable``); it takes one
        look on the worker first. A deferred wait resumes on a worker to emit the windows.
    :param poke_interval: seconds (or timedelta) between reads of the stream; default 1.
    :param timeout: seconds (or timedelta) until the wait for the next window fails with ``FlinkSensorTimeout``
        (absolute in the triggerer); default 6 hours. A run times out when its next window does not close
        within it.
    :param poll_interval: deprecated name of ``poke_interval``.
    :param start_from_trigger: refused (``FlinkConfigurationError``): which window to wait for is read from the
        asset's latest events, on a worker; ``deferrable=True`` waits in the triggerer after that read.
    :param mode: ``"poke"`` (default) or ``"reschedule"`` (refuses ``commit_aware`` and ``stall_timeout``);
        worker path only.
    :param soft_fail: a timeout skips the task instead of failing it, on the worker and in the triggerer.
        Mutually exclusive with ``never_fail``.
    :param exponential_backoff: worker path only: read ever less often (capped by ``max_wait``).
    :param max_wait: worker path only: the longest interval between reads with ``exponential_backoff``.
    :param silent_fail: worker path only (Airflow's meaning): a failure a read raises is logged and the sensor
        reads on until the timeout.
    :param never_fail: worker path only (Airflow's meaning): any exception a read raises skips the task; in the
        triggerer it acts like ``soft_fail``. Mutually exclusive with ``soft_fail``.
    """

    end_in_triggerer = False  # it must resume: emitting the partitions happens in execute_complete

    template_fields: Sequence[str] = (*StreamWatermarkSensor.template_fields, "start")

    def __init__(self, *, asset: Asset, window: timedelta, offset: timedelta = timedelta(0),
                 max_windows: int = 100, start: Any = None, **kwargs: Any):
        kwargs.setdefault("outlets", [asset])  # not an inlet too: the lineage graph would show a self-loop
        if kwargs.get("start_from_trigger"):
            raise FlinkConfigurationError(
                f"{kwargs.get('task_id', '?')}: StreamWindowSensor cannot start in the triggerer: which window to "
                "wait for comes from the asset's latest events, read on a worker. To fix this, drop "
                "start_from_trigger (deferrable=True waits in the triggerer after that read).")
        super().__init__(**kwargs)
        if window <= timedelta(0):
            raise FlinkConfigurationError(f"{self.task_id}: window must be positive.")
        self.asset, self.window, self.offset, self.max_windows = asset, window, offset, max_windows
        self.start = start

    @property
    def _size_ms(self) -> int:
        return int(self.window.total_seconds() * 1000)

    @property
    def _stream(self) -> str:
        return self.job_name or self.job_id

    def _cursor(self, context: Context) -> int | None:
        """End of the last window emitted for this stream, from the asset's latest events (read as an inlet's
        would be, without declaring the asset an inlet of its own producer)."""
        from airflow.sdk.execution_time.context import InletEventsAccessor

        inlets = context["inlet_events"]
        events = inlets[self.asset] if self.asset in list(inlets) else \
            InletEventsAccessor(asset_name=self.asset.name, asset_uri=self.asset.uri)
        ends = [int(extra["last_window_end_ms"]) for event in events.ascending(False).limit(50)
                if (extra := event.extra or {}).get("stream") == self._stream and "last_window_end_ms" in extra]
        return max(ends) if ends else None

    def execute(self, context: Context) -> WindowWaitResult:
        cursor = self._cursor(context)
        offset_ms = int(self.offset.total_seconds() * 1000)
        if cursor is None and self.start not in (None, ""):
            cursor = window_of(to_epoch_ms(self.start), self._size_ms, offset_ms).start_ms
            self.log.info("Stream %s: first run for asset %s (no window emitted yet): emitting from start=, window %s",
                          self._stream, self.asset.name, window_partition_key(Window(cursor, cursor + self._size_ms)))
        if cursor is None:
            # First run for this stream: start at the window holding its first known progress.
            first = run_trigger_blocking(self.trigger(time.time() + self.timeout, self.threshold_ms(0)),
                                         FlinkRestHook(self.flink_conn_id))
            raise_for_event(first)
            cursor = window_of(self._event_time(first), self._size_ms, offset_ms).start_ms
            self.log.warning(
                "Stream %s: first run for asset %s (no window emitted yet, no start=): starting at window %s, the one "
                "holding the stream's progress %s. Windows that closed before it are NOT emitted; to emit them, "
                "pass start= (the event time of the first window to emit).", self._stream, self.asset.name,
                window_partition_key(Window(cursor, cursor + self._size_ms)), describe(first["progress_ms"]))
        self.log.info("Stream %s: waiting for window %s to close", self._stream,
                      window_partition_key(Window(cursor, cursor + self._size_ms)))
        return self._wait_for(context, self.threshold_ms(cursor + self._size_ms), cursor=cursor)

    def _event_time(self, event: dict) -> int:
        """The event time a wait's event reached: its progress, or before an ended input its last event time."""
        if event["progress_ms"] != END_OF_STREAM:
            return event["progress_ms"]
        if event.get("last_event_time_ms") is None:
            raise StreamEnded(
                f"Stream {self._stream}'s input had ended (watermark Long.MAX_VALUE) before this wait saw an event "
                "time, so which windows it closed is unknown. To fix this, start the stream again (a new job of the "
                "same name is picked up) or emit its last windows by hand; pause this producer DAG meanwhile.",
                self._stream,
            )
        return event["last_event_time_ms"]

    def execute_complete(self, context: Context, event: dict, cursor: int | None = None) -> WindowWaitResult:
        """Emit every window the crossing closed (after ``cursor``) as a partition of the asset."""
        if event["status"] == EventStatus.TIMEOUT.value:
            raise self._timeout_error(event.get("message", "the wait timed out"))
        raise_for_event(event)
        offset_ms, lateness_ms = int(self.offset.total_seconds() * 1000), int(self.lateness.total_seconds() * 1000)
        closes = event["progress_ms"]
        ended = closes == END_OF_STREAM
        if ended:  # an ended input closes the window of its last event time, no later one
            closes = window_of(self._event_time(event), self._size_ms, offset_ms).end_ms - 1 + lateness_ms
        windows = closed_windows(closes, self._size_ms, after_end_ms=cursor, offset_ms=offset_ms,
                                 lateness_ms=lateness_ms, limit=self.max_windows)
        if not windows and not ended:
            raise FlinkConfigurationError(
                f"Stream {self._stream}: the wait ended at progress {describe(closes)}, which closes no window after "
                f"{describe(cursor)}. This is a bug in airflow-rtml: please report it with this message."
            )
        if not windows:
            raise StreamEnded(
                f"Stream {self._stream}'s input has ended (watermark Long.MAX_VALUE) and its last window, ending "
                f"{describe(cursor)}, was already emitted: no further window will close. To fix this, pause this "
                "producer DAG, or start the stream again (a new job of the same name is picked up).",
                self._stream, event.get("last_event_time_ms"),
            )
        keys = [window_partition_key(w) for w in windows]
        common = {"stream": self._stream, "job_id": event.get("job_id"), "window_size_ms": self._size_ms,
                  "progress_ms": event["progress_ms"], "checkpoint_id": event.get("checkpoint_id"),
                  "crossed_at_ms": event.get("crossed_at_ms")}
        outlet = context["outlet_events"][self.asset]
        outlet.add_partitions(keys)
        outlet.extra.update({**common, "windows": [w.to_dict() for w in windows],
                             "last_window_end_ms": windows[-1].end_ms})
        # One asset event per window, registered in window order (Airflow 3.3 keeps the keys in a set: the
        # consumer's runs came out of window order), each carrying its own window only.
        outlet.partition_keys = _WindowOrder(keys, outlet.partition_keys, outlet, {
            key: {**common, "window": w.to_dict(), "window_start_ms": w.start_ms, "window_end_ms": w.end_ms,
                  "windows": [w.to_dict()], "last_window_end_ms": w.end_ms}
            for key, w in zip(keys, windows)})
        self.log.info("Stream %s closed %d window(s): %s", self._stream, len(keys), keys)
        return {"stream": self._stream, "partition_keys": keys, "progress_ms": event["progress_ms"]}
