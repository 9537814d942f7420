"""Reading a Flink job's event-time progress: one :class:`~airflow_rtml.progress.Observation` per poll.

:class:`FlinkStreamReader` is the one place that reads a Flink stream's progress; the watermark and window
triggers, the sensors' worker path, the skew check, the relay and the demo all read through it.

**Where watermarks come from.** The connection extra ``watermark_source`` picks it: ``rest`` (the JobManager's
``/watermarks`` endpoint, one request per job and poll), ``reporter`` (the TaskManagers' Prometheus reporters,
one scrape per TaskManager and poll for *every* job on the cluster, live values), or ``auto`` (the default):
the reporter when the cluster shows one — ``metrics_reporter_port`` / ``metrics_reporter_urls`` set, a
Prometheus reporter in ``GET /jobmanager/config``, or one answering on Flink's default port 9249 of the
TaskManagers — and REST otherwise, or whenever no reporter answers.

**Never early.** A vertex's progress is the minimum over *all* subtasks of its parallelism; one subtask missing
from an answer (Flink omits metrics it has not fetched yet) makes it unknown, on every path. A value that cannot
be read is an error naming it, never a guess. For commit-aware waits a poll reads, in this order: the sink
subtasks' attempt numbers (REST; the reporter carries them with the values), the watermark, then the
checkpoints, so :class:`~airflow_rtml.progress.ProgressWait` can tell a checkpoint triggered after the crossing
of the same attempt (see :mod:`airflow_rtml.progress.waits`).

**Isolation.** Whatever goes wrong while reading one job — an odd answer, an unreadable overview entry, a
value out of range — becomes that job's observation's ``error_kind``; the poll loop and every other stream on
the cluster go on. Transient problems (unreachable, 5xx, 429, a proxy's page) are retried until each waiter's
own deadline.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import AsyncIterator, Hashable
from typing import Any

from airflow_rtml.exceptions import (
    TRANSIENT,
    FlinkApiError,
    FlinkConfigurationError,
    FlinkConnectionError,
    FlinkError,
    FlinkJobNotFound,
    RtmlError,
    error_kind,
    exception_for,
)
from airflow_rtml.hooks.flink import (
    DEFAULT_REPORTER_PORT,
    REPORTER_INPUT_WATERMARK,
    FlinkRestHook,
    JobDetail,
    JobState,
    Overview,
    check_flink_id,
    redact,
    resolve_job_name,
)
from airflow_rtml.progress import Observation, combine, parse_watermark
from airflow_rtml.streams.shared import SHARED

__all__ = ["INPUT_WATERMARK", "FlinkStreamReader", "jobs_overview", "pick_vertices", "read_progress",
           "reporter_watermarks", "settle_seconds", "sink_vertices"]

INPUT_WATERMARK = "currentInputWatermark"
#: How long a TaskManager list found through ``GET /taskmanagers`` (and the auto-detected source) is reused.
REPORTER_DISCOVERY_MAX_AGE = 30.0
log = logging.getLogger(__name__)
_REPORTER_ERRORS: dict[str, str] = {}


def sink_vertices(detail: JobDetail, plan: dict) -> list[str]:
    """Ids of the vertices nothing consumes from (the job's last stage): their input watermark is the job's
    output progress."""
    consumed = {inp["id"] for node in plan.get("nodes", []) for inp in node.get("inputs", []) or []}
    return [v.vertex_id for v in detail.vertices if v.vertex_id not in consumed]


def pick_vertices(detail: JobDetail, plan: dict, vertex: str | None) -> list[str]:
    """The vertices whose watermark is the stream's progress: ``vertex`` (an id, or a substring of the
    vertex name, e.g. an operator name), else the sink vertices."""
    if not vertex:
        return sink_vertices(detail, plan)
    matches = [v.vertex_id for v in detail.vertices if vertex == v.vertex_id or vertex in v.name]
    if not matches:
        raise FlinkConfigurationError(
            f"Job {detail.name!r} ({detail.job_id}) has no vertex matching {vertex!r}. To fix this, use a vertex "
            f"id or part of a vertex name; its vertices are: {[v.name for v in detail.vertices]}"
        )
    return matches


async def jobs_overview(hook: FlinkRestHook, max_age: float) -> Overview:
    """Every job's state on the hook's cluster, entry by entry, through :data:`~airflow_rtml.streams.shared.SHARED`.

    Any answer that is no overview (a 404 or 302 of a proxy, an HTML page, a body over the cap) concerns every
    wait on the cluster alike and none in particular: it is transient (retried until each waiter's deadline),
    never the failure of every wait.
    """
    try:
        return await SHARED.get(("jobs", hook.conn_id), max_age, hook.a_jobs_overview)
    except FlinkApiError as exc:
        if exc.unreadable:
            raise
        if exc.status_code in (401, 403):
            raise FlinkConfigurationError(
                f"{exc}. To fix this, check the credentials of connection {hook.conn_id!r} (login/password or the "
                "extra bearer_token) for the JobManager or the proxy in front of it.") from exc
        raise FlinkApiError(f"{exc} (every wait on this cluster retries until its deadline)", exc.status_code,
                            exc.body, unreadable=True) from exc


async def _auto_reporter_urls(hook: FlinkRestHook) -> list[str]:
    """The reporters a cluster shows (``watermark_source: auto``): a Prometheus reporter's port from
    ``GET /jobmanager/config`` (else Flink's default 9249) on each TaskManager host, kept only if one answers."""
    probe = copy.copy(hook)
    probe.retry_limit = 1  # a probe, not a wait: one try
    try:
        conf = await probe.a_get_jobmanager_config()
    except FlinkError:
        conf = {}
    port = DEFAULT_REPORTER_PORT
    for key, value in conf.items():
        if key.startswith("metrics.reporter.") and key.endswith(".factory.class") and value.endswith(
                "prometheus.PrometheusReporterFactory"):
            configured = conf.get(key[: -len("factory.class")] + "port", "")
            if configured.isdigit():
                port = int(configured)
    try:
        urls = await probe.a_reporter_urls(port=port)
        if urls:
            await probe.a_scrape_reporter_watermarks(urls[0])
            log.info("Connection %r: reading watermarks from the TaskManagers' Prometheus reporters %s (auto)",
                     hook.conn_id, urls)
        return urls
    except FlinkError as exc:
        log.info("Connection %r: no TaskManager reporter on port %d (%s); reading watermarks over REST",
                 hook.conn_id, port, redact(str(exc))[:200])
        return []


async def reporter_watermarks(hook: FlinkRestHook, max_age: float) -> dict | None:
    """Every task's ``currentInputWatermark`` from the cluster's TaskManager reporters (one scrape per
    TaskManager and ``max_age``), or None when watermarks are read over REST (see the module docstring).

    A reporter that does not answer is skipped (its tasks then count as unknown) unless none answers: then an
    explicitly configured reporter is an error (retried), an auto-detected one falls back to REST (None).
    """
    settings = await hook._aget_settings()
    source = settings["watermark_source"]
    if source == "rest":
        return None
    explicit = bool(settings["reporter_urls"] or settings["reporter_port"])
    if explicit:
        urls = await SHARED.get(("reporter-urls", hook.conn_id), REPORTER_DISCOVERY_MAX_AGE, hook.a_reporter_urls)
    else:
        urls = await SHARED.get(("reporter-auto", hook.conn_id), REPORTER_DISCOVERY_MAX_AGE * 2,
                                lambda: _auto_reporter_urls(hook))
    if not urls:
        return None

    async def scrape_all() -> dict:
        results = await asyncio.gather(*(hook.a_scrape_reporter_watermarks(u) for u in urls), return_exceptions=True)
        for url in set(_REPORTER_ERRORS) - set(urls):  # TaskManagers that are gone
            del _REPORTER_ERRORS[url]
        errors = [r for r in results if isinstance(r, Exception)]
        if errors and len(errors) == len(results):
            if isinstance(errors[0], FlinkApiError) and not isinstance(errors[0], FlinkConnectionError):
                raise errors[0]  # an answer we cannot read: the message says which
            raise FlinkConnectionError(redact(
                f"No Flink metric reporter answered ({', '.join(urls)}): {errors[0]}. To fix this, check the "
                f"connection's metrics_reporter_port / metrics_reporter_urls and that the TaskManagers run "
                "org.apache.flink.metrics.prometheus.PrometheusReporterFactory on that port."
            ))
        merged: dict = {}
        for url, part in zip(urls, results):
            if isinstance(part, BaseException):
                if _REPORTER_ERRORS.get(url) != str(part):  # once per error, not once per poll
                    log.warning("Flink metric reporter %s skipped (its tasks count as unknown): %s",
                                redact(url), redact(str(part)))
                _REPORTER_ERRORS[url] = str(part)
                continue
            _REPORTER_ERRORS.pop(url, None)
            for key, subtasks in part.items():
                into = merged.setdefault(key, {})
                for index, (attempt, value) in subtasks.items():
                    if index not in into or into[index][0] <= attempt:
                        into[index] = (attempt, value)
        return merged

    try:
        return await SHARED.get(("reporters", hook.conn_id), max_age, scrape_all)
    except FlinkError:
        if explicit:
            raise
        SHARED.forget(("reporter-auto", hook.conn_id))  # auto: look again later; REST meanwhile
        return None


#: Flink's defaults of the settings that make REST answers stale (ms): the execution-graph cache, the
#: metric fetcher, the checkpoint-statistics cache.
_STALENESS_DEFAULTS = {"web.refresh-interval": 3000, "metrics.fetcher.update-interval": 10000,
                       "rest.cache.checkpoint-statistics.timeout": 3000}


async def settle_seconds(hook: FlinkRestHook) -> float:
    """How stale the JobManager's cached REST answers can be, in seconds (from ``GET /jobmanager/config``, with
    Flink's defaults for what it does not show); read once per connection and 5 minutes."""
    async def fetch() -> float:
        try:
            conf = await hook.a_get_jobmanager_config()
        except FlinkError:
            conf = {}
        values = []
        for key, default in _STALENESS_DEFAULTS.items():
            raw = conf.get(key, "")
            values.append(_duration_ms(raw) if raw else default)
        return max(values) / 1000

    return await SHARED.get(("settle", hook.conn_id), 300.0, fetch)


def _duration_ms(text: str) -> int:
    """A Flink duration (``3000``, ``3 s``, ``500ms``, ``1 min``) in ms; unreadable ones count as an hour."""
    units = {"ms": 1, "s": 1000, "sec": 1000, "secs": 1000, "min": 60_000, "m": 60_000, "h": 3_600_000}
    text = text.strip().lower().replace(" ", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number):] or "ms"
    try:
        return int(float(number) * units[unit])
    except (ValueError, KeyError):
        return 3_600_000  # never early: an unknown staleness is assumed long


class FlinkStreamReader:
    """The shared poll loop of one Flink stream: yields an :class:`~airflow_rtml.progress.Observation` every
    ``poll_interval`` (see the module docstring).

    Requests per poll of a RUNNING job: the job states come from the process-wide overview (one request per
    cluster per interval, whatever the number of streams); watermarks from the shared reporter scrape, or one
    ``/watermarks`` request per picked vertex; for commit-aware streams also one attempt request per picked
    vertex (REST) and one ``/checkpoints``. The job's detail and plan are read once per job id, its
    checkpointing configuration once (commit-aware), its root cause only on failure.

    :param hook: a hook whose connection is already resolved (default: a new ``FlinkRestHook(flink_conn_id)``).
    """

    def __init__(self, *, flink_conn_id: str, job_name: str | None, job_id: str | None, vertex: str | None,
                 metric: str, commit_aware: bool, poll_interval: float, hook: FlinkRestHook | None = None):
        if job_id is not None:
            check_flink_id(job_id)
        self.hook = hook or FlinkRestHook(flink_conn_id)
        self.job_name, self.fixed_job_id, self.vertex, self.metric = job_name, job_id, vertex, metric
        self.commit_aware, self.poll_interval = commit_aware, poll_interval
        self._job_id: str | None = job_id
        self._vertices: dict[str, list[str]] = {}
        self._parallelism: dict[str, int] = {}
        self._checkpointing: dict[str, bool] = {}
        self._attempt: Hashable | None = None
        self._attempt_since: float | None = None
        self._reread_at = 0.0
        self._last_error: str | None = None

    @property
    def stream(self) -> str:
        return self.job_name or self.fixed_job_id or "?"

    async def observations(self) -> AsyncIterator[Observation]:
        """Observe the stream every ``poll_interval``, forever (the caller closes the generator)."""
        async with self.hook.a_session():
            while True:
                yield await self.poll_once()
                await asyncio.sleep(self.poll_interval)

    snapshots = observations  # the round-1 name

    async def poll_once(self) -> Observation:
        """One observation; never raises for what the stream answered (it becomes the observation's error)."""
        at, mono = time.time(), time.monotonic()
        fields: dict[str, Any] = {"job_id": self._job_id, "mono": mono}
        try:
            await self._poll(fields)
        except RtmlError as exc:
            fields.update(error=redact(str(exc)), error_kind=error_kind(exc))
        except Exception as exc:  # noqa: BLE001 - a bug or an answer nobody foresaw: this stream's problem only
            log.exception("Stream %s: unexpected error while reading its progress", self.stream)
            fields.update(error=f"Unexpected error reading stream {self.stream}: {type(exc).__name__}: "
                                f"{redact(str(exc))[:300]}. This is a bug in airflow-rtml: please report it.",
                          error_kind=error_kind(FlinkApiError("")))
        if fields.get("error_kind") == TRANSIENT and fields.get("error") != self._last_error:
            log.warning("Stream %s: Flink not readable, retrying until each waiter's deadline: %s",
                        self.stream, fields["error"])
        self._last_error = fields.get("error")
        if fields.get("attempt") is not None:
            if fields["attempt"] != self._attempt:
                self._attempt, self._attempt_since = fields["attempt"], mono
            fields["attempt_since"] = self._attempt_since
        return Observation(at=at, **fields)

    async def _poll(self, out: dict[str, Any]) -> None:
        overview = await jobs_overview(self.hook, max_age=self.poll_interval * 0.9)
        if self.fixed_job_id is None and self._job_id is None:
            job = resolve_job_name(overview.jobs, self.job_name)
            if job is None:
                bad = overview.bad_entry(name=self.job_name)
                if bad is not None:  # it is there, but its entry cannot be read: this job's problem only
                    raise FlinkApiError(f"Flink's /jobs/overview entry of job {self.job_name!r} ({bad.job_id}) "
                                        f"cannot be read ({bad.why}); waits on this job cannot go on.")
                if any(b.name is None for b in overview.bad):  # an entry without a readable name may be it
                    raise FlinkApiError(
                        f"No readable Flink job is named {self.job_name!r}, and {len(overview.bad)} entries of "
                        f"/jobs/overview cannot be read ({overview.bad[0].why}); waiting until they can.",
                        unreadable=True)
                raise FlinkJobNotFound(
                    f"No Flink job is named {self.job_name!r}. To fix this, check the name (the job's pipeline.name) "
                    "or submit the job before waiting on its progress.", job_name=self.job_name,
                )
            self._job_id = job.job_id
        job_id = out["job_id"] = self._job_id
        bad = overview.bad_entry(job_id=job_id)
        if bad is not None:
            raise FlinkApiError(f"Flink's /jobs/overview entry of job {job_id} cannot be read ({bad.why}); waits on "
                                "this job cannot go on.")
        job = next((j for j in overview.jobs if j.job_id == job_id), None)
        if job is None and self.fixed_job_id is None:
            # By name, the job followed so far is gone from the cluster (a JobManager without HA restarted empty, or
            # its history expired): follow the name again. A newer job of the name is followed (its own attempt:
            # a crossing of the old one never counts for it); none is a missing job (job_missing_timeout).
            self._job_id = out["job_id"] = None
            job = resolve_job_name(overview.jobs, self.job_name)
            if job is None:
                raise FlinkJobNotFound(
                    f"No Flink job is named {self.job_name!r} any more (job {job_id} is gone from the cluster). To "
                    "fix this, submit the job again (a FlinkSubmitJobOperator retry does), or check the name.",
                    job_name=self.job_name)
            job_id = out["job_id"] = self._job_id = job.job_id
        if job is None:
            raise FlinkJobNotFound(
                f"Flink has no job {job_id}. To fix this, check the job id (it changes on every submit: wait "
                "on the job's name instead) or whether the job's history expired.", job_id=job_id,
            )
        out["state"] = job.state.value
        if job.state.is_failure:
            for _ in range(8):  # the overview reports FAILED before the archived exception history exists
                out["root_cause"] = await self.hook.a_get_root_cause(job_id)
                if out["root_cause"]:
                    break
                await asyncio.sleep(0.25)
            return
        if job.state.is_terminal and self.fixed_job_id is None:
            self._job_id = None  # by name: the next poll looks for a newer job of that name (an upgrade)
        if job.state is not JobState.RUNNING and not (job.state is JobState.FINISHED and self.commit_aware):
            return  # a FINISHED job reports no watermark; only a pending commit of a crossing needs it
        if job_id not in self._vertices:
            detail = await self.hook.a_get_job(job_id)
            plan = await self.hook.a_get_job_plan(job_id)
            picked = pick_vertices(detail, plan, self.vertex)
            self._vertices = {job_id: picked}
            self._parallelism = {v.vertex_id: v.parallelism for v in detail.vertices if v.vertex_id in picked}
        picked = self._vertices[job_id]
        attempt: Hashable = job_id
        if self.commit_aware:
            if job_id not in self._checkpointing:
                self._checkpointing[job_id] = await self.hook.a_checkpointing_enabled(job_id)
            out["checkpointing"] = self._checkpointing[job_id]
            if not out["checkpointing"]:
                return
            attempts = await asyncio.gather(*(self.hook.a_get_vertex_attempts(job_id, v) for v in picked))
            rest_attempts = tuple((v, tuple(sorted(a.items()))) for v, a in zip(picked, attempts))
            attempt = (job_id, rest_attempts)
        if job.state is JobState.RUNNING:
            progress, reporter_attempt = await self._progress(job_id, picked)
            if self.commit_aware and reporter_attempt is not None and reporter_attempt != rest_attempts:
                # The reporters' values are of other attempts than the JobManager runs (a TaskManager still
                # exporting a failed attempt, or one not yet scraped): not this attempt's progress.
                progress = None
            out["progress_ms"] = progress
            if reporter_attempt is not None and not self.commit_aware:
                attempt = (job_id, reporter_attempt)
        out["attempt"] = attempt
        if self.commit_aware:
            # The JobManager's clock *after* the watermark read: a fresh overview (not the shared one, which may
            # predate it); a running job's start-time + duration is computed when Flink answers.
            fresh = await self.hook.a_jobs_overview()
            now = next((j.jobmanager_now_ms for j in fresh.jobs if j.job_id == job_id), None)
            out["jobmanager_ms"] = now
            cp = await self.hook.a_get_checkpoints(job_id)
            out["checkpoint_triggered_id"] = cp.latest_triggered_id
            out["checkpoint_completed_id"] = cp.latest_completed_id
            out["checkpoint_completed_trigger_ms"] = cp.latest_completed_trigger_ms
            out["settle_s"] = await settle_seconds(self.hook) + self.poll_interval

    async def _progress(self, job_id: str, picked: list[str]) -> tuple[int | None, Hashable | None]:
        """The minimum over the picked vertices, each complete over its parallelism, else None; and, from the
        reporter, the attempts of the subtasks the values came from."""
        reported = None
        if self.metric == INPUT_WATERMARK:
            reported = await reporter_watermarks(self.hook, max_age=self.poll_interval * 0.9)
        parts: list[int | None] = []
        attempts: list[tuple] = []
        for vertex_id in picked:
            expected = self._parallelism.get(vertex_id, 1)
            if reported is not None:
                subtasks = reported.get((job_id, vertex_id), {})
                values = {i: value for i, (_, value) in subtasks.items()}
                attempts.append((vertex_id, tuple(sorted((i, a) for i, (a, _) in subtasks.items()))))
                origin = f"Flink reporter {REPORTER_INPUT_WATERMARK} of vertex {vertex_id} subtask"
            elif self.metric == INPUT_WATERMARK:
                raw = await self.hook.a_get_vertex_watermarks(job_id, vertex_id)
                values = _by_subtask(raw, INPUT_WATERMARK)
                origin = f"Flink metric {INPUT_WATERMARK} of vertex {vertex_id} subtask"
            else:
                names = [f"{i}.{self.metric}" for i in range(expected)]
                raw = await self.hook.a_get_vertex_metrics(job_id, vertex_id, names)
                values = _by_subtask(raw, self.metric)
                origin = f"Flink metric {self.metric} of vertex {vertex_id} subtask"
            parts.append(self._complete(job_id, vertex_id, values, expected, origin))
        return combine(parts), (tuple(attempts) if reported is not None else None)

    def _from_reporters(self, reported: dict, vertex_id: str) -> int | None:
        """A vertex's progress from a merged reporter scrape (see :meth:`_complete`)."""
        values = {i: value for i, (_, value) in reported.get((self._job_id, vertex_id), {}).items()}
        return self._complete(self._job_id, vertex_id, values, self._parallelism.get(vertex_id, 1),
                              f"Flink reporter {REPORTER_INPUT_WATERMARK} of vertex {vertex_id} subtask")

    def _complete(self, job_id: str, vertex_id: str, values: dict[int, Any], expected: int, origin: str) -> int | None:
        """A vertex's progress: the minimum over its subtasks, or None (unknown) unless every subtask of the
        current parallelism reported. A missing one (not fetched yet, on a TaskManager that did not answer, not
        registered after a failover) must not raise the minimum; indices beyond the parallelism (a rescale) make
        the detail be read again."""
        if set(values) != set(range(expected)):
            if time.monotonic() - self._reread_at > REPORTER_DISCOVERY_MAX_AGE / 3:
                self._reread_at = time.monotonic()
                self._vertices.pop(job_id, None)  # parallelism from the job's detail again, next poll
                SHARED.forget(("reporter-urls", self.hook.conn_id))
            return None
        return combine(parse_watermark(values[i], origin=f"{origin} {i}") for i in range(expected))


def _by_subtask(raw: dict[str, Any], metric: str) -> dict[int, Any]:
    """``{"<subtask>.<metric>": value}`` → ``{subtask: value}``; other entries are ignored."""
    out: dict[int, Any] = {}
    suffix = "." + metric
    for name, value in raw.items():
        if isinstance(name, str) and name.endswith(suffix):
            head = name[: -len(suffix)]
            if head.isdigit():
                out[int(head)] = value
    return out


def read_progress(hook: FlinkRestHook, *, job_name: str | None = None, job_id: str | None = None,
                  vertex: str | None = None, metric: str = INPUT_WATERMARK) -> Observation:
    """One observation of a Flink stream, blocking (worker-side code: the skew check, the demo, tests).

    Raises what a wait on it would: the error vocabulary's exception for a permanent error
    (:func:`~airflow_rtml.exceptions.exception_for`), :class:`~airflow_rtml.exceptions.FlinkConnectionError`
    for a transient one. ``hook``'s connection is resolved here, before the event loop starts.
    """
    hook.base_url  # noqa: B018 - resolve the connection synchronously
    reader = FlinkStreamReader(flink_conn_id=hook.conn_id, job_name=job_name, job_id=job_id, vertex=vertex,
                               metric=metric, commit_aware=False, poll_interval=1.0, hook=hook)
    obs = asyncio.run(reader.poll_once())
    if obs.error_kind == TRANSIENT:
        raise FlinkConnectionError(obs.error or "Flink could not be read")
    if obs.error_kind is not None:
        raise exception_for(obs.error_kind, obs.error or "", job_id=obs.job_id or "", stream=reader.stream)
    return obs
