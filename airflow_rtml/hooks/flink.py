"""FlinkRestHook: the JobManager REST API of a Flink session cluster, sync and async.

Connection type ``flink_rest`` (default id ``flink_default``): host, port (default 8081), schema
(``http``/``https``), login/password for basic auth, and these extras only (an allow-list; nothing else is
passed to the HTTP client):

* ``verify`` — verify TLS certificates (default true);
* ``ca_bundle`` — path of a CA bundle to verify against;
* ``client_cert`` / ``client_key`` — paths of a client certificate and key (mutual TLS);
* ``bearer_token`` — token for an auth proxy in front of the JobManager (instead of basic auth);
* ``timeout`` — per-request timeout in seconds (default 10);
* ``web_ui_url`` — base URL of the Flink web UI if it differs from the REST URL (used by extra links);
* ``metrics_reporter_port`` — port of the TaskManagers' Prometheus metric reporter (``PrometheusReporterFactory``);
  the TaskManagers' hosts come from ``GET /taskmanagers``. Watermark waits then read ``currentInputWatermark``
  from the reporters: one scrape per TaskManager and poll for every job on the cluster, instead of one
  JobManager request per job, and live values instead of the JobManager's metric cache;
* ``metrics_reporter_urls`` — the reporters' URLs (a list or comma-separated), instead of discovery by port.

Retries: connection errors, timeouts, 5xx and 429 are retried with exponential backoff
(``retry_limit`` attempts in all); every other error is raised at once as a specific exception.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import httpx
import tenacity
from airflow.sdk import BaseHook

from airflow_rtml.progress.waits import short_cause  # noqa: F401 - re-exported (old import path)
from airflow_rtml.exceptions import (
    BODY_EXCERPT_CHARS,
    FlinkApiError,
    FlinkConfigurationError,
    FlinkConnectionError,
    FlinkJarUploadFailed,
    FlinkJobNotFound,
)

ALLOWED_EXTRAS = ("verify", "ca_bundle", "client_cert", "client_key", "bearer_token", "timeout", "web_ui_url",
                  "metrics_reporter_port", "metrics_reporter_urls", "watermark_source", "max_response_bytes")

#: Default cap on a response body read from Flink (connection extra ``max_response_bytes``): a proxy's 150 MB
#: error page must not cost the triggerer 1 GB.
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
#: The TaskManagers' Prometheus reporter port probed when ``watermark_source`` is ``auto`` (Flink's default).
DEFAULT_REPORTER_PORT = 9249
WATERMARK_SOURCES = ("auto", "rest", "reporter")
_FLINK_ID = re.compile(r"[0-9a-f]{32}")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]+(?::[^/\s@]*)?@")


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it masked (``http://user:secret@h`` → ``http://***@h``)."""
    return _URL_CREDENTIALS.sub(r"\1***@", text)


def check_flink_id(value: Any, what: str = "job_id") -> str:
    """``value`` if it is a Flink id (32 lowercase hex characters), else :class:`FlinkConfigurationError`: an id
    is spliced into REST paths, so ``../``, ``?`` or ``#`` must never reach a URL."""
    if not isinstance(value, str) or not _FLINK_ID.fullmatch(value):
        raise FlinkConfigurationError(
            f"{what} {redact(repr(value))[:100]} is not a Flink id. To fix this, pass the 32 lowercase hex "
            f"characters Flink shows for it (e.g. in GET /jobs/overview), or wait on the job's name instead."
        )
    return value

log = logging.getLogger(__name__)

#: The Prometheus reporter's name for a task's ``currentInputWatermark`` (scope ``taskmanager_job_task``).
REPORTER_INPUT_WATERMARK = "flink_taskmanager_job_task_currentInputWatermark"
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_TM_HOST = re.compile(r"@\[?([^\]/@]+?)\]?:\d+/")


class JobState(str, Enum):
    """Every state of a Flink job (``org.apache.flink.api.common.JobStatus``)."""

    INITIALIZING = "INITIALIZING"
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    FAILING = "FAILING"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELED = "CANCELED"
    FINISHED = "FINISHED"
    RESTARTING = "RESTARTING"
    SUSPENDED = "SUSPENDED"
    RECONCILING = "RECONCILING"

    @property
    def is_terminal(self) -> bool:
        """Globally terminal: the job will never run again on this cluster."""
        return self in (JobState.FINISHED, JobState.FAILED, JobState.CANCELED)

    @property
    def is_failure(self) -> bool:
        return self in (JobState.FAILED, JobState.CANCELED)


@dataclass(frozen=True)
class JobOverview:
    job_id: str
    name: str
    state: JobState
    start_time_ms: int
    end_time_ms: int
    duration_ms: int = -1

    @property
    def jobmanager_now_ms(self) -> int | None:
        """The JobManager's clock when it answered (a running job's ``start-time + duration``), else None."""
        if self.end_time_ms >= 0 or self.start_time_ms < 0 or self.duration_ms < 0:
            return None
        return self.start_time_ms + self.duration_ms

    @classmethod
    def from_json(cls, j: dict) -> JobOverview:
        return cls(j["jid"], j["name"], JobState(j["state"]), int(j.get("start-time", -1)), int(j.get("end-time", -1)),
                   int(j.get("duration", -1)))


def resolve_job_name(jobs: list[JobOverview], name: str, *, active_only: bool = False) -> JobOverview | None:
    """The one job-reference resolution: the newest non-terminal job named ``name``; else (unless
    ``active_only``) the newest ended one; None when no job has the name."""
    named = [j for j in jobs if j.name == name]
    active = [j for j in named if not j.state.is_terminal]
    pool = active if active or active_only else named
    return max(pool, key=lambda j: j.start_time_ms) if pool else None


@dataclass(frozen=True)
class BadEntry:
    """An entry of ``GET /jobs/overview`` that cannot be read: its job id and name where readable, and why."""

    job_id: str | None
    name: str | None
    why: str


@dataclass(frozen=True)
class Overview:
    """``GET /jobs/overview`` read entry by entry: ``jobs`` the readable entries, ``bad`` the others."""

    jobs: list[JobOverview]
    bad: list[BadEntry]

    def bad_entry(self, *, job_id: str | None = None, name: str | None = None) -> BadEntry | None:
        """The unreadable entry of this job id or name, if any."""
        return next((b for b in self.bad if (job_id and b.job_id == job_id) or (name and b.name == name)), None)


