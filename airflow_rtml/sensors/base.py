"""What the stream sensors share: Airflow's sensor arguments, their deprecated round-1 names, the timeout class
both paths raise, and the error for a templated field a run cannot render.

The sensors are :class:`~airflow.sdk.BaseSensorOperator` subclasses: ``poke_interval``, ``timeout`` (seconds
or ``timedelta``), ``mode`` (``poke`` | ``reschedule``), ``soft_fail``, ``exponential_backoff``, ``max_wait``
mean what they mean for every Airflow sensor; ``deferrable`` (default ``[operators] default_deferrable``) waits
in the triggerer instead. A timeout raises :class:`FlinkSensorTimeout` on every path, so ``soft_fail=True``
turns it into a skip whether the wait ended on a worker or in the triggerer; other failures (a FAILED job, a
stall) fail the task, as they would without ``soft_fail``.
"""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import Any

import jinja2
from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowSensorTimeout

from airflow_rtml.exceptions import FlinkConfigurationError, FlinkWaitTimeout

__all__ = ["FlinkSensorTimeout", "RtmlSensorMixin", "deprecated_alias"]


class FlinkSensorTimeout(FlinkWaitTimeout, AirflowSensorTimeout):
    """A stream sensor's ``timeout`` passed before its condition held. Both a :class:`FlinkWaitTimeout` (what
    round 1 raised) and Airflow's ``AirflowSensorTimeout`` (so ``soft_fail`` skips, on every path).

    Defined here, not in :mod:`airflow_rtml.exceptions`: that module stays free of Airflow imports (the pure
    core imports it)."""


_UNSET: Any = object()


def deprecated_alias(task_id: str, old: str, new: str, old_value: Any, new_value: Any, default: Any) -> Any:
    """``new_value``, or ``old_value`` given under the deprecated name ``old`` (with a DeprecationWarning);
    both given is an error."""
    if old_value is _UNSET:
        return new_value
    warnings.warn(f"{task_id}: {old}= is deprecated, use {new}= (the Airflow sensor argument).",
                  DeprecationWarning, stacklevel=4)
    if new_value is not default and new_value != old_value:
        raise FlinkConfigurationError(f"{task_id}: give {new}= only ({old}= is its deprecated name).")
    return old_value


class RtmlSensorMixin:
    """Airflow sensor behaviour shared by the stream sensors (mixed into :class:`BaseSensorOperator` subclasses)."""

    task_id: str
    timeout: float
    poke_interval: float

    @property
    def poll_interval(self) -> float:
        """Deprecated name of ``poke_interval`` (seconds)."""
        return self.poke_interval

    @property
    def wait_timeout(self) -> timedelta:
        """``timeout`` as a timedelta (the round-1 attribute)."""
        return timedelta(seconds=self.timeout)

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render as Airflow does; a variable the run does not have raises :class:`FlinkConfigurationError`
        naming it and what to pass instead (Airflow 3 gives a run without logical date no data interval)."""
        try:
            super().render_template_fields(context, jinja_env)  # type: ignore[misc]
        except jinja2.UndefinedError as exc:
            raise FlinkConfigurationError(
                f"{self.task_id}: a templated argument names a variable this run does not have ({exc}). A run "
                "without logical date (Airflow 3: triggered manually or by an asset) has no data_interval_start/"
                "data_interval_end, logical_date or ds. To fix this, leave target= unset (it is the data interval "
                "end when the run has one, else the run's run_after), or template a value every run has, e.g. "
                "target='{{ dag_run.run_after }}', or pass a fixed time."
            ) from exc

    def _timeout_error(self, message: str) -> FlinkSensorTimeout:
        return FlinkSensorTimeout(f"{self.task_id}: {message}")

    def _run_sensor(self, context: Context) -> Any:
        """:meth:`BaseSensorOperator.execute` (poke / reschedule), with Airflow's own timeout raised as
        :class:`FlinkSensorTimeout` like the wait's."""
        try:
            return BaseSensorOperator.execute(self, context)  # type: ignore[arg-type]
        except AirflowSensorTimeout as exc:
            if isinstance(exc, FlinkSensorTimeout):
                raise
            raise self._timeout_error(str(exc)) from exc
