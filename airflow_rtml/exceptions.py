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


class FlinkApiError(FlinkError):
    """Flink answered a request with an error that is not retryable (4xx other than 404/429)."""

    def __init__(self, message: str, status_code: int | None = None, body: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.body = body


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