def parse_overview(body: Any) -> Overview:
    """An :class:`Overview` from the JSON body; only a body that is no overview at all raises (ValueError)."""
    if not isinstance(body, dict) or not isinstance(body.get("jobs", []), list):
        raise ValueError("not a jobs overview (no 'jobs' list)")
    jobs, bad = [], []
    for entry in body.get("jobs", []):
        entry = entry if isinstance(entry, dict) else {}
        jid, name = entry.get("jid"), entry.get("name")
        jid = jid if isinstance(jid, str) and _FLINK_ID.fullmatch(jid) else None
        name = name if isinstance(name, str) else None
        try:
            if jid is None or name is None:
                raise ValueError("no job id" if jid is None else "no name")
            jobs.append(JobOverview.from_json(entry))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            bad.append(BadEntry(jid, name, f"{type(exc).__name__}: {str(exc)[:200]}"))
    return Overview(jobs, bad)


@dataclass(frozen=True)
class Vertex:
    vertex_id: str
    name: str
    parallelism: int
    status: str


@dataclass(frozen=True)
class JobDetail:
    job_id: str
    name: str
    state: JobState
    start_time_ms: int
    vertices: tuple[Vertex, ...] = field(default_factory=tuple)

    @property
    def tasks_running(self) -> bool:
        """Every vertex is RUNNING (or already FINISHED, e.g. a bounded source): the job really runs."""
        return all(v.status in ("RUNNING", "FINISHED") for v in self.vertices)

    @classmethod
    def from_json(cls, j: dict) -> JobDetail:
        vertices = tuple(
            Vertex(v["id"], v["name"], int(v.get("parallelism", 1)), v.get("status", "")) for v in j.get("vertices", [])
        )
        return cls(j["jid"], j["name"], JobState(j["state"]), int(j.get("start-time", -1)), vertices)


@dataclass(frozen=True)
class CheckpointInfo:
    """Summary of ``/jobs/:id/checkpoints``."""

    completed: int
    failed: int
    latest_completed_id: int | None
    latest_completed_trigger_ms: int | None
    latest_completed_path: str | None
    restored_from: str | None
    restored_is_savepoint: bool
    restored_id: int | None = None
    latest_triggered_id: int = 0  # 0: none triggered yet (Flink numbers checkpoints from 1)
    latest_savepoint_type: str | None = None  # e.g. "SYNC_SAVEPOINT" (a stop-with-savepoint), "SAVEPOINT"

    @classmethod
    def from_json(cls, j: dict) -> CheckpointInfo:
        """Read ``/jobs/:id/checkpoints``; ids and timestamps must be integers (a value of another type — a string,
        ``1e300`` — raises ValueError: the answer is unreadable, never compared as if it were a time)."""
        counts = j.get("counts") or {}
        latest = j.get("latest") or {}
        done = latest.get("completed") or {}
        restored = latest.get("restored") or {}
        ids = [e.get("id") for e in (j.get("history") or []) if isinstance(e, dict)]
        ids += [(latest.get(k) or {}).get("id") for k in ("completed", "failed", "savepoint")]
        return cls(
            restored_id=_long_or_none(restored.get("id"), "latest.restored.id"),
            latest_triggered_id=max((_long_or_none(i, "checkpoint id") for i in ids if i is not None), default=0),
            latest_savepoint_type=(latest.get("savepoint") or {}).get("checkpoint_type"),
            completed=int(counts.get("completed", 0)),
            failed=int(counts.get("failed", 0)),
            latest_completed_id=_long_or_none(done.get("id"), "latest.completed.id"),
            latest_completed_trigger_ms=_long_or_none(done.get("trigger_timestamp"), "latest.completed.trigger_timestamp"),
            latest_completed_path=done.get("external_path"),
            restored_from=restored.get("external_path"),
            restored_is_savepoint=bool(restored.get("is_savepoint", False)),
        )


def _long_or_none(value: Any, what: str) -> int | None:
    """``value`` if it is an integer in a Java long's range (or None), else ValueError naming ``what``."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not -(2**63) <= value < 2**63:
        raise ValueError(f"{what} is {value!r}, not an integer")
    return value


@dataclass(frozen=True)
class SavepointStatus:
    """Status of an asynchronous savepoint / stop-with-savepoint operation."""

    trigger_id: str
    in_progress: bool
    location: str | None
    failure_cause: str | None

    @classmethod
    def from_json(cls, trigger_id: str, j: dict) -> SavepointStatus:
        op = j.get("operation") or {}
        cause = op.get("failure-cause")
        if isinstance(cause, dict):
            cause = cause.get("stack-trace") or cause.get("class") or json.dumps(cause)
        return cls(trigger_id, (j.get("status") or {}).get("id") != "COMPLETED", op.get("location"), cause)


def root_cause_from_exceptions(body: dict) -> str | None:
    """Flink's root-cause text from ``/jobs/:id/exceptions`` (Flink 2.x history, 1.x ``root-exception``)."""
    entries = ((body.get("exceptionHistory") or {}).get("entries")) or []
    if entries:
        text = entries[0].get("stacktrace") or entries[0].get("exceptionName")
        if text:
            return str(text)
    return body.get("root-exception") or None


def _url_host(host: str) -> str:
    """A host for a URL: IPv6 literals in brackets (a zone id's ``%`` escaped)."""
    return f"[{host.replace('%', '%25')}]" if ":" in host else host


_BAD_REPORTER_LINES: set[str] = set()


def _log_bad_reporter_line(what: str) -> None:
    if what not in _BAD_REPORTER_LINES and len(_BAD_REPORTER_LINES) < 100:  # once per distinct line
        _BAD_REPORTER_LINES.add(what)
        log.warning("Skipping a Flink metric reporter line that cannot be read (its subtask counts as unknown): %s",
                    what)


