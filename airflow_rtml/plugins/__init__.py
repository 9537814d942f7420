"""Airflow UI plugin of airflow-rtml (the streams view lands here)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class RtmlPlugin(AirflowPlugin):
    """Registers airflow-rtml with Airflow's plugin manager; views are added as they are built."""

    name = "airflow_rtml"
