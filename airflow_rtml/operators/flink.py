"""Operators for the Flink job lifecycle on a session cluster: submit (adopt / upgrade), stop, cancel.

Retry safety: a job's ``job_name`` is its identity. Re-running :class:`FlinkSubmitJobOperator` while a
non-terminal job of that name runs adopts it (no duplicate); savepoint requests carry a trigger id derived
from the task instance, so a retried stop is the same Flink operation, not a second savepoint.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

from airflow.sdk import BaseOperator, BaseOperatorLink, Context, conf

from airflow_rtml.exceptions import (
    FlinkConfigurationError,
    FlinkJobFailed,
    FlinkJobNotFound,
    FlinkSqlError,
)
from airflow_rtml.hooks.flink import FlinkRestHook
from airflow_rtml.hooks.flink_sql import FlinkSqlGatewayHook, split_statements, strip_comments
from airflow_rtml.triggers.flink import (
    EventStatus,
    FlinkJobStateTrigger,
    FlinkSavepointTrigger,
    raise_for_event,
)

XCOM_JOB_ID = "job_id"
#: A deferrable wait first polls on the worker this long before it defers (most jobs are RUNNING by then).
DEFER_AFTER_S = 10.0
PYTHON_DRIVER_JAR_ENV = "RTML_FLINK_PYTHON_JAR"


class FlinkJobLink(BaseOperatorLink):
    """Opens the job pushed by the task (XCom ``job_id``) in the Flink web UI."""

    name = "Flink job"

    def get_link(self, operator: BaseOperator, *, ti_key) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        job_id = XCom.get_value(ti_key=ti_key, key=XCOM_JOB_ID)
        if not job_id:
            return ""
        return FlinkRestHook(getattr(operator, "flink_conn_id", FlinkRestHook.default_conn_name)).job_url(job_id)


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


class FlinkSubmitJobOperator(_FlinkJobWaitMixin, BaseOperator):
    """Submit a Flink job to a session cluster, or adopt the one already running under ``job_name``.

    Exactly one of ``jar``, ``python`` or ``sql`` gives the artifact. Returns (XCom) ``{"job_id", "job_name",
    "adopted", "savepoint_path", "state"}`` and pushes ``job_id`` separately for the extra link.

    :param job_name: the job's identity, used for adoption; it is passed as ``pipeline.name`` (a PyFlink
        script must not override it).
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
    :param allow_non_restored_state: allow savepoint state that maps to no operator.
    :param flink_conf: extra Flink configuration for this job.
    :param if_running: what to do when a job named ``job_name`` is already active: ``"adopt"`` (return it),
        ``"upgrade"`` (stop it with a savepoint, submit the new artifact from that savepoint), ``"fail"``.
    :param savepoint_dir: target directory of the upgrade savepoint (default: the cluster's).
    :param wait_for: ``"running"`` (streaming) or ``"finished"`` (bounded jobs).
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param poll_interval: seconds between state polls.
    :param wait_timeout: how long to wait for ``wait_for`` (absolute deadline, survives triggerer restarts).
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
        self.savepoint_dir = savepoint_dir
        self.wait_for = wait_for
        self.flink_conn_id = flink_conn_id
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout

    def execute(self, context: Context) -> dict:
        hook = FlinkRestHook(self.flink_conn_id)
        targets = ["RUNNING", "FINISHED"] if self.wait_for == "running" else ["FINISHED"]
        savepoint = self.savepoint_path or None
        active = hook.find_active_job(self.job_name)
        if active is not None:
            if self.if_running == "fail":
                raise FlinkJobFailed(
                    f"A job named {self.job_name!r} is already {active.state.value} ({active.job_id}) and "
                    "if_running='fail'. To fix this, stop it first or use if_running='adopt'/'upgrade'.",
                    job_id=active.job_id, state=active.state.value,
                )
            if self.if_running == "adopt":
                self.log.info("Adopting running job %s (%s) instead of submitting a duplicate",
                              self.job_name, active.job_id)
                context["ti"].xcom_push(key=XCOM_JOB_ID, value=active.job_id)
                result = {"job_id": active.job_id, "job_name": self.job_name, "adopted": True, "savepoint_path": None}
                return self._wait(hook, active.job_id, targets, result)
            savepoint = stop_with_savepoint(
                hook, active.job_id, trigger_id_for(context, active.job_id, "upgrade"),
                target_directory=self.savepoint_dir, drain=False, poll_interval=self.poll_interval,
                log=self.log,
            )
            self.log.info("Upgrading %s: stopped %s with savepoint %s", self.job_name, active.job_id, savepoint)

        job_id = self._submit(hook, savepoint)
        self.log.info("Submitted %s as job %s (from savepoint: %s): %s", self.job_name, job_id, savepoint,
                      hook.job_url(job_id))
        context["ti"].xcom_push(key=XCOM_JOB_ID, value=job_id)
        result = {"job_id": job_id, "job_name": self.job_name, "adopted": False, "savepoint_path": savepoint}
        return self._wait(hook, job_id, targets, result)

    def _submit(self, hook: FlinkRestHook, savepoint: str | None) -> str:
        run_kwargs: dict[str, Any] = {
            "parallelism": self.parallelism,
            "savepoint_path": savepoint,
            "allow_non_restored_state": self.allow_non_restored_state,
            "flink_configuration": {**self.flink_conf, "pipeline.name": self.job_name},
        }
        if self.sql is not None:
            return self._submit_sql(savepoint)
        if self.jar:
            jar_id = hook.upload_jar(self.jar)
            return hook.run_jar(jar_id, entry_class=self.entry_class, program_args=list(self.args), **run_kwargs)
        driver = self.python_driver_jar or os.environ.get(PYTHON_DRIVER_JAR_ENV)
        if not driver:
            raise FlinkConfigurationError(
                f"{self.task_id}: python= needs Flink's PythonDriver jar. To fix this, pass "
                f"python_driver_jar= (the distribution's opt/flink-python-<version>.jar) or set ${PYTHON_DRIVER_JAR_ENV}."
            )
        return hook.run_python(self.python, driver_jar=driver, args=list(self.args), **run_kwargs)


    def _submit_sql(self, savepoint: str | None) -> str:
        statements = split_statements(self.sql) if isinstance(self.sql, str) else list(self.sql)
        jobs = [s for s in statements if _SUBMITS_JOB.match(strip_comments(s))]
        if len(jobs) != 1:
            raise FlinkConfigurationError(
                f"{self.task_id}: sql= must submit exactly one Flink job, found {len(jobs)} INSERT statement(s). "
                "To fix this, wrap several INSERTs in EXECUTE STATEMENT SET BEGIN ... END; (one job), or use one "
                "task per job (each job needs its own job_name for adoption)."
            )
        props = {**self.flink_conf, "pipeline.name": self.job_name}
        if self.parallelism:
            props["parallelism.default"] = str(self.parallelism)
        if savepoint:
            props["execution.state-recovery.path"] = savepoint
            if self.allow_non_restored_state:
                props["execution.state-recovery.ignore-unclaimed-state"] = "true"
        add_jars = [f"ADD JAR '{jar}'" for jar in self.sql_jars]
        results = FlinkSqlGatewayHook(self.sql_gateway_conn_id).run_statements(
            add_jars + statements, properties=props, session_name=f"airflow-rtml {self.job_name}"
        )
        job_ids = [r.job_id for r in results if r.job_id]
        if len(job_ids) != 1:
            raise FlinkSqlError(
                f"{self.task_id}: the SQL ran but submitted {len(job_ids)} jobs ({job_ids}); expected one.",
                statement=jobs[0],
            )
        return job_ids[0]


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
    resumed) task polls the same Flink operation instead of requesting a second savepoint. A job that is not
    running raises :class:`FlinkSavepointFailed` with Flink's failure cause (Flink answers COMPLETED *with* a
    failure cause in that case); a savepoint directory Flink cannot write does too.

    :param job_id: the job id (templated); or
    :param job_name: the active job of this name.
    :param mode: ``"savepoint"`` (stop-with-savepoint) or ``"cancel"``.
    :param drain: with ``mode="savepoint"``, emit MAX_WATERMARK first (fires all event-time timers/windows).
    :param savepoint_dir: target directory (default: the cluster's ``execution.checkpointing.savepoint-dir``).
    :param deferrable: wait for the savepoint in the triggerer instead of a worker slot.
    :param wait_timeout: how long the savepoint (or cancellation) may take (absolute deadline).
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
            if active is None:
                raise FlinkJobNotFound(
                    f"No active Flink job is named {self.job_name!r}. To fix this, check the name (it is the "
                    "job's pipeline.name) or whether the job already ended.", job_name=self.job_name,
                )
            job_id = active.job_id
        context["ti"].xcom_push(key=XCOM_JOB_ID, value=job_id)
        deadline = time.time() + self.wait_timeout.total_seconds()
        if self.mode == "cancel":
            hook.cancel_job(job_id)
            trigger: FlinkJobStateTrigger | FlinkSavepointTrigger = FlinkJobStateTrigger(
                job_id, ["CANCELED"], self.flink_conn_id, self.poll_interval, deadline)
        else:
            trigger_id = trigger_id_for(context, job_id, "stop")
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

    def execute_complete(self, context: Context, event: dict) -> str | None:
        """Raise the path's exception for a failed event; return the savepoint path (None after a cancel)."""
        raise_for_event(event)
        if event.get("location"):
            self.log.info("Savepoint of %s written to %s", event["job_id"], event["location"])
        return event.get("location")