def parse_reporter_watermarks(text: str) -> dict[tuple[str, str], dict[int, tuple[int, str]]]:
    """``(job_id, vertex_id) -> {subtask index: (attempt number, value)}`` from a Prometheus reporter's
    exposition text; only :data:`REPORTER_INPUT_WATERMARK` samples are read (other lines are skipped without
    parsing). Of two attempts of one subtask (a failover in progress) the newer one wins. A sample line that
    cannot be read (no value, no job/task/subtask labels) is skipped and logged: the subtask it was about then
    counts as unknown for its own job, and every other job's samples are still read."""
    out: dict[tuple[str, str], dict[int, tuple[int, str]]] = {}
    prefix = REPORTER_INPUT_WATERMARK + "{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels_end = line.rfind("}")
        labels = dict(_LABEL.findall(line[len(prefix):labels_end]))
        fields = line[labels_end + 1:].split()
        try:
            if labels_end < 0 or not fields:
                raise ValueError("without a value")
            value = fields[0]
            key = (labels["job_id"], labels["task_id"])
            subtask, attempt = int(labels["subtask_index"]), int(labels.get("task_attempt_num", 0))
        except (KeyError, ValueError) as exc:
            _log_bad_reporter_line(f"{exc if isinstance(exc, ValueError) else 'without job_id/task_id/subtask_index'}"
                                   f": {line[:300]!r}")
            continue
        parts = out.setdefault(key, {})
        if subtask not in parts or parts[subtask][0] <= attempt:
            parts[subtask] = (attempt, value)
    return out


@dataclass(frozen=True)
class _Call:
    """One REST call: what to send, how to read the answer, what a 404 means."""

    method: str
    path: str
    json: Any = None
    params: dict | None = None
    files: dict | None = None
    parse: Callable[[Any], Any] = lambda body: body
    text: bool = False  # the body is text (a metric reporter's exposition format), not JSON
    not_found: Callable[[], Exception] | None = None
    retry: bool = True  # False: a 5xx means a permanent error here (the SQL Gateway's failed statements)


_WRAPPER_LINES = ("Internal server error.", "<Exception on server side:", "End of exception on server side>")


def _error_text(resp: httpx.Response, content: bytes, text: str) -> str:
    """Flink's ``{"errors": [...]}`` reduced to what says why: each error's exception line and its
    ``Caused by`` lines, without Flink's generic wrapper lines and Java stack frames; a bounded excerpt."""
    try:
        errors = json.loads(content).get("errors")
    except (ValueError, AttributeError, RecursionError):
        errors = None
    if not errors or not isinstance(errors, list):
        return text[:1000]
    kept = []
    for err in errors[:20]:
        lines = [ln for ln in str(err)[:20_000].strip().splitlines() if ln.strip() not in _WRAPPER_LINES]
        if lines:
            kept.append(short_cause("\n".join(lines), lines=4))
    return "; ".join(kept)[:2000] or text[:1000]


def _error_detail(content: bytes, text: str) -> str:
    """The lines of an error body that say why — Flink's ``errors`` decoded, their first lines and every
    ``Caused by:`` line — from the whole (capped) body, bounded to 30 lines of 500 characters."""
    try:
        errors = json.loads(content).get("errors")
        text = "\n".join(str(e) for e in errors) if isinstance(errors, list) else text
    except (ValueError, AttributeError, RecursionError):
        pass
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("at ")]
    kept = lines[:5] + [ln for ln in lines[5:] if ln.startswith("Caused by:")]
    return "\n".join(ln[:500] for ln in kept[:30])


def _check_trigger_id(trigger_id: str | None) -> None:
    if trigger_id is not None and not re.fullmatch(r"[0-9a-f]{32}", trigger_id):
        raise FlinkConfigurationError(
            f"trigger_id {trigger_id!r} is not a Flink trigger id. To fix this, pass 32 lowercase hex "
            "characters, e.g. uuid.uuid4().hex."
        )


class _CheckpointingOff(Exception):
    """``/jobs/:id/checkpoints/config`` answered 404: checkpointing is not enabled for the job."""


class _RetryableAnswer(Exception):
    """A 5xx or 429 answer (with its capped body), retried while attempts last."""

    def __init__(self, resp: httpx.Response, content: bytes):
        super().__init__(f"HTTP {resp.status_code}")
        self.response, self.content = resp, content


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (httpx.TransportError, _RetryableAnswer))


