"""Operators for the Flink job lifecycle on a session cluster: submit (adopt / upgrade), stop, cancel.

Retry safety: a job's ``job_name`` is its identity, and it is *checked*: after every submit the operator
reads the name Flink reports for the new job; a program that named itself otherwise (``env.execute("…")``)
is cancelled at once and :class:`~airflow_rtml.exceptions.FlinkJobNameMismatch` raised, so no job runs
under a name the next try cannot find. Re-running :class:`FlinkSubmitJobOperator` while a non-terminal job
of that name runs adopts it (no duplicate); savepoint requests carry a trigger id derived from the task
instance, so a retried stop is the same Flink operation, not a second savepoint.

Upgrade safety (``if_running="upgrade"``): every job this operator submits carries a record of its program
(the global job parameter :data:`ARTIFACT_PARAM`, readable with ``GET /jobs/:id/config``). An upgrade reads
the running job's record *before* stopping it; when the new program cannot start from the savepoint, the old
program is put back from that same savepoint and :class:`~airflow_rtml.exceptions.FlinkUpgradeFailed` is
raised with Flink's real cause. A successful upgrade is verified: the new job must report a restore from the
savepoint, and the result says whether its watermark resumed at or above the value it had before the stop.
See ``docs/lifecycle-safety.md``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from airflow.sdk import BaseOperator, Context, conf

from airflow_rtml.exceptions import (
    FlinkApiError,
    FlinkConfigurationError,
    FlinkConnectionError,
    FlinkJarUploadFailed,
    FlinkJobAlreadyRunning,
    FlinkJobFailed,
    FlinkJobNameMismatch,
    FlinkJobNotFound,
    FlinkJobProgramChanged,
    FlinkSqlError,
    FlinkUpgradeFailed,
    FlinkWaitTimeout,
)
from airflow_rtml.hooks.flink import FlinkRestHook, JobState, short_cause
from airflow_rtml.hooks.flink_sql import FlinkSqlGatewayHook, split_statements, strip_comments
from airflow_rtml.links import XCOM_JOB_ID, FlinkJobLink
from airflow_rtml.triggers.flink import (
    EventStatus,
    FlinkJobStateTrigger,
    FlinkSavepointTrigger,
    raise_for_event,
)

#: A deferrable wait first polls on the worker this long before it defers (most jobs are RUNNING by then).
DEFER_AFTER_S = 10.0
PYTHON_DRIVER_JAR_ENV = "RTML_FLINK_PYTHON_JAR"


def trigger_id_for(context: Context, job_id: str, purpose: str) -> str:
    """A Flink trigger id (32 hex) that is the same for every try of this task instance on this job."""
    ti = context["ti"]
    key = f"{ti.dag_id}/{ti.task_id}/{ti.run_id}/{ti.map_index}/{job_id}/{purpose}"
    return uuid.uuid5(uuid.NAMESPACE_URL, "airflow-rtml:" + key).hex


def _default_deferrable() -> bool:
    return conf.getboolean("operators", "default_deferrable", fallback=False)


class _FlinkJobWaitMixin:
    """Defer to (or block on) :class:`FlinkJobStateTrigger`; shared by the submit operator and the sensor."""

    flink_conn_id: str
    poll_interval: float
    deferrable: bool
    wait_timeout: timedelta | None

    def _deadline(self) -> float | None:
        return time.time() + self.wait_timeout.total_seconds() if self.wait_timeout else None

    def _wait(self, hook: FlinkRestHook, job_id: str, targets: list[str], result: dict) -> dict:
        deadline = self._deadline()
        hook.base_url  # noqa: B018 - resolve the connection before any event loop starts

        def trigger(until: float | None, interval: float) -> FlinkJobStateTrigger:
            return FlinkJobStateTrigger(job_id, targets, self.flink_conn_id, interval, until)

        if self.deferrable:
            # A job usually gets there within seconds: wait that long here rather than defer for it (a deferral
            # that fires at once costs more, and races the executor's report of the deferring process).
            short = time.time() + DEFER_AFTER_S
            event = trigger(short if deadline is None else min(short, deadline), min(self.poll_interval, 0.5)) \
                .run_blocking(hook)
            if event["status"] == EventStatus.TIMEOUT.value and (deadline is None or time.time() < deadline):
                self.defer(  # type: ignore[attr-defined]
                    trigger=trigger(deadline, self.poll_interval), method_name="execute_complete",
                    kwargs={"result": result},
                )
        else:
            event = trigger(deadline, self.poll_interval).run_blocking(hook)
        raise_for_event(event)
        return dict(result, state=event["state"])

    def execute_complete(self, context: Context, event: dict, result: dict | None = None) -> dict:
        """Resume after the trigger: raises the same exceptions as the sync path."""
        raise_for_event(event)
        return dict(result or {"job_id": event["job_id"]}, state=event["state"])


#: The global job parameter that carries the record of a job's program (see :class:`JobArtifact`).
ARTIFACT_PARAM = "rtml.artifact"
#: The global job parameter that carries the program's :attr:`JobArtifact.fingerprint` (also when the record is too
#: large to attach): what adopt and upgrade compare.
FINGERPRINT_PARAM = "rtml.fingerprint"
_GLOBAL_JOB_PARAMETERS = "pipeline.global-job-parameters"
#: A record larger than this (encoded) is not attached (a warning says so): upgrades of that job cannot roll back.
MAX_ARTIFACT_PARAM_BYTES = 64 * 1024
#: How long a cancelled job (name mismatch, failed upgrade) may take to reach a terminal state.
CANCEL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class JobArtifact:
    """What a job was started from, enough to start it again: the record an upgrade rolls back to.

    ``kind`` is ``"sql"`` (the rendered statements and the jars added to the session), ``"jar"`` (the jar's id on
    the JobManager, its file name and SHA-256, entry class, arguments) or ``"python"`` (the script as the
    JobManager sees it, arguments). ``parallelism`` and ``flink_conf`` are the submit's own settings.
    Serialized as zlib-compressed JSON in URL-safe base64 (no ``,`` or ``:``, so it fits Flink's map syntax).
    """

    kind: str
    statements: list[str] = field(default_factory=list)
    sql_jars: list[str] = field(default_factory=list)
    jar_id: str | None = None
    jar_name: str | None = None
    jar_sha256: str | None = None
    jar_path: str | None = None
    entry_class: str | None = None
    python: str | None = None
    args: list[str] = field(default_factory=list)
    parallelism: int | None = None
    flink_conf: dict[str, str] = field(default_factory=dict)
    version: int = 1

    @property
    def fingerprint(self) -> str:
        """SHA-256 (hex) of what defines the program: the rendered statements and the jars added to the session
        (``sql``); the jar's SHA-256, entry class and arguments (``jar``); the script path as the JobManager sees
        it and its arguments (``python``: its content is not readable from the worker); ``parallelism`` and
        ``flink_conf``. Not the jar's id on the JobManager (a re-upload of the same file gets another)."""
        what = {"kind": self.kind, "statements": [st.strip() for st in self.statements], "sql_jars": self.sql_jars,
                "jar_sha256": self.jar_sha256, "entry_class": self.entry_class, "python": self.python,
                "args": [str(a) for a in self.args], "parallelism": self.parallelism,
                "flink_conf": {str(k): str(v) for k, v in self.flink_conf.items()}}
        return hashlib.sha256(json.dumps(what, separators=(",", ":"), sort_keys=True).encode()).hexdigest()

    def encode(self) -> str:
        raw = json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()
        return base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> JobArtifact:
        """Read a record; ``ValueError`` when it is not one (corrupt, truncated or of an unknown version)."""
        try:
            data = json.loads(zlib.decompress(base64.urlsafe_b64decode(text.encode("ascii"))))
            if not isinstance(data, dict) or data.get("version") != 1 or data.get("kind") not in ("sql", "jar", "python"):
                raise ValueError(f"not a version-1 record: {str(data)[:100]}")
            return cls(**data)
        except (TypeError, zlib.error, UnicodeError, json.JSONDecodeError, binascii.Error) as exc:
            raise ValueError(f"unreadable {ARTIFACT_PARAM} record: {exc}") from exc


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _with_record(flink_conf: dict[str, str], record: str | None) -> dict[str, str]:
    """``flink_conf`` with the record appended to its ``pipeline.global-job-parameters`` (``k:v,k:v`` form)."""
    if record is None:
        return dict(flink_conf)
    existing = str(flink_conf.get(_GLOBAL_JOB_PARAMETERS) or "").strip()
    kept = ",".join(p for p in existing.split(",") if p and not p.strip().startswith(ARTIFACT_PARAM + ":"))
    return {**flink_conf, _GLOBAL_JOB_PARAMETERS: f"{kept},{ARTIFACT_PARAM}:{record}" if kept else
            f"{ARTIFACT_PARAM}:{record}"}


def _with_fingerprint(flink_conf: dict[str, str], fingerprint: str) -> dict[str, str]:
    """``flink_conf`` with :data:`FINGERPRINT_PARAM` set in its global job parameters (an older one replaced)."""
    existing = str(flink_conf.get(_GLOBAL_JOB_PARAMETERS) or "").strip()
    kept = [p for p in existing.split(",") if p and not p.strip().startswith(FINGERPRINT_PARAM + ":")]
    return {**flink_conf, _GLOBAL_JOB_PARAMETERS: ",".join([*kept, f"{FINGERPRINT_PARAM}:{fingerprint}"])}


def stream_watermark(hook: FlinkRestHook, job_id: str) -> int | None:
    """The job's event-time progress as its sinks see it: the minimum ``currentInputWatermark`` over every
    subtask of every sink vertex (a vertex no other vertex reads from); None when unknown or absent.

    A sink vertex that lists fewer subtasks than its parallelism, a job without event time (``Long.MIN_VALUE``),
    or a job whose only vertex is its source (a source reports no input watermark) all give None. Reads the
    JobManager's metric cache (``metrics.fetcher.update-interval`` old at most). Never raises for a missing
    or odd metric: this is a report for the upgrade's result, not a wait.
    """
    from airflow_rtml.progress import NO_WATERMARK, ProgressParseError, combine, progress_from_vertex_metrics

    try:
        nodes = hook.get_job_plan(job_id).get("nodes") or []
        read_by_others = {i.get("id") for n in nodes for i in (n.get("inputs") or [])}
        sinks = [n for n in nodes if n.get("id") not in read_by_others]
        parts: list[int | None] = []
        for node in sinks:
            metrics = hook.get_vertex_watermarks(job_id, node["id"])
            listed = [k for k in metrics if k.endswith(".currentInputWatermark")]
            parts.append(progress_from_vertex_metrics(metrics)
                         if len(listed) >= int(node.get("parallelism") or 1) else None)
        progress = combine(parts)
    except (FlinkApiError, FlinkConnectionError, FlinkJobNotFound, ProgressParseError, KeyError, TypeError,
            ValueError):
        return None
    return None if progress is None or progress <= NO_WATERMARK else progress


def _cancel_and_wait(hook: FlinkRestHook, job_id: str, log, timeout: float = CANCEL_TIMEOUT_S) -> JobState | None:
    """Cancel ``job_id`` (no savepoint) and wait until it is terminal; return its last state (None if unknown)."""
    deadline = time.monotonic() + timeout
    state: JobState | None = None
    try:
        hook.cancel_job(job_id)
        while time.monotonic() < deadline:
            state = hook.get_job_state(job_id)
            if state.is_terminal:
                return state
            time.sleep(0.5)
    except FlinkJobNotFound:
        return None
    except (FlinkApiError, FlinkConnectionError) as exc:
        log.error("Could not cancel Flink job %s: %s", job_id, exc)
    log.error("Flink job %s is still %s %.0fs after the cancel request", job_id, state, timeout)
    return state


def _distinct_lines(text: str) -> str:
    """A cause without the lines that only repeat an earlier one's message under another exception wrapper
    (Flink nests the same "Cannot map … state" text in two ``Caused by`` lines)."""
    seen: set[str] = set()
    kept = []
    for line in text.splitlines():
        message = line.rsplit("Exception: ", 1)[-1]
        if message not in seen:
            seen.add(message)
            kept.append(line)
    return "\n".join(kept)


class _UpgradeNotRestored(FlinkJobFailed):
    """The new job of an upgrade runs but reports no restore from the upgrade's savepoint (internal)."""


class FlinkSubmitJobOperator(_FlinkJobWaitMixin, BaseOperator):
    """Submit a Flink job to a session cluster, or adopt the one already running under ``job_name``.

    Exactly one of ``jar``, ``python`` or ``sql`` gives the artifact. Returns (XCom) ``{"job_id", "job_name",
    "adopted", "savepoint_path", "state", "restored_from_savepoint", "watermark_before_ms",
    "watermark_after_ms", "watermark_resumed", "fingerprint", "program_changed"}`` and pushes ``job_id`` separately for the extra link.
    ``restored_from_savepoint`` is whether Flink reports the new job restored from ``savepoint_path`` (None
    without a savepoint); the ``watermark_*`` keys are set by an upgrade (None otherwise, and when the job has
    no watermark): the stream's watermark before the stop, after the restore, and whether it got back to it.

    Program identity: every submitted job carries its program's fingerprint (:attr:`JobArtifact.fingerprint`,
    the global job parameter :data:`FINGERPRINT_PARAM`): a SHA-256 of the rendered SQL and the jars added, or the
    jar's digest, entry class and arguments, or the script path and arguments, plus parallelism and
    ``flink_conf``. The result's ``fingerprint`` is that of the program now running; ``program_changed`` is
    whether an adopted job's differed from this task's (None: not compared).

    Identity: the name Flink reports for the new job must be ``job_name``. If the program names itself
    (``env.execute("…")``, a ``pipeline.name`` it sets), the new job is cancelled and
    :class:`~airflow_rtml.exceptions.FlinkJobNameMismatch` raised: a retry fails the same way and never leaves
    a second copy running.

    Templated fields: ``job_name``, ``jar``, ``python``, ``sql``, ``sql_jars``, ``args``, ``savepoint_path``,
    ``flink_conf``. A ``sql`` string ending in ``.sql`` is read as a template file (``template_ext``).

    :param job_name: the job's identity, used for adoption; it is passed as ``pipeline.name`` (the program
        must not override it: a new job that reports another name is cancelled and ``FlinkJobNameMismatch``
        raised).
    :param jar: path of a job jar on the Airflow worker (uploaded to the JobManager).
    :param entry_class: main class of the jar (optional if the jar's manifest names it).
    :param python: path of a PyFlink script *as the JobManager sees it* (run through Flink's PythonDriver).
    :param python_driver_jar: Flink's ``opt/flink-python-<version>.jar`` (default: ``$RTML_FLINK_PYTHON_JAR``,
        set by the local stack).
    :param sql: SQL statements (a script, a list, or a ``.sql`` file path, templated) run through the Flink SQL
        Gateway in one session; they must submit exactly one job (one ``INSERT`` or one
        ``EXECUTE STATEMENT SET BEGIN … END``). ``CREATE TEMPORARY TABLE`` statements before it are fine.
    :param sql_jars: jars the SQL needs (connectors, UDFs), added to the session with ``ADD JAR`` (paths or URIs
        as the SQL Gateway sees them); e.g. ``[os.environ["RTML_FLINK_KAFKA_CONNECTOR_JAR"]]`` on the local stack.
    :param sql_gateway_conn_id: a ``flink_sql_gateway`` connection (for ``sql=``).
    :param args: program arguments (jar / python).
    :param parallelism: job parallelism (default: the cluster's).
    :param savepoint_path: start from this savepoint (templated; batch → stream hand-over).
    :param allow_non_restored_state: allow savepoint state that maps to no operator (an explicit choice, also
        for upgrades: without it a plan change that drops stateful operators fails the upgrade and rolls back).
    :param flink_conf: extra Flink configuration for this job. The record of the program is added to its
        ``pipeline.global-job-parameters`` (other parameters given there are kept).
    :param if_running: what to do when a job named ``job_name`` is already active: ``"adopt"`` (return it),
        ``"upgrade"`` (stop it with a savepoint, start the new artifact from that savepoint; if that fails, put
        the old program back from the same savepoint and raise ``FlinkUpgradeFailed``), ``"fail"``.
        An upgrade waits on the worker (it must be able to roll back), whatever ``deferrable`` says.
    :param if_changed: with ``if_running="adopt"``, what to do when the running job's recorded fingerprint
        (:attr:`JobArtifact.fingerprint`) differs from this task's program: ``"fail"`` (default: raise
        ``FlinkJobProgramChanged``, nothing is stopped or started) or ``"warn"`` (adopt it anyway, with a warning;
        it keeps running the old program). A running job without a fingerprint (started outside airflow-rtml) is
        adopted with a warning.
    :param if_unchanged: with ``if_running="upgrade"``, what to do when the running job already runs this
        program (same fingerprint): ``"adopt"`` (default: a no-op, no savepoint and no restart; the result says
        ``adopted=True``, so a retried or re-run upgrade task does not restart a job it already upgraded) or
        ``"restart"`` (stop with a savepoint and start the same program from it, e.g. for a ``python=`` script
        changed behind the same path, whose content is not part of the fingerprint: round 1's behaviour).
    :param upgrade_rollback: with ``if_running="upgrade"``, require a way back: a running job that carries no
        record of its program (started outside airflow-rtml, or its program replaced the global job
        parameters) is then not stopped at all, and ``FlinkUpgradeFailed`` says why. ``False`` upgrades such a
        job anyway; a failed restore then leaves it stopped, and the error names the savepoint to start from.
    :param verify_timeout: after an upgrade, how long to wait for the new job's watermark to get back to the
        value it had before the stop (the result reports ``watermark_resumed``; a slow watermark is not an error).
    :param savepoint_dir: target directory of the upgrade savepoint (default: the cluster's).
    :param wait_for: ``"running"`` (streaming: RUNNING with every task running, or already FINISHED) or
        ``"finished"`` (bounded jobs). A job that FAILS or is CANCELED first raises ``FlinkJobFailed``.
    :param flink_conn_id: a ``flink_rest`` connection (the JobManager's REST API).
    :param deferrable: wait for ``wait_for`` in the triggerer instead of a worker slot (default: ``[operators]
        default_deferrable``); it first looks on the worker for up to 10 s, and defers only if the job is not
        there yet.
    :param poll_interval: seconds between state polls, on the worker and in the triggerer.
    :param wait_timeout: how long to wait for ``wait_for`` (an absolute deadline, kept across triggerer
        restarts), then ``FlinkWaitTimeout``; None: no limit. The submit itself is not undone at the timeout.
    """

    template_fields: Sequence[str] = ("job_name", "jar", "python", "sql", "sql_jars", "args", "savepoint_path", "flink_conf")
    template_ext: Sequence[str] = (".sql",)
    operator_extra_links = (FlinkJobLink(),)

    def __init__(
        self,
        *,
        job_name: str,
        jar: str | None = None,
        entry_class: str | None = None,
        python: str | None = None,
        sql: str | list[str] | None = None,
        sql_jars: list[str] | None = None,
        sql_gateway_conn_id: str = FlinkSqlGatewayHook.default_conn_name,
        python_driver_jar: str | None = None,
        args: list[str] | None = None,
        parallelism: int | None = None,
        savepoint_path: str | None = None,
        allow_non_restored_state: bool = False,
        flink_conf: dict[str, str] | None = None,
        if_running: Literal["adopt", "upgrade", "fail"] = "adopt",
        if_changed: Literal["fail", "warn"] = "fail",
        if_unchanged: Literal["adopt", "restart"] = "adopt",
        upgrade_rollback: bool = True,
        verify_timeout: timedelta = timedelta(minutes=1),
        savepoint_dir: str | None = None,
        wait_for: Literal["running", "finished"] = "running",
        flink_conn_id: str = FlinkRestHook.default_conn_name,
        deferrable: bool | None = None,
        poll_interval: float = 2.0,
        wait_timeout: timedelta | None = timedelta(minutes=10),
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if sum(x is not None for x in (jar, python, sql)) != 1:
            raise FlinkConfigurationError(
                f"{self.task_id}: give exactly one of jar=, python= or sql= "
                f"(got jar={jar!r}, python={python!r}, sql={'...' if sql else sql!r})."
            )
        if if_running not in ("adopt", "upgrade", "fail"):
            raise FlinkConfigurationError(f"{self.task_id}: if_running must be adopt, upgrade or fail.")
        if if_changed not in ("fail", "warn"):
            raise FlinkConfigurationError(f"{self.task_id}: if_changed must be 'fail' or 'warn'.")
        if if_unchanged not in ("adopt", "restart"):
            raise FlinkConfigurationError(f"{self.task_id}: if_unchanged must be 'adopt' or 'restart'.")
        if wait_for not in ("running", "finished"):
            raise FlinkConfigurationError(f"{self.task_id}: wait_for must be 'running' or 'finished'.")
        self.job_name = job_name
        self.jar = jar
        self.entry_class = entry_class
        self.python = python
        self.sql = sql
        self.sql_jars = list(sql_jars or [])
        self.sql_gateway_conn_id = sql_gateway_conn_id
        self.python_driver_jar = python_driver_jar
        self.args = args or []
        self.parallelism = parallelism
        self.savepoint_path = savepoint_path
        self.allow_non_restored_state = allow_non_restored_state
        self.flink_conf = flink_conf or {}
        self.if_running = if_running
        self.if_changed = if_changed
        self.if_unchanged = if_unchanged
        self.upgrade_rollback = upgrade_rollback
        self.verify_timeout = verify_timeout
        self.savepoint_dir = savepoint_dir
        self.wait_for = wait_for
        self.flink_conn_id = flink_conn_id
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout

    def execute(self, context: Context) -> dict:
        hook = FlinkRestHook(self.flink_conn_id)
        targets = ["RUNNING", "FINISHED"] if self.wait_for == "running" else ["FINISHED"]
        active = hook.find_active_job(self.job_name)
        if active is not None:
            if self.if_running == "fail":
                raise FlinkJobAlreadyRunning(
                    f"A job named {self.job_name!r} is already {active.state.value} ({active.job_id}) and "
                    "if_running='fail': nothing was submitted. To fix this, stop it first or use "
                    "if_running='adopt'/'upgrade'.",
                    job_id=active.job_id, state=active.state.value, job_name=self.job_name,
                )
            mine = self._artifact(None).fingerprint
            running = self._running_fingerprint(hook, active.job_id)
            if self.if_running == "upgrade" and (running != mine or self.if_unchanged == "restart"):
                result = self._upgrade(context, hook, active.job_id, targets)
                return dict(result, fingerprint=mine, program_changed=None if running is None else running != mine)
            if self.if_running == "upgrade":
                self.log.info("The running job %s (%s) already runs this program (fingerprint %s): adopting it, "
                              "no savepoint and restart", self.job_name, active.job_id, mine[:12])
            elif running is None:
                self.log.warning(
                    "Adopting running job %s (%s), whose program cannot be compared with this task's: it carries no "
                    "%s (started outside airflow-rtml, or its program replaced the global job parameters)",
                    self.job_name, active.job_id, FINGERPRINT_PARAM)
            elif running != mine:
                self._program_changed(active, running, mine)
            else:
                self.log.info("Adopting running job %s (%s), which runs this task's program (fingerprint %s), "
                              "instead of submitting a duplicate", self.job_name, active.job_id, mine[:12])
            context["ti"].xcom_push(key=XCOM_JOB_ID, value=active.job_id)
            result = self._result(active.job_id, adopted=True, savepoint=None, fingerprint=running,
                                  program_changed=None if running is None else running != mine)
            return self._wait(hook, active.job_id, targets, result)

        savepoint = self.savepoint_path or None
        job_id = self._submit_checked(hook, savepoint)
        self.log.info("Submitted %s as job %s (from savepoint: %s): %s", self.job_name, job_id, savepoint,
                      hook.job_url(job_id))
        context["ti"].xcom_push(key=XCOM_JOB_ID, value=job_id)
        return self._wait(hook, job_id, targets, self._result(job_id, adopted=False, savepoint=savepoint,
                                                              fingerprint=self._artifact(None).fingerprint))

    def _running_fingerprint(self, hook: FlinkRestHook, job_id: str) -> str | None:
        """The fingerprint recorded with a running job (:data:`FINGERPRINT_PARAM`, else computed from its program
        record); None when it carries neither."""
        params = hook.get_job_user_config(job_id)
        if params.get(FINGERPRINT_PARAM):
            return str(params[FINGERPRINT_PARAM])
        record = self._recorded_artifact(hook, job_id)
        return record.fingerprint if record is not None else None

    def _program_changed(self, active, running: str, mine: str) -> None:
        """``if_changed``: fail (default) or warn when the job to adopt runs another program than this task's."""
        what = (f"The running job {self.job_name!r} ({active.job_id}) runs another program than this task's "
                f"(fingerprint {running[:12]}, this task's {mine[:12]}: the rendered SQL, jar, arguments, "
                "parallelism or Flink configuration changed)")
        if self.if_changed == "warn":
            self.log.warning("%s; adopting it anyway (if_changed='warn'): it keeps running the old program.", what)
            return
        raise FlinkJobProgramChanged(
            f"{what}. Nothing was stopped or started. To fix this, use if_running='upgrade' to replace it with this "
            "program (stop with savepoint, restart from it), or if_changed='warn' to adopt it as it is.",
            job_id=active.job_id, state=active.state.value, job_name=self.job_name, running_fingerprint=running,
            fingerprint=mine,
        )

    def _result(self, job_id: str, *, adopted: bool, savepoint: str | None, **extra: Any) -> dict:
        result = {"job_id": job_id, "job_name": self.job_name, "adopted": adopted, "savepoint_path": savepoint,
                  "restored_from_savepoint": None, "watermark_before_ms": None, "watermark_after_ms": None,
                  "watermark_resumed": None, "fingerprint": None, "program_changed": None}
        result.update(extra)
        return result

    # ------------------------------------------------------------------ identity (issue 10)
    def _submit_checked(self, hook: FlinkRestHook, savepoint: str | None, artifact: JobArtifact | None = None) -> str:
        """Submit (this operator's artifact, or ``artifact``) and check the name Flink reports for the new job;
        on a mismatch cancel it and raise :class:`FlinkJobNameMismatch`."""
        job_id = self._submit(hook, savepoint, artifact)
        reported = self._reported_name(hook, job_id)
        if reported == self.job_name:
            return job_id
        self.log.error("Flink job %s reports the name %r, not %r: cancelling it", job_id, reported, self.job_name)
        state = _cancel_and_wait(hook, job_id, self.log)
        raise FlinkJobNameMismatch(
            f"The job submitted as {self.job_name!r} ({job_id}) reports the name {reported!r}: its program names "
            f"itself (env.execute({reported!r}), or it sets pipeline.name), which wins over job_name=. Under "
            f"another name the job could not be found (waits, stops) nor adopted by a retry, so it was cancelled "
            f"(now {state.value if state else 'unknown'}). To fix this, let job_name= name the job (call "
            f"env.execute() without a name and do not set pipeline.name in the program), or pass "
            f"job_name={reported!r}, the job's own name.",
            job_id=job_id, expected=self.job_name, reported=reported,
        )

    @staticmethod
    def _reported_name(hook: FlinkRestHook, job_id: str, timeout: float = 10.0) -> str:
        """The name Flink reports for a job just submitted (it may take a moment to be listed)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return hook.get_job(job_id).name
            except FlinkJobNotFound:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.3)

    # ------------------------------------------------------------------ artifacts and submission
    def _artifact(self, hook: FlinkRestHook | None) -> JobArtifact:
        """The record of this operator's program (uploads a jar= to the JobManager: the record names its id;
        without ``hook`` nothing is uploaded and ``jar_id`` is None, enough for the fingerprint)."""
        common = {"parallelism": self.parallelism, "flink_conf": dict(self.flink_conf)}
        if self.sql is not None:
            statements = split_statements(self.sql) if isinstance(self.sql, str) else list(self.sql)
            return JobArtifact("sql", statements=statements, sql_jars=list(self.sql_jars), **common)
        if self.jar:
            jar_id = hook.upload_jar(self.jar) if hook is not None else None
            return JobArtifact("jar", jar_id=jar_id, jar_name=Path(self.jar).name, jar_sha256=_sha256(self.jar),
                               jar_path=str(self.jar), entry_class=self.entry_class, args=list(self.args), **common)
        return JobArtifact("python", python=self.python, args=list(self.args), **common)

    def _encoded_record(self, artifact: JobArtifact) -> str | None:
        record = artifact.encode()
        if len(record) > MAX_ARTIFACT_PARAM_BYTES:
            self.log.warning(
                "The record of %s's program is %d bytes encoded (> %d): not attached, so an upgrade of this job "
                "cannot roll back to it.", self.job_name, len(record), MAX_ARTIFACT_PARAM_BYTES)
            return None
        return record

    def _submit(self, hook: FlinkRestHook, savepoint: str | None, artifact: JobArtifact | None = None,
                allow_non_restored_state: bool | None = None) -> str:
        """Start ``artifact`` (default: this operator's) as ``job_name`` from ``savepoint``; return the job id.

        The job carries the artifact's record (:data:`ARTIFACT_PARAM`), so a later upgrade can put it back.
        """
        artifact = artifact or self._artifact(hook)
        allow = self.allow_non_restored_state if allow_non_restored_state is None else allow_non_restored_state
        conf = {**_with_fingerprint(_with_record(artifact.flink_conf, self._encoded_record(artifact)),
                                    artifact.fingerprint), "pipeline.name": self.job_name}
        if artifact.kind == "sql":
            return self._submit_sql(artifact, conf, savepoint, allow)
        run_kwargs: dict[str, Any] = {"parallelism": artifact.parallelism, "savepoint_path": savepoint,
                                      "allow_non_restored_state": allow, "flink_configuration": conf}
        if artifact.kind == "jar":
            return hook.run_jar(self._jar_id_of(hook, artifact), entry_class=artifact.entry_class,
                                program_args=list(artifact.args), **run_kwargs)
        driver = self.python_driver_jar or os.environ.get(PYTHON_DRIVER_JAR_ENV)
        if not driver:
            raise FlinkConfigurationError(
                f"{self.task_id}: python= needs Flink's PythonDriver jar. To fix this, pass "
                f"python_driver_jar= (the distribution's opt/flink-python-<version>.jar) or set ${PYTHON_DRIVER_JAR_ENV}."
            )
        return hook.run_python(artifact.python, driver_jar=driver, args=list(artifact.args), **run_kwargs)

    @staticmethod
    def _jar_id_of(hook: FlinkRestHook, artifact: JobArtifact) -> str:
        """The uploaded jar of a record: still on the JobManager, or re-uploaded from the worker path when the
        file there is byte-for-byte the recorded one (a jar replaced at the same path is not the old program)."""
        if artifact.jar_id in {f.get("id") for f in hook.list_jars()}:
            return artifact.jar_id
        path = artifact.jar_path
        if path and Path(path).is_file() and _sha256(path) == artifact.jar_sha256:
            return hook.upload_jar(path)
        raise FlinkJarUploadFailed(
            f"The jar {artifact.jar_name} (id {artifact.jar_id}, sha256 {artifact.jar_sha256}) is no longer on the "
            f"JobManager and {path} is not that file any more. To fix this, restore that jar and submit it "
            "with savepoint_path= (or configure web.upload.dir on persistent storage).")

    def _submit_sql(self, artifact: JobArtifact, conf: dict[str, str], savepoint: str | None, allow: bool) -> str:
        statements = artifact.statements
        jobs = [s for s in statements if _SUBMITS_JOB.match(strip_comments(s))]
        if len(jobs) != 1:
            raise FlinkConfigurationError(
                f"{self.task_id}: sql= must submit exactly one Flink job, found {len(jobs)} INSERT statement(s). "
                "To fix this, wrap several INSERTs in EXECUTE STATEMENT SET BEGIN ... END; (one job), or use one "
                "task per job (each job needs its own job_name for adoption)."
            )
        props = dict(conf)
        if artifact.parallelism:
            props["parallelism.default"] = str(artifact.parallelism)
        if savepoint:
            props["execution.state-recovery.path"] = savepoint
            if allow:
                props["execution.state-recovery.ignore-unclaimed-state"] = "true"
        add_jars = [f"ADD JAR '{jar}'" for jar in artifact.sql_jars]
        try:
            results = FlinkSqlGatewayHook(self.sql_gateway_conn_id).run_statements(
                add_jars + statements, properties=props, session_name=f"airflow-rtml {self.job_name}"
            )
        except FlinkSqlError as exc:
            hint = missing_connector_hint(exc, statements, artifact.sql_jars)
            if hint is None:
                raise
            raise FlinkSqlError(f"{exc}\n{hint}", statement=exc.statement, cause=exc.cause) from exc
        job_ids = [r.job_id for r in results if r.job_id]
        if len(job_ids) != 1:
            raise FlinkSqlError(
                f"{self.task_id}: the SQL ran but submitted {len(job_ids)} jobs ({job_ids}); expected one.",
                statement=jobs[0],
            )
        return job_ids[0]

    # ------------------------------------------------------------------ upgrade (issue 11)
    def _recorded_artifact(self, hook: FlinkRestHook, job_id: str) -> JobArtifact | None:
        text = hook.get_job_user_config(job_id).get(ARTIFACT_PARAM)
        if not text:
            return None
        try:
            return JobArtifact.decode(text)
        except ValueError as exc:
            self.log.warning("Job %s carries a %s that cannot be read: %s", job_id, ARTIFACT_PARAM, exc)
            return None

    def _wait_sync(self, hook: FlinkRestHook, job_id: str, targets: list[str], timeout: float | None = None) -> str:
        """Block until ``job_id`` reaches a target state; raise like :meth:`_wait` otherwise; return the state."""
        limit = self.wait_timeout.total_seconds() if self.wait_timeout else None
        if timeout is not None:
            limit = timeout if limit is None else min(limit, timeout)
        deadline = time.time() + limit if limit is not None else None
        trigger = FlinkJobStateTrigger(job_id, targets, self.flink_conn_id, min(self.poll_interval, 1.0), deadline)
        return raise_for_event(trigger.run_blocking(hook))["state"]

    def _check_restored(self, hook: FlinkRestHook, job_id: str, savepoint: str) -> None:
        info = hook.get_checkpoints(job_id)
        if not (info.restored_is_savepoint and info.restored_from == savepoint):
            raise _UpgradeNotRestored(
                f"Flink job {job_id} runs but reports no restore from the savepoint {savepoint} (restored from: "
                f"{info.restored_from or 'nothing'}).", job_id=job_id, state="RUNNING",
                root_cause=f"restored from {info.restored_from or 'nothing'}, expected savepoint {savepoint}")

    def _new_job_named(self, hook: FlinkRestHook, known: set[str]) -> str | None:
        """The newest job of ``job_name`` that was not listed before the submit (its id, when the submit
        raised before returning one: e.g. the SQL Gateway's "Could not start the JobMaster")."""
        fresh = sorted((j for j in hook.find_jobs_by_name(self.job_name) if j.job_id not in known),
                       key=lambda j: j.start_time_ms)
        return fresh[-1].job_id if fresh else None

    def _failure_cause(self, hook: FlinkRestHook, job_id: str | None, exc: Exception) -> str:
        """Flink's real reason for a failed start: the job's ``/jobs/:id/exceptions`` when there is a job,
        else what the failing call said (the SQL Gateway's cause, the jar run's answer)."""
        if job_id:
            try:
                root = hook.get_root_cause(job_id)
                if root:
                    return _distinct_lines(short_cause(root))
            except (FlinkApiError, FlinkConnectionError, FlinkJobNotFound) as lookup:
                self.log.warning("Could not read the exceptions of job %s: %s", job_id, lookup)
        return str(getattr(exc, "root_cause", None) or getattr(exc, "cause", None) or exc)

    def _upgrade(self, context: Context, hook: FlinkRestHook, old_id: str, targets: list[str]) -> dict:
        """Stop ``old_id`` with a savepoint, start this artifact from it, verify; roll back on failure."""
        old_artifact = self._recorded_artifact(hook, old_id)
        if old_artifact is None and self.upgrade_rollback:
            raise FlinkUpgradeFailed(
                f"Not upgrading {self.job_name!r}: the running job {old_id} carries no record of its program (the "
                f"global job parameter {ARTIFACT_PARAM!r}): it was started outside airflow-rtml, or its program "
                "replaced the global job parameters (env.getConfig().setGlobalJobParameters(...)). Without it the "
                "old program could not be put back if the new one fails to restore, so nothing was stopped; the job "
                "still runs. To fix this, merge into the global job parameters in the program instead of replacing "
                "them (and resubmit it with this operator once), or pass upgrade_rollback=False to upgrade without "
                "a way back.",
                job_name=self.job_name, savepoint_path=None, cause="no program record on the running job",
            )
        watermark_before = stream_watermark(hook, old_id)
        savepoint = stop_with_savepoint(
            hook, old_id, trigger_id_for(context, old_id, "upgrade"), target_directory=self.savepoint_dir,
            drain=False, poll_interval=self.poll_interval, log=self.log,
        )
        self.log.info("Upgrading %s: stopped %s with savepoint %s (watermark then: %s)", self.job_name, old_id,
                      savepoint, watermark_before)
        known = {j.job_id for j in hook.find_jobs_by_name(self.job_name)}
        new_id: str | None = None
        try:
            new_id = self._submit_checked(hook, savepoint)
            context["ti"].xcom_push(key=XCOM_JOB_ID, value=new_id)
            state = self._wait_sync(hook, new_id, targets)
            self._check_restored(hook, new_id, savepoint)
        except (FlinkSqlError, FlinkJarUploadFailed, FlinkJobFailed, FlinkJobNameMismatch, FlinkWaitTimeout,
                FlinkJobNotFound) as exc:
            raise self._roll_back(context, hook, old_artifact, savepoint, new_id, known, exc) from exc
        self.log.info("Upgraded %s: job %s restored from %s: %s", self.job_name, new_id, savepoint,
                      hook.job_url(new_id))
        watermark_after, resumed = self._watermark_resumed(hook, new_id, watermark_before, state)
        return self._result(new_id, adopted=False, savepoint=savepoint, state=state, restored_from_savepoint=True,
                            watermark_before_ms=watermark_before, watermark_after_ms=watermark_after,
                            watermark_resumed=resumed)

    def _watermark_resumed(self, hook: FlinkRestHook, job_id: str, before: int | None,
                           state: str) -> tuple[int | None, bool | None]:
        """Wait (up to ``verify_timeout``) for the new job's watermark to reach ``before``."""
        if before is None:
            self.log.info("%s reported no watermark before the stop: nothing to compare after the upgrade",
                          self.job_name)
            return stream_watermark(hook, job_id), None
        deadline = time.monotonic() + self.verify_timeout.total_seconds()
        after = stream_watermark(hook, job_id)
        while state == "RUNNING" and (after is None or after < before) and time.monotonic() < deadline:
            time.sleep(min(self.poll_interval, 1.0))
            after = stream_watermark(hook, job_id)
        resumed = after is not None and after >= before
        if not resumed:
            self.log.warning(
                "The upgraded %s (%s) restored from its savepoint, but its watermark %s has not reached %s (the value "
                "before the stop) within %s: an idle or slow source?", self.job_name, job_id, after, before,
                self.verify_timeout)
        return after, resumed

    def _roll_back(self, context: Context, hook: FlinkRestHook, old: JobArtifact | None, savepoint: str,
                   failed_id: str | None, known: set[str], exc: Exception) -> FlinkUpgradeFailed:
        """Cancel what the failed upgrade left, put the old program back from ``savepoint``; return the error."""
        failed_id = failed_id or getattr(exc, "job_id", None) or self._new_job_named(hook, known)
        cause = self._failure_cause(hook, failed_id, exc)
        if failed_id:
            try:
                if not hook.get_job_state(failed_id).is_terminal:
                    _cancel_and_wait(hook, failed_id, self.log)
            except FlinkJobNotFound:
                pass
        self.log.error("Upgrade of %s failed (job %s): %s", self.job_name, failed_id, cause)
        restored_id, restore_error = None, None
        if old is not None:
            try:
                restored_id = self._submit_checked(hook, savepoint, old)
                self._wait_sync(hook, restored_id, ["RUNNING", "FINISHED"], timeout=300)
                self._check_restored(hook, restored_id, savepoint)
                context["ti"].xcom_push(key=XCOM_JOB_ID, value=restored_id)
                self.log.info("Put the old program of %s back from %s as job %s", self.job_name, savepoint,
                              restored_id)
            except (FlinkSqlError, FlinkJarUploadFailed, FlinkJobFailed, FlinkJobNameMismatch, FlinkWaitTimeout,
                    FlinkJobNotFound, FlinkConfigurationError, FlinkApiError) as again:
                restore_error = f"{type(again).__name__}: {again}"
                restored_id = None
        if restored_id:
            outcome = (f"The old program was put back from that savepoint as job {restored_id}: the stream runs "
                       "as before the upgrade.")
        elif old is None:
            outcome = ("Nothing was put back (upgrade_rollback=False and the old job carried no record of its "
                       "program): the stream is DOWN.")
        else:
            outcome = f"Putting the old program back failed too ({restore_error}): the stream is DOWN."
        hint = ("To fix this, make the new program's state compatible (keep operator uids; for SQL keep the plan "
                "or use a compiled plan), or accept dropping the unmapped state with allow_non_restored_state=True."
                if "allowNonRestoredState" in cause or "Cannot map" in cause else
                "To fix this, see Flink's cause above.")
        if not restored_id:
            hint += f" To start by hand, submit a program with savepoint_path={savepoint!r}."
        return FlinkUpgradeFailed(
            f"Upgrade of {self.job_name!r} failed: the new program (job {failed_id or 'not created'}) did not start "
            f"from the savepoint {savepoint}. Flink said:\n{cause}\n{outcome} {hint}",
            job_name=self.job_name, savepoint_path=savepoint, cause=cause, failed_job_id=failed_id,
            restored_job_id=restored_id,
        )


_MISSING_FACTORY = re.compile(r"Could not find any factory for identifier '([^']+)'")
_CONNECTOR_OPTION = re.compile(r"'connector'\s*=\s*'([^']+)'", re.IGNORECASE)
#: Connectors in Flink's own distribution (lib/): they need no jar.
_BUILTIN_CONNECTORS = frozenset({"blackhole", "datagen", "print", "filesystem"})
#: Connector identifiers whose jar the local stack downloads, and the variable it exports with the jar's path.
_LOCAL_STACK_CONNECTORS = {"kafka": "RTML_FLINK_KAFKA_CONNECTOR_JAR", "upsert-kafka": "RTML_FLINK_KAFKA_CONNECTOR_JAR"}


def missing_connector_hint(exc: FlinkSqlError, statements: Sequence[str], sql_jars: Sequence[str]) -> str | None:
    """What to do when Flink may have no factory for a table's ``'connector'`` (its jar not on the session's
    classpath): for Flink's "Could not find any factory for identifier 'x'", or, when the gateway's cause does not
    say, for connectors the statements use that are not built into Flink and that no ``sql_jars`` entry names.
    None for other SQL errors."""
    match = _MISSING_FACTORY.search(f"{exc.cause or ''}\n{exc}")
    if match is not None:
        missing = [match.group(1)]
        lead = f"Flink has no connector {missing[0]!r} on this session's classpath"
    else:
        used = dict.fromkeys(m.group(1).lower() for st in statements for m in _CONNECTOR_OPTION.finditer(st))
        missing = [c for c in used if c not in _BUILTIN_CONNECTORS
                   and not any(c.rsplit("-", 1)[-1] in str(jar).lower() for jar in sql_jars)]
        if not missing:
            return None
        lead = (f"The tables use the connector(s) {', '.join(map(repr, missing))}, which Flink does not ship in "
                "its core, and no jar added with sql_jars= names them; if Flink's cause is \"Could not find any "
                "factory for identifier ...\", that is why")
    hint = (f"{lead} (jars added: {list(sql_jars) or 'none'}). To fix this, pass the connector's jar with "
            "sql_jars=[...] (a path or URI as the SQL Gateway sees it), or install it in the cluster's lib/.")
    envs = sorted({_LOCAL_STACK_CONNECTORS[c] for c in missing if c in _LOCAL_STACK_CONNECTORS})
    for env in envs:
        hint += f" On the local stack (rtml local up) the jar's path is in ${env}: sql_jars=[os.environ[{env!r}]]."
    return hint


_SUBMITS_JOB = re.compile(r"^\s*(INSERT\s|EXECUTE\s+STATEMENT\s+SET\b|EXECUTE\s+INSERT\s)", re.IGNORECASE)


def stop_with_savepoint(
    hook: FlinkRestHook, job_id: str, trigger_id: str, *, target_directory: str | None, drain: bool,
    poll_interval: float, log, timeout: float = 600,
) -> str:
    """Stop ``job_id`` with a savepoint and wait for it (blocking); return the savepoint path.

    Flink answers COMPLETED *with* ``operation.failure-cause`` when the job is not running: that (and any
    other failure cause) raises :class:`FlinkSavepointFailed`; the same trigger id makes a retry the same
    Flink operation.
    """
    hook.stop_with_savepoint(job_id, target_directory=target_directory, drain=drain, trigger_id=trigger_id)
    trigger = FlinkSavepointTrigger(job_id, trigger_id, hook.flink_conn_id, poll_interval, time.time() + timeout,
                                    stop=True)
    event = raise_for_event(trigger.run_blocking(hook))
    log.info("Savepoint of %s written to %s", job_id, event["location"])
    return event["location"]


class FlinkStopJobOperator(BaseOperator):
    """Stop a Flink job with a savepoint (default) or cancel it; return the savepoint path (or None).

    Retry-safe: the savepoint request carries a trigger id derived from the task instance, so a retried (or
    resumed) task polls the same Flink operation instead of requesting a second savepoint — by ``job_name`` too,
    when the earlier try died after the job had stopped (no job of the name is active then: the retry finds the
    finished job whose operation that is). Flink keeps an operation's result for ``rest.async.store-duration``
    (default 5 minutes; the local stack sets 2 h): set it longer than a retry takes to come (the retry delay, and
    after a dead worker Airflow's ``task_instance_heartbeat_timeout``), or a late retry finds no operation. A job that is not
    running raises :class:`FlinkSavepointFailed` with Flink's failure cause (Flink answers COMPLETED *with* a
    failure cause in that case); a savepoint directory Flink cannot write does too.

    Templated fields: ``job_id``, ``job_name``, ``savepoint_dir``.

    :param job_id: the job to stop, by id (give exactly one of ``job_id``, ``job_name``).
    :param job_name: the active job of this name; none active raises ``FlinkJobNotFound``.
    :param mode: ``"savepoint"`` (stop-with-savepoint) or ``"cancel"`` (no savepoint; returns None).
    :param drain: with ``mode="savepoint"``, emit MAX_WATERMARK first (fires all event-time timers/windows).
    :param savepoint_dir: target directory (default: the cluster's ``execution.checkpointing.savepoint-dir``).
    :param flink_conn_id: a ``flink_rest`` connection (the JobManager's REST API).
    :param deferrable: wait for the savepoint (or cancellation) in the triggerer instead of a worker slot
        (default: ``[operators] default_deferrable``); it first waits on the worker for up to 10 s.
    :param poll_interval: seconds between polls of the savepoint operation (or of the job's state after a cancel).
    :param wait_timeout: how long the savepoint (or cancellation) may take (an absolute deadline, kept across
        triggerer restarts), then ``FlinkWaitTimeout``; the stop request already sent is not withdrawn.
    """

    template_fields: Sequence[str] = ("job_id", "job_name", "savepoint_dir")
    operator_extra_links = (FlinkJobLink(),)

    def __init__(
        self,
        *,
        job_id: str | None = None,
        job_name: str | None = None,
        mode: Literal["savepoint", "cancel"] = "savepoint",
        drain: bool = False,
        savepoint_dir: str | None = None,
        flink_conn_id: str = FlinkRestHook.default_conn_name,
        deferrable: bool | None = None,
        poll_interval: float = 1.0,
        wait_timeout: timedelta = timedelta(minutes=10),
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if (job_id is None) == (job_name is None):
            raise FlinkConfigurationError(f"{self.task_id}: give exactly one of job_id= or job_name=.")
        if mode not in ("savepoint", "cancel"):
            raise FlinkConfigurationError(f"{self.task_id}: mode must be 'savepoint' or 'cancel'.")
        self.job_id = job_id
        self.job_name = job_name
        self.mode = mode
        self.drain = drain
        self.savepoint_dir = savepoint_dir
        self.flink_conn_id = flink_conn_id
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout

    def execute(self, context: Context) -> str | None:
        hook = FlinkRestHook(self.flink_conn_id)
        job_id = self.job_id
        if job_id is None:
            active = hook.find_active_job(self.job_name)
            job_id = active.job_id if active is not None else \
                (self._stopped_by_earlier_try(hook, context) if self.mode == "savepoint" else None)
            if job_id is None:
                raise FlinkJobNotFound(
                    f"No active Flink job is named {self.job_name!r}. To fix this, check the name (it is the "
                    "job's pipeline.name) or whether the job already ended.", job_name=self.job_name,
                )
        context["ti"].xcom_push(key=XCOM_JOB_ID, value=job_id)
        deadline = time.time() + self.wait_timeout.total_seconds()
        if self.mode == "cancel":
            hook.cancel_job(job_id)
            trigger: FlinkJobStateTrigger | FlinkSavepointTrigger = FlinkJobStateTrigger(
                job_id, ["CANCELED"], self.flink_conn_id, self.poll_interval, deadline)
        else:
            trigger_id = trigger_id_for(context, job_id, "stop")
            if self._operation_exists(hook, job_id, trigger_id):
                self.log.info("An earlier try of this task already asked Flink to stop job %s (savepoint operation "
                              "%s): polling that operation, no second savepoint", job_id, trigger_id)
            else:
                hook.stop_with_savepoint(job_id, target_directory=self.savepoint_dir, drain=self.drain,
                                         trigger_id=trigger_id)
            trigger = FlinkSavepointTrigger(job_id, trigger_id, self.flink_conn_id, self.poll_interval, deadline,
                                            stop=True)
        if self.deferrable:
            # Savepoints and cancellations usually complete within seconds: wait that long here first.
            hook.base_url  # noqa: B018 - resolve the connection before the event loop starts
            quick = type(trigger)(**{**trigger.serialize()[1], "deadline": min(deadline, time.time() + DEFER_AFTER_S)})
            event = quick.run_blocking(hook)
            if event["status"] != EventStatus.TIMEOUT.value or time.time() >= deadline:
                return self.execute_complete(context, event)
            self.defer(trigger=trigger, method_name="execute_complete")
        return self.execute_complete(context, trigger.run_blocking(hook))

    @staticmethod
    def _operation_exists(hook: FlinkRestHook, job_id: str, trigger_id: str) -> bool:
        """Whether Flink knows the savepoint operation ``trigger_id`` of ``job_id`` (requested by an earlier try)."""
        try:
            hook.get_savepoint_status(job_id, trigger_id)
        except FlinkJobNotFound:  # Flink answers 404 for an operation it does not know
            return False
        return True

    def _stopped_by_earlier_try(self, hook: FlinkRestHook, context: Context) -> str | None:
        """The job of ``job_name`` that an earlier try of this task instance stopped with a savepoint (the try died
        before it recorded the result, so no job of the name is active any more), newest first; else None."""
        for job in sorted(hook.find_jobs_by_name(self.job_name), key=lambda j: j.start_time_ms, reverse=True):
            if job.state is JobState.FINISHED and self._operation_exists(hook, job.job_id,
                                                                        trigger_id_for(context, job.job_id, "stop")):
                return job.job_id
        return None

    def execute_complete(self, context: Context, event: dict) -> str | None:
        """Raise the path's exception for a failed event; return the savepoint path (None after a cancel)."""
        raise_for_event(event)
        if event.get("location"):
            self.log.info("Savepoint of %s written to %s", event["job_id"], event["location"])
        return event.get("location")
