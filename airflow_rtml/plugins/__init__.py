"""Airflow UI plugin of airflow-rtml: the "Streams" view (see ``docs/ui.md``).

Airflow's API server mounts the view's FastAPI app (:mod:`airflow_rtml.plugins.app`) under ``/rtml``; the UI
lists it in its navigation as an external view (shown inside the Airflow UI).
"""

from __future__ import annotations

from functools import cache

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/rtml"


@cache
def _fastapi_apps() -> list[dict]:
    """Built once per process, when Airflow's API server asks (not when a worker loads the plugin)."""
    from airflow_rtml.plugins.app import create_app

    return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "airflow-rtml Streams"}]


class RtmlPlugin(AirflowPlugin):
    """Registers the Streams view with Airflow's plugin manager."""

    name = "airflow_rtml"
    external_views = [{"name": "Streams", "href": f"{URL_PREFIX}/", "destination": "nav", "url_route": "streams",
                       "category": "browse"}]

    @property
    def fastapi_apps(self) -> list[dict]:  # type: ignore[override]
        return _fastapi_apps()