class FlinkHttpHook(BaseHook):
    """Shared HTTP transport of the Flink REST hooks (JobManager, SQL Gateway): settings from the connection
    (allow-listed extras), one call table for sync and async, retries for transient errors only.

    :param conn_id: the connection id.
    :param retry_limit: attempts per request for transient errors (connection, timeout, 5xx, 429).
    :param retry_delay: first backoff delay in seconds; doubles each attempt, capped at 30 s.
    """

    default_port = 8081
    service_name = "Flink JobManager"

    def __init__(self, conn_id: str, retry_limit: int = 4, retry_delay: float = 0.5):
        super().__init__()
        if retry_limit < 1:
            raise FlinkConfigurationError("retry_limit must be >= 1 (it counts the first attempt too).")
        self.conn_id = conn_id
        self.retry_limit = retry_limit
        self.retry_delay = retry_delay
        self._settings: dict[str, Any] | None = None
        self._aclient: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------ connection
    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {"schema": "Scheme (http or https)", "login": "Basic auth user", "password": "Basic auth password"},
            "placeholders": {
                "host": "flink.example.com",
                "port": str(cls.default_port),
                "schema": "http",
                "extra": json.dumps({"verify": True, "ca_bundle": "/path/ca.pem", "timeout": 10}),
            },
        }

    @classmethod
    def settings_from_connection(cls, conn) -> dict[str, Any]:
        """Client settings from a connection; unknown extras are rejected, not silently passed on."""
        extra = conn.extra_dejson or {}
        unknown = sorted(set(extra) - set(ALLOWED_EXTRAS))
        if unknown:
            raise FlinkConfigurationError(
                f"Connection {conn.conn_id!r} has unsupported extras {unknown}. "
                f"To fix this, keep only {list(ALLOWED_EXTRAS)} in its extra field."
            )
        host = (conn.host or "").strip()
        if not host:
            raise FlinkConfigurationError(
                f"Connection {conn.conn_id!r} has no host. To fix this, set the {cls.service_name}'s host (and port)."
            )
        scheme = (conn.schema or "http").lower()
        if "://" in host:
            scheme, host = host.split("://", 1)
        if scheme not in ("http", "https"):
            raise FlinkConfigurationError(
                f"Connection {conn.conn_id!r}: scheme must be http or https, got {scheme!r}."
            )
        base_url = f"{scheme}://{host.rstrip('/')}:{conn.port or cls.default_port}"
        name = conn.conn_id

        def bad(key: str, expected: str) -> FlinkConfigurationError:
            return FlinkConfigurationError(
                f"Connection {name!r}: extra {key!r} must be {expected}, got {redact(repr(extra.get(key)))[:100]}. "
                f"To fix this, correct (or remove) {key!r} in the connection's extra field."
            )

        verify: Any = extra.get("verify", True)
        if isinstance(verify, str) and verify.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
            verify = verify.strip().lower() in ("true", "1", "yes")
        if not isinstance(verify, bool):
            raise bad("verify", "true or false")
        for key in ("ca_bundle", "client_cert", "client_key", "bearer_token", "web_ui_url"):
            if extra.get(key) is not None and not isinstance(extra[key], str):
                raise bad(key, "a string")
        if verify and extra.get("ca_bundle"):
            verify = str(extra["ca_bundle"])
        cert = None
        if extra.get("client_cert"):
            cert = (str(extra["client_cert"]), str(extra["client_key"])) if extra.get("client_key") else str(extra["client_cert"])
        headers = {}
        auth = None
        if extra.get("bearer_token"):
            headers["Authorization"] = f"Bearer {extra['bearer_token']}"
        elif conn.login:
            auth = (conn.login, conn.password or "")
        timeout = extra.get("timeout", 10)
        try:
            timeout = float(timeout) if not isinstance(timeout, bool) else math.nan
        except (TypeError, ValueError):
            timeout = math.nan
        if not (math.isfinite(timeout) and 0 < timeout <= 600):
            raise bad("timeout", "a number of seconds in (0, 600]")
        cap = extra.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)
        if isinstance(cap, str) and cap.strip().isdigit():
            cap = int(cap)
        if not isinstance(cap, int) or isinstance(cap, bool) or not 1024 <= cap <= 1024**3:
            raise bad("max_response_bytes", "a whole number of bytes from 1024 to 1073741824")
        source = extra.get("watermark_source", "auto")
        if source not in WATERMARK_SOURCES:
            raise bad("watermark_source", " or ".join(repr(x) for x in WATERMARK_SOURCES))
        reporter_port = extra.get("metrics_reporter_port")
        if reporter_port not in (None, ""):
            if isinstance(reporter_port, str) and reporter_port.strip().isdigit():
                reporter_port = int(reporter_port)
            if not isinstance(reporter_port, int) or isinstance(reporter_port, bool) or not 0 < reporter_port < 65536:
                raise bad("metrics_reporter_port", "a port number")
        else:
            reporter_port = None
        reporter_urls = extra.get("metrics_reporter_urls") or []
        if isinstance(reporter_urls, str):
            reporter_urls = [u.strip() for u in reporter_urls.split(",") if u.strip()]
        if not isinstance(reporter_urls, list) or any(
                not isinstance(u, str) or not u.startswith(("http://", "https://")) for u in reporter_urls):
            raise bad("metrics_reporter_urls",
                      "http(s) URLs of the TaskManagers' Prometheus reporters (e.g. http://tm-0:9249/metrics)")
        if source == "reporter" and not (reporter_urls or reporter_port):
            reporter_port = DEFAULT_REPORTER_PORT
        return {
            "reporter_port": reporter_port,
            "reporter_urls": [str(u) for u in reporter_urls],
            "base_url": base_url,
            "verify": verify,
            "cert": cert,
            "headers": headers,
            "auth": auth,
            "timeout": timeout,
            "web_ui_url": str(extra.get("web_ui_url") or base_url).rstrip("/"),
            "max_response_bytes": cap,
            "watermark_source": source,
        }

    def _get_settings(self) -> dict[str, Any]:
        if self._settings is None:
            self._settings = self.settings_from_connection(self.get_connection(self.conn_id))
        return self._settings

    async def _aget_settings(self) -> dict[str, Any]:
        if self._settings is None:
            self._settings = self.settings_from_connection(await self.aget_connection(self.conn_id))
        return self._settings

    @property
    def base_url(self) -> str:
        return self._get_settings()["base_url"]

    def scrub(self, text: str) -> str:
        """``text`` without secrets: URL credentials masked (:func:`redact`), and this connection's password and
        header values (a bearer token) replaced by ``***`` wherever they occur. A cluster or a proxy may echo
        them in an error body, which would otherwise reach a task log, an exception or the Streams view."""
        text = redact(text)
        s = self._settings or {}
        auth = s.get("auth") or ()
        for secret in [*auth[1:], *(s.get("headers") or {}).values()]:
            if isinstance(secret, str) and len(secret) >= 4:  # a 1-3 character value would mask ordinary text
                text = text.replace(secret, "***")
                if secret.lower().startswith("bearer ") and len(secret) > 11:
                    text = text.replace(secret[7:], "***")
        return text

    # ------------------------------------------------------------------ transport
    def _client_kwargs(self, s: dict[str, Any]) -> dict[str, Any]:
        # Plain http needs no TLS context (building one loads the CA bundle: ~1 MB and ~20 ms of blocked loop).
        tls = any(u.startswith("https://") for u in [s["base_url"], *s.get("reporter_urls", ())])
        kw = {"base_url": s["base_url"], "verify": s["verify"] if tls else False, "cert": s["cert"] if tls else None,
              "headers": s["headers"], "timeout": s["timeout"]}
        if s["auth"]:
            kw["auth"] = s["auth"]
        return kw

    def _retrying_kwargs(self, call: _Call) -> dict[str, Any]:
        return {
            "stop": tenacity.stop_after_attempt(self.retry_limit if call.retry else 1),
            "wait": tenacity.wait_exponential(multiplier=self.retry_delay, max=30),
            "retry": tenacity.retry_if_exception(_retryable),
            "reraise": True,
        }

    def _request_kwargs(self, call: _Call) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if call.json is not None:
            kw["json"] = call.json
        if call.params:
            kw["params"] = call.params
        if call.files:
            kw["files"] = call.files
        return kw

    def _cap(self) -> int:
        return (self._settings or {}).get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)

    def _too_large(self, call: _Call, resp: httpx.Response) -> FlinkApiError:
        return FlinkApiError(
            f"{self.service_name} REST {call.method} {self.scrub(call.path)} answered {resp.status_code} with a body "
            f"larger than {self._cap()} bytes; it was not read. To fix this, check that connection {self.conn_id!r} "
            f"points at a {self.service_name}'s REST port (not a proxy page), or raise the connection extra "
            "max_response_bytes.", resp.status_code, unreadable=True,
        )

    def _finish(self, call: _Call, resp: httpx.Response, content: bytes) -> Any:
        text = content.decode(resp.encoding or "utf-8", errors="replace")
        if resp.status_code == 404 and call.not_found is not None:
            raise call.not_found()
        if resp.status_code >= 400:
            raise FlinkApiError(
                f"{self.service_name} REST {call.method} {self.scrub(call.path)} answered {resp.status_code}: "
                f"{self.scrub(_error_text(resp, content, text))}",
                resp.status_code, self.scrub(text[:BODY_EXCERPT_CHARS]), detail=self.scrub(_error_detail(content, text)),
            )
        try:
            if resp.status_code != 200 and not (200 <= resp.status_code < 300):
                raise ValueError(f"status {resp.status_code} is not an answer")  # a redirect: no Flink answer
            body = text if call.text else json.loads(content) if content else None
            return call.parse(body)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
            raise FlinkApiError(
                f"{self.service_name} REST {call.method} {self.scrub(call.path)} answered {resp.status_code} with a body "
                f"we cannot read ({type(exc).__name__}: {self.scrub(str(exc))[:200]}): {self.scrub(text[:300])!r}. To fix "
                f"this, check that connection {self.conn_id!r} points at a {self.service_name}'s REST port (not a "
                "proxy error page).",
                resp.status_code, self.scrub(text[:BODY_EXCERPT_CHARS]), unreadable=True,
            ) from None

    def _unreachable(self, call: _Call, exc: BaseException) -> FlinkConnectionError:
        where = self._settings["base_url"] if self._settings else "?"
        return FlinkConnectionError(self.scrub(
            f"{self.service_name} at {where} did not answer {call.method} {call.path} after "
            f"{self.retry_limit if call.retry else 1} attempt(s): {exc!r}. To fix this, check that it is running "
            f"and that connection {self.conn_id!r} points at its REST port."
        ))

    @staticmethod
    def _raise_if_retryable(resp: httpx.Response, content: bytearray) -> None:
        if resp.status_code >= 500 or resp.status_code == 429:
            raise _RetryableAnswer(resp, bytes(content))

    def _call(self, call: _Call) -> Any:
        if call.path.startswith(("http://", "https://")):
            raise NotImplementedError("absolute URLs (other servers of the cluster) are called only by the async API")
        s = self._get_settings()
        kw = self._request_kwargs(call)
        cap = self._cap()
        try:
            with httpx.Client(**self._client_kwargs(s)) as client:
                for attempt in tenacity.Retrying(**self._retrying_kwargs(call)):
                    with attempt:
                        with client.stream(call.method, call.path, **kw) as resp:
                            content = bytearray()
                            for chunk in resp.iter_bytes():
                                content += chunk
                                if len(content) > cap:
                                    raise self._too_large(call, resp)
                            self._raise_if_retryable(resp, content)
        except httpx.TransportError as exc:
            raise self._unreachable(call, exc) from exc
        except _RetryableAnswer as exc:
            resp, content = exc.response, exc.content
        return self._finish(call, resp, bytes(content))

    async def _acall(self, call: _Call) -> Any:
        s = await self._aget_settings()
        kw = self._request_kwargs(call)
        cap = self._cap()
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = self._aclient or await stack.enter_async_context(httpx.AsyncClient(**self._client_kwargs(s)))
                async for attempt in tenacity.AsyncRetrying(**self._retrying_kwargs(call)):
                    with attempt:
                        req = client.build_request(call.method, call.path, **kw)
                        auth = httpx.USE_CLIENT_DEFAULT
                        if call.path.startswith(("http://", "https://")):
                            # Another server of the cluster (a TaskManager's reporter): not the JobManager's
                            # credentials.
                            req.headers.pop("Authorization", None)
                            auth = None
                        resp = await client.send(req, auth=auth, stream=True)
                        try:
                            content = bytearray()
                            async for chunk in resp.aiter_bytes():
                                content += chunk
                                if len(content) > cap:
                                    raise self._too_large(call, resp)
                            self._raise_if_retryable(resp, content)
                        finally:
                            await resp.aclose()
        except httpx.TransportError as exc:
            raise self._unreachable(call, exc) from exc
        except _RetryableAnswer as exc:
            resp, content = exc.response, exc.content
        return self._finish(call, resp, bytes(content))

    @contextlib.asynccontextmanager
    async def a_session(self) -> AsyncIterator[FlinkHttpHook]:
        """Reuse one connection pool for every ``a_`` call inside the block (long-running pollers)."""
        s = await self._aget_settings()
        async with httpx.AsyncClient(**self._client_kwargs(s)) as client:
            self._aclient = client
            try:
                yield self
            finally:
                self._aclient = None


