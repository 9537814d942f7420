"""Exceptions of airflow-rtml. The sync and deferred paths of every operator raise the same classes.

Each message says what happened and what to check; the attributes carry the ids a caller needs.
"""

from __future__ import annotations


class RtmlError(Exception):
    """Base class of every exception airflow-rtml raises."""


class FlinkError(RtmlError):
    """Base class of Flink-related errors."""


class FlinkConfigurationError(FlinkError):
    """A ``flink_rest`` / ``flink_sql_gateway`` connection or an operator argument is invalid."""


class FlinkConnectionError(FlinkError):
    """The JobManager (or SQL Gateway) could not be reached, after retrying transient errors."""


#: The most of a response body an exception keeps (``FlinkApiError.body``): errors stay small in logs and XComs.
BODY_EXCERPT_CHARS = 2000


class FlinkApiError(FlinkError):
    """Flink answered a request with an error that is not retryable (4xx other than 404/429), or with a body
    that is no Flink answer at all (``unreadable``: a proxy's HTML page, a body over the size cap).

    ``body`` is a bounded excerpt (:data:`BODY_EXCERPT_CHARS`), never the whole body.
    """

    def __init__(self, message: str, status_code: int | None = None, body: str | None = None,
                 unreadable: bool = False, detail: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.body = body[:BODY_EXCERPT_CHARS] if body else body
        self.unreadable = unreadable
        #: What says why, from the whole body: Flink's error lines and every ``Caused by:`` line (bounded).
        self.detail = detail


class FlinkJobNotFound(FlinkError):
    """No job with this id (or name) exists on the cluster."""

    def __init__(self, message: str, job_id: str | None = None, job_name: str | None = None):
        super().__init__(message)
        self.job_id = job_id
        self.job_name = job_name


class FlinkJobFailed(FlinkError):
    """A job reached FAILED or CANCELED (or another state it must not reach); ``root_cause`` is Flink's text."""

    def __init__(self, message: str, job_id: str, state: str, root_cause: str | None = None):
        super().__init__(message)
        self.job_id = job_id
        self.state = state
        self.root_cause = root_cause


class FlinkSavepointFailed(FlinkError):
    """A savepoint or stop-with-savepoint request finished with a failure cause."""

    def __init__(self, message: str, job_id: str, trigger_id: str | None = None, cause: str | None = None):
        super().__init__(message)
        self.job_id = job_id
        self.trigger_id = trigger_id
        self.cause = cause


class FlinkJarUploadFailed(FlinkError):
    """A jar could not be uploaded to (or run on) the JobManager."""


class FlinkWaitTimeout(FlinkError):
    """A wait on a Flink job did not reach its goal before its absolute deadline."""


class FlinkSqlError(FlinkError):
    """A SQL statement failed in the Flink SQL Gateway (parse, validation or planning error, or a failed job
    submission); ``statement`` is the statement, ``cause`` Flink's reason."""

    def __init__(self, message: str, statement: str, cause: str | None = None):
        super().__init__(message)
        self.statement = statement
        self.cause = cause


class StreamStalled(RtmlError):
    """A running stream's event-time progress did not move for the wait's ``stall_timeout`` (an idle source,
    a stuck partition): reported instead of a silent hang."""

    def __init__(self, message: str, stream: str, progress_ms: int | None = None):
        super().__init__(message)
        self.stream = stream
        self.progress_ms = progress_ms


class StreamEnded(RtmlError):
    """A stream's input has ended (watermark ``Long.MAX_VALUE``: drained or bounded) and no further event-time
    window will close; raised instead of emitting windows without end."""

    def __init__(self, message: str, stream: str, last_event_time_ms: int | None = None):
        super().__init__(message)
        self.stream = stream
        self.last_event_time_ms = last_event_time_ms


class KafkaConfigurationError(RtmlError):
    """A ``kafka`` connection or a Kafka progress argument is invalid (e.g. an extra outside the allow-list)."""


class KafkaPublishError(RtmlError):
    """A progress signal was not acknowledged by the Kafka broker in time; it may or may not have been written."""


class FlinkJobNameMismatch(FlinkError):
    """A submitted job reports another name than ``job_name`` (the program set its own, e.g.
    ``env.execute("…")``); what was started is cancelled, so a retry never starts a second copy."""

    def __init__(self, message: str, job_id: str, expected: str, reported: str):
        super().__init__(message)
        self.job_id = job_id
        self.expected = expected
        self.reported = reported


class FlinkUpgradeFailed(FlinkError):
    """An upgrade (stop-with-savepoint, then start the new program from it) failed; ``cause`` is Flink's real
    reason (from ``/jobs/:id/exceptions``), ``savepoint_path`` the savepoint taken, ``restored_job_id`` the job
    that was put back from it (None if nothing could be restored)."""

    def __init__(self, message: str, job_name: str, savepoint_path: str | None, cause: str | None = None,
                 failed_job_id: str | None = None, restored_job_id: str | None = None):
        super().__init__(message)
        self.job_name = job_name
        self.savepoint_path = savepoint_path
        self.cause = cause
        self.failed_job_id = failed_job_id
        self.restored_job_id = restored_job_id


class FlinkCheckpointingDisabled(FlinkConfigurationError):
    """A commit-aware wait on a job that has checkpointing disabled: no checkpoint will ever commit a window."""

    def __init__(self, message: str, job_id: str | None = None):
        super().__init__(message)
        self.job_id = job_id


class KafkaProgressTopicError(KafkaConfigurationError):
    """A progress topic is set up so that producers' latest signals can vanish (compaction, short retention):
    a re-read would take the minimum over a subset of the producers."""


class OfflineError(RtmlError):
    """The offline half (Hive metastore, archive partitions, Spark) cannot do what was asked."""


class ArchiveSchemaMismatch(OfflineError):
    """The data to archive (or the table it goes to) has another schema than expected; nothing was written."""


class PartitionLocationConflict(OfflineError):
    """A partition is already registered in the metastore at another location than the one being committed."""


class PartitionNotCommitted(OfflineError):
    """A window's partition directory has no success file (Flink has not committed it): it is never registered."""


class ArchiveFileCorrupt(OfflineError):
    """A file of a partition cannot be read as Parquet; the message names the file."""


class BackfillError(OfflineError):
    """A feature backfill cannot run as asked (a bad range, nothing to replay, a replay job that failed)."""


class BackfillSourceNotSwappable(BackfillError):
    """The feature SQL has no source (or sink) DDL the backfill can swap; the message says which form is needed."""


class BackfillPartitionsMissing(BackfillError):
    """Archive partitions of the range are not committed or not registered; the message lists them. Raised before
    anything runs."""


class BackfillOverlapsLiveJob(BackfillError):
    """The live feature job is running and has already passed the range's start: its output and the backfill's
    would overlap. Refused unless explicitly allowed."""


class ChainError(RtmlError):
    """A chain definition, a clone of it, or the experiment registry cannot do what was asked. Raised before
    anything starts."""


class ChainDefinitionError(ChainError):
    """A chain definition is invalid: a duplicate node, a dataset written by two nodes, a cycle (the message
    lists it), an input no node writes and the chain does not declare as a source."""


class UnknownChainNode(ChainError):
    """A ``--set`` (or a lookup) names a node the chain does not have; the message lists the nodes it has."""


class UnknownChainParameter(ChainError):
    """A ``--set`` names a parameter the node does not have, or a value of the wrong type; the message lists the
    node's parameters."""


class ChainNotFound(ChainError):
    """No chain (base or experiment) of this name is defined or registered; the message lists the known ones."""


class DataQualityError(RtmlError):
    """A per-window data-quality check cannot run as asked."""


class DataQualityConfigError(DataQualityError):
    """A data-quality rule is misconfigured (an unknown column, a bad severity, duplicate names); the message
    says how to fix it."""


class ModelRegistryError(RtmlError):
    """A model registry file cannot be read (not JSON, not a registry); the message says how to fix it."""


# ---------------------------------------------------------------------------------------------------------------
# The error vocabulary, mapped once. A stream reader turns what went wrong into an error kind (exception ->
# kind: :func:`error_kind`); a wait that ends on it carries the kind as its event's ``reason``; the task that
# resumes turns the reason back into the same exception class (reason -> exception: :func:`exception_for`).

from enum import Enum  # noqa: E402 - the vocabulary needs it, the classes above do not


class FailureReason(str, Enum):
    """Why a wait (or a lifecycle operation) failed: the ``reason`` of a failure event (public API, stable)."""

    JOB_FAILED = "job_failed"  # FAILED / CANCELED while waiting for something else
    UNEXPECTED_STATE = "unexpected_state"  # another terminal state (e.g. FINISHED while waiting for RUNNING)
    JOB_NOT_FOUND = "job_not_found"
    API_ERROR = "api_error"  # a non-retryable REST answer (4xx), or a value that cannot be read
    SAVEPOINT_FAILED = "savepoint_failed"  # the savepoint operation completed with a failure cause
    STALLED = "stalled"  # a RUNNING stream's progress did not move for stall_timeout
    CONFIGURATION = "configuration"  # a connection or argument that cannot work (fix it, then retry)
    CHECKPOINTING_DISABLED = "checkpointing_disabled"  # commit-aware wait on a job without checkpointing


#: The error kind of a transient problem (unreachable, 5xx, 429, an unreadable proxy page): retried until the
#: wait's deadline, never a failure by itself.
TRANSIENT = "transient"


def error_kind(exc: BaseException) -> FailureReason | str:
    """The error kind of ``exc``: :data:`TRANSIENT` or the :class:`FailureReason` that ends the waits it concerns."""
    if isinstance(exc, FlinkCheckpointingDisabled):
        return FailureReason.CHECKPOINTING_DISABLED
    if isinstance(exc, (FlinkConfigurationError, KafkaConfigurationError)):
        return FailureReason.CONFIGURATION
    if isinstance(exc, FlinkJobNotFound):
        return FailureReason.JOB_NOT_FOUND
    if isinstance(exc, FlinkConnectionError):
        return TRANSIENT
    if isinstance(exc, FlinkApiError):
        status = exc.status_code
        if status in (401, 403):
            return FailureReason.CONFIGURATION  # the credentials of the connection are refused: fix them
        # 5xx, 429 and answers that are no Flink answer at all (a proxy's HTML page, a redirect) pass.
        if exc.unreadable or (status is not None and (status >= 500 or status == 429 or status < 400)):
            return TRANSIENT
        return FailureReason.API_ERROR
    return FailureReason.API_ERROR  # a value we cannot read (ProgressParseError): say which, do not guess


def exception_for(reason: FailureReason | str, message: str, *, job_id: str = "", stream: str | None = None,
                  state: str | None = None, root_cause: str | None = None, progress_ms: int | None = None,
                  trigger_id: str | None = None) -> RtmlError:
    """The exception a failure event with ``reason`` raises (the deferred path raises what the sync path does)."""
    reason = FailureReason(reason)
    if reason is FailureReason.JOB_NOT_FOUND:
        return FlinkJobNotFound(message, job_id=job_id or None)
    if reason is FailureReason.API_ERROR:
        return FlinkApiError(message)
    if reason is FailureReason.CONFIGURATION:
        return FlinkConfigurationError(message)
    if reason is FailureReason.CHECKPOINTING_DISABLED:
        return FlinkCheckpointingDisabled(message, job_id=job_id or None)
    if reason is FailureReason.STALLED:
        return StreamStalled(message, stream=stream or job_id, progress_ms=progress_ms)
    if reason is FailureReason.SAVEPOINT_FAILED:
        return FlinkSavepointFailed(message, job_id=job_id, trigger_id=trigger_id, cause=root_cause)
    return FlinkJobFailed(message, job_id=job_id, state=state or "", root_cause=root_cause)


class FlinkJobAlreadyRunning(FlinkJobFailed):
    """A submit with ``if_running="fail"`` found a job of that name already active: nothing failed and nothing
    was started. A subclass of :class:`FlinkJobFailed` only so that round-1 ``except FlinkJobFailed`` still
    catches it; ``state`` is the running job's state, ``job_name`` its name."""

    def __init__(self, message: str, job_id: str, state: str, job_name: str):
        super().__init__(message, job_id=job_id, state=state)
        self.job_name = job_name


class FlinkJobProgramChanged(FlinkJobAlreadyRunning):
    """A submit with ``if_running="adopt"`` (and ``if_changed="fail"``) found the job of that name running another
    program than the task's: its recorded fingerprint differs from the task's (rendered SQL, jar digest, arguments,
    parallelism, Flink configuration). Nothing was stopped or started."""

    def __init__(self, message: str, job_id: str, state: str, job_name: str, running_fingerprint: str,
                 fingerprint: str):
        super().__init__(message, job_id=job_id, state=state, job_name=job_name)
        self.running_fingerprint = running_fingerprint
        self.fingerprint = fingerprint