class FlinkRestHook(FlinkHttpHook):
    """Talk to a Flink JobManager over REST; sync methods and ``a_``-prefixed async twins.

    :param flink_conn_id: a ``flink_rest`` connection id.
    :param retry_limit: attempts per request for transient errors (connection, timeout, 5xx, 429).
    :param retry_delay: first backoff delay in seconds; doubles each attempt, capped at 30 s.
    """

    conn_name_attr = "flink_conn_id"
    default_conn_name = "flink_default"
    conn_type = "flink_rest"
    hook_name = "Flink REST (JobManager)"

    def __init__(self, flink_conn_id: str = default_conn_name, retry_limit: int = 4, retry_delay: float = 0.5):
        super().__init__(flink_conn_id, retry_limit, retry_delay)

    @property
    def flink_conn_id(self) -> str:
        return self.conn_id

    def job_url(self, job_id: str) -> str:
        """Link to a job in the Flink web UI."""
        return f"{self._get_settings()['web_ui_url']}/#/job/running/{job_id}/overview"

    # ------------------------------------------------------------------ calls (shared by sync and async)
    @staticmethod
    def _job_missing(job_id: str) -> Callable[[], Exception]:
        return lambda: FlinkJobNotFound(
            f"Flink has no job {job_id}. To fix this, check the job id (a job id changes on every submit; "
            f"look the job up by name) or whether the job's history expired.",
            job_id=job_id,
        )

    def _c_taskmanager_hosts(self) -> _Call:
        def parse(body: dict) -> tuple[int, list[str]]:
            tms = body.get("taskmanagers", [])
            return len(tms), sorted({m.group(1) for tm in tms if (m := _TM_HOST.search(tm.get("path", "")))})

        return _Call("GET", "/taskmanagers", parse=parse)

    def _c_reporter_watermarks(self, url: str) -> _Call:
        return _Call("GET", url, params={"name[]": REPORTER_INPUT_WATERMARK}, text=True,
                     parse=parse_reporter_watermarks)

    def _c_jobs(self) -> _Call:
        return _Call("GET", "/jobs/overview", parse=lambda b: parse_overview(b).jobs)

    def _c_jobs_tolerant(self) -> _Call:
        return _Call("GET", "/jobs/overview", parse=parse_overview)

    def _c_job(self, job_id: str) -> _Call:
        return _Call("GET", f"/jobs/{check_flink_id(job_id)}", parse=JobDetail.from_json,
                     not_found=self._job_missing(job_id))

    def _c_plan(self, job_id: str) -> _Call:
        return _Call("GET", f"/jobs/{check_flink_id(job_id)}/plan", parse=lambda b: b["plan"], not_found=self._job_missing(job_id))

    def _c_exceptions(self, job_id: str) -> _Call:
        return _Call("GET", f"/jobs/{check_flink_id(job_id)}/exceptions", parse=root_cause_from_exceptions,
                     not_found=self._job_missing(job_id))

    def _c_checkpoints(self, job_id: str) -> _Call:
        return _Call("GET", f"/jobs/{check_flink_id(job_id)}/checkpoints", parse=CheckpointInfo.from_json,
                     not_found=self._job_missing(job_id))

    def _c_watermarks(self, job_id: str, vertex_id: str) -> _Call:
        return _Call("GET", f"/jobs/{check_flink_id(job_id)}/vertices/{check_flink_id(vertex_id, 'vertex id')}/watermarks",
                     parse=lambda b: {m["id"]: m["value"] for m in (b or [])}, not_found=self._job_missing(job_id))

    def _c_subtask_metrics(self, job_id: str, vertex_id: str, metrics: list[str], agg: str) -> _Call:
        return _Call("GET", f"/jobs/{check_flink_id(job_id)}/vertices/{check_flink_id(vertex_id, 'vertex id')}/subtasks/metrics",
                     params={"get": ",".join(metrics), "agg": agg},
                     parse=lambda b: {m["id"]: m.get(agg) for m in (b or [])}, not_found=self._job_missing(job_id))

    def _c_savepoint_status(self, job_id: str, trigger_id: str) -> _Call:
        _check_trigger_id(trigger_id)
        return _Call("GET", f"/jobs/{check_flink_id(job_id)}/savepoints/{trigger_id}",
                     parse=lambda b: SavepointStatus.from_json(trigger_id, b), not_found=self._job_missing(job_id))

    def _c_vertex_attempts(self, job_id: str, vertex_id: str) -> _Call:
        """``{subtask index: attempt number}`` of a vertex, from the JobManager's execution graph (live)."""
        def parse(body: dict) -> dict[int, int]:
            return {int(t["subtask"]): int(t.get("attempt", 0)) for t in body.get("subtasks", [])}

        return _Call("GET", f"/jobs/{check_flink_id(job_id)}/vertices/{check_flink_id(vertex_id, 'vertex id')}",
                     parse=parse, not_found=self._job_missing(job_id))

    def _c_vertex_metrics(self, job_id: str, vertex_id: str, names: list[str]) -> _Call:
        """Named metrics of a vertex, e.g. ``0.<operator>.currentOutputWatermark`` for each subtask."""
        return _Call("GET", f"/jobs/{check_flink_id(job_id)}/vertices/{check_flink_id(vertex_id, 'vertex id')}/metrics",
                     params={"get": ",".join(names)}, parse=lambda b: {m["id"]: m.get("value") for m in (b or [])},
                     not_found=self._job_missing(job_id))

    def _c_checkpoint_config(self, job_id: str) -> _Call:
        """True when the job checkpoints periodically; False when checkpointing is disabled (Flink answers 404
        "Checkpointing is not enabled", or an interval of Long.MAX_VALUE)."""
        def parse(body: dict) -> bool:
            interval = body.get("interval")
            return not (isinstance(interval, (int, float)) and interval >= 2**63 - 1 - 10_000)

        return _Call("GET", f"/jobs/{check_flink_id(job_id)}/checkpoints/config", parse=parse,
                     not_found=lambda: _CheckpointingOff())

    def _c_jobmanager_config(self) -> _Call:
        return _Call("GET", "/jobmanager/config",
                     parse=lambda b: {str(e["key"]): str(e.get("value")) for e in (b or []) if isinstance(e, dict)})

    # ------------------------------------------------------------------ sync API
    def test_connection(self) -> tuple[bool, str]:
        """Cheap and bounded: one ``GET /config`` without retries."""
        try:
            s = self._get_settings()
            with httpx.Client(**dict(self._client_kwargs(s), timeout=min(s["timeout"], 5))) as c:
                resp = c.get("/config")
            if resp.status_code != 200:
                return False, f"Flink REST answered {resp.status_code}: {resp.text[:200]}"
            return True, f"Connected to Flink {resp.json().get('flink-version')} at {s['base_url']}"
        except Exception as exc:  # noqa: BLE001 - the UI wants a message, not a traceback
            return False, f"Cannot reach Flink REST: {exc}"

    def list_jobs(self) -> list[JobOverview]:
        """All jobs the cluster knows (running and recently ended)."""
        return self._call(self._c_jobs())

    def get_job(self, job_id: str) -> JobDetail:
        return self._call(self._c_job(job_id))

    def get_job_state(self, job_id: str) -> JobState:
        return self.get_job(job_id).state

    def get_job_plan(self, job_id: str) -> dict:
        return self._call(self._c_plan(job_id))

    def get_root_cause(self, job_id: str) -> str | None:
        return self._call(self._c_exceptions(job_id))

    def get_checkpoints(self, job_id: str) -> CheckpointInfo:
        return self._call(self._c_checkpoints(job_id))

    def get_vertex_watermarks(self, job_id: str, vertex_id: str) -> dict[str, str]:
        """Raw watermark metrics of a vertex: ``{"<subtask>.currentInputWatermark": "<ms>"}``."""
        return self._call(self._c_watermarks(job_id, vertex_id))

    def get_subtask_metrics(self, job_id: str, vertex_id: str, metrics: list[str], agg: str = "min") -> dict:
        """Aggregated subtask metrics, e.g. ``{"currentInputWatermark": 1.7e12}`` for ``agg="min"``."""
        return self._call(self._c_subtask_metrics(job_id, vertex_id, metrics, agg))

    def find_jobs_by_name(self, name: str) -> list[JobOverview]:
        """Every job of the cluster named ``name`` (active and ended)."""
        return [j for j in self.list_jobs() if j.name == name]

    def find_active_job(self, name: str) -> JobOverview | None:
        """The non-terminal job with this name, if any; the newest one if several (a duplicate is logged)."""
        jobs = self.list_jobs()
        active = [j for j in jobs if j.name == name and not j.state.is_terminal]
        if len(active) > 1:
            self.log.warning("%d active jobs are named %r: %s", len(active), name, [j.job_id for j in active])
        return resolve_job_name(jobs, name, active_only=True)

    def upload_jar(self, jar_path: str | Path) -> str:
        """Upload a jar to the JobManager; return its jar id (for :meth:`run_jar`)."""
        path = Path(jar_path)
        if not path.is_file():
            raise FlinkJarUploadFailed(f"Jar {path} does not exist. To fix this, check the jar= path of the task.")
        with path.open("rb") as fh:
            call = _Call("POST", "/jars/upload", files={"jarfile": (path.name, fh, "application/x-java-archive")})
            try:
                body = self._call(call)
            except FlinkApiError as exc:
                raise FlinkJarUploadFailed(f"Uploading {path} to Flink failed: {exc}") from exc
        if (body or {}).get("status") != "success":
            raise FlinkJarUploadFailed(f"Uploading {path} to Flink failed: {body}")
        return Path(body["filename"]).name

    def run_jar(
        self,
        jar_id: str,
        *,
        entry_class: str | None = None,
        program_args: list[str] | None = None,
        parallelism: int | None = None,
        job_id: str | None = None,
        savepoint_path: str | None = None,
        allow_non_restored_state: bool = False,
        flink_configuration: dict[str, str] | None = None,
    ) -> str:
        """Run an uploaded jar; return the new job id. Not idempotent by itself: pass ``job_id`` to make it so."""
        body: dict[str, Any] = {"allowNonRestoredState": allow_non_restored_state}
        for key, value in (("entryClass", entry_class), ("programArgsList", program_args),
                           ("parallelism", parallelism), ("jobId", job_id), ("savepointPath", savepoint_path),
                           ("flinkConfiguration", flink_configuration)):
            if value is not None:
                body[key] = value
        try:
            # No retry: a failing main() answers 500, and a resent run could start a second job.
            return self._call(_Call("POST", f"/jars/{jar_id}/run", json=body, parse=lambda b: b["jobid"], retry=False))
        except FlinkApiError as exc:
            raise FlinkJarUploadFailed(
                f"Running jar {jar_id} failed (the job's main() threw or the arguments are wrong): {exc}"
            ) from exc

    def list_jars(self) -> list[dict]:
        """Jars uploaded to the JobManager: ``[{"id", "name", "uploaded", ...}]`` as Flink reports them."""
        return self._call(_Call("GET", "/jars", parse=lambda b: b.get("files", [])))

    def ensure_jar(self, jar_path: str | Path) -> str:
        """Jar id of ``jar_path`` on the JobManager, uploading it only if no jar of that file name is there."""
        name = Path(jar_path).name
        for f in sorted(self.list_jars(), key=lambda f: f.get("uploaded", 0), reverse=True):
            if f.get("name") == name:
                return f["id"]
        return self.upload_jar(jar_path)

    def run_python(
        self,
        script: str,
        *,
        driver_jar: str | Path,
        args: list[str] | None = None,
        **run_kwargs: Any,
    ) -> str:
        """Run a PyFlink script on the cluster through Flink's ``PythonDriver`` (as the Flink Kubernetes
        Operator does): the JobManager executes the script with its ``python.client.executable``.

        :param script: path of the script *as the JobManager sees it* (local path on the local stack).
        :param driver_jar: the distribution's ``opt/flink-python-<version>.jar`` (uploaded once, then reused).
        """
        jar_id = self.ensure_jar(driver_jar)
        return self.run_jar(
            jar_id,
            entry_class="org.apache.flink.client.python.PythonDriver",
            program_args=["-py", str(script), *(args or [])],
            **run_kwargs,
        )

    def delete_jar(self, jar_id: str) -> None:
        self._call(_Call("DELETE", f"/jars/{jar_id}", not_found=lambda: FlinkApiError(f"No jar {jar_id}", 404)))

    def stop_with_savepoint(
        self, job_id: str, *, target_directory: str | None = None, drain: bool = False, trigger_id: str | None = None
    ) -> str:
        """Ask Flink to stop the job with a savepoint; return the trigger id to poll.

        Passing our own ``trigger_id`` (32 hex characters) makes a retried request idempotent: Flink
        dedupes operations by trigger id.
        """
        return self._post_savepoint(job_id, "stop", {"drain": drain}, "targetDirectory", target_directory, trigger_id)

    def trigger_savepoint(
        self, job_id: str, *, target_directory: str | None = None, cancel_job: bool = False,
        trigger_id: str | None = None,
    ) -> str:
        """Trigger a savepoint (optionally cancelling the job); return the trigger id to poll."""
        return self._post_savepoint(job_id, "savepoints", {"cancel-job": cancel_job}, "target-directory",
                                    target_directory, trigger_id)

    def _post_savepoint(
        self, job_id: str, endpoint: str, body: dict[str, Any], dir_key: str, target_directory: str | None,
        trigger_id: str | None,
    ) -> str:
        # Flink spells the directory key differently on /stop and /savepoints; triggerId is the same.
        _check_trigger_id(trigger_id)
        if target_directory:
            body[dir_key] = target_directory
        if trigger_id:
            body["triggerId"] = trigger_id
        return self._call(_Call("POST", f"/jobs/{check_flink_id(job_id)}/{endpoint}", json=body, parse=lambda b: b["request-id"],
                                not_found=self._job_missing(job_id)))

    def get_savepoint_status(self, job_id: str, trigger_id: str) -> SavepointStatus:
        return self._call(self._c_savepoint_status(job_id, trigger_id))

    def cancel_job(self, job_id: str) -> None:
        """Cancel a job (no savepoint). Cancelling a job that already ended is a no-op."""
        self._call(_Call("PATCH", f"/jobs/{check_flink_id(job_id)}", params={"mode": "cancel"}, not_found=self._job_missing(job_id)))

    # ------------------------------------------------------------------ async API (for triggers)
    async def a_list_jobs(self) -> list[JobOverview]:
        return await self._acall(self._c_jobs())

    async def a_jobs_overview(self) -> Overview:
        """Every job's state, one entry at a time: an entry that cannot be read is kept aside in
        :attr:`Overview.bad`, never the whole answer's failure."""
        return await self._acall(self._c_jobs_tolerant())

    async def a_get_job(self, job_id: str) -> JobDetail:
        return await self._acall(self._c_job(job_id))

    async def a_get_job_plan(self, job_id: str) -> dict:
        return await self._acall(self._c_plan(job_id))

    async def a_get_root_cause(self, job_id: str) -> str | None:
        return await self._acall(self._c_exceptions(job_id))

    async def a_get_checkpoints(self, job_id: str) -> CheckpointInfo:
        return await self._acall(self._c_checkpoints(job_id))

    async def a_get_vertex_watermarks(self, job_id: str, vertex_id: str) -> dict[str, str]:
        return await self._acall(self._c_watermarks(job_id, vertex_id))

    async def a_get_subtask_metrics(self, job_id: str, vertex_id: str, metrics: list[str], agg: str = "min") -> dict:
        return await self._acall(self._c_subtask_metrics(job_id, vertex_id, metrics, agg))

    async def a_get_vertex_attempts(self, job_id: str, vertex_id: str) -> dict[int, int]:
        return await self._acall(self._c_vertex_attempts(job_id, vertex_id))

    async def a_get_vertex_metrics(self, job_id: str, vertex_id: str, names: list[str]) -> dict:
        return await self._acall(self._c_vertex_metrics(job_id, vertex_id, names))

    async def a_checkpointing_enabled(self, job_id: str) -> bool:
        """Whether the job checkpoints periodically (``GET /jobs/:id/checkpoints/config``)."""
        try:
            return await self._acall(self._c_checkpoint_config(job_id))
        except _CheckpointingOff:
            return False

    async def a_get_jobmanager_config(self) -> dict[str, str]:
        return await self._acall(self._c_jobmanager_config())

    async def a_get_savepoint_status(self, job_id: str, trigger_id: str) -> SavepointStatus:
        return await self._acall(self._c_savepoint_status(job_id, trigger_id))

    async def a_reporter_urls(self, port: int | None = None) -> list[str]:
        """The TaskManagers' Prometheus reporter URLs: ``metrics_reporter_urls``, or each TaskManager host
        (``GET /taskmanagers``) with ``metrics_reporter_port`` (or ``port``); ``[]`` when there is none."""
        s = await self._aget_settings()
        if s["reporter_urls"]:
            return list(s["reporter_urls"])
        port = s["reporter_port"] if port is None else port
        if port is None:
            return []
        scheme = s["base_url"].split("://", 1)[0]
        taskmanagers, hosts = await self._acall(self._c_taskmanager_hosts())
        if taskmanagers > len(hosts):
            log.warning(
                "Connection %r: %d TaskManagers but %d reporter host(s) %s: TaskManagers that share a host (or "
                "whose address is unknown) are not scraped, and their subtasks keep progress unknown. To fix this, "
                "list every reporter in the extra metrics_reporter_urls.", self.conn_id, taskmanagers, len(hosts),
                hosts)
        return [f"{scheme}://{_url_host(h)}:{port}/metrics" for h in hosts]

    async def a_scrape_reporter_watermarks(self, url: str) -> dict[tuple[str, str], dict[int, tuple[int, str]]]:
        """Every task's ``currentInputWatermark`` that one TaskManager's Prometheus reporter serves (all jobs)."""
        return await self._acall(self._c_reporter_watermarks(url))

    # ------------------------------------------------------------------ lifecycle helpers (submit identity, upgrades)
    # Used by the submit operator's name check and upgrade rollback (operators/flink.py); kept apart from the
    # transport and the watermark calls above.
    def get_job_user_config(self, job_id: str) -> dict[str, str]:
        """The job's global job parameters: ``GET /jobs/:id/config`` → ``execution-config.user-config``.

        What a submit passes as ``pipeline.global-job-parameters`` shows up here, unless the program replaced
        the parameters (e.g. ``env.getConfig().setGlobalJobParameters(params)``).
        """
        def parse(body: Any) -> dict[str, str]:
            user = ((body or {}).get("execution-config") or {}).get("user-config") or {}
            return {str(k): str(v) for k, v in user.items()} if isinstance(user, dict) else {}

        return self._call(_Call("GET", f"/jobs/{job_id}/config", parse=parse, not_found=self._job_missing(job_id)))
