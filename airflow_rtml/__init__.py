"""airflow-rtml: orchestrate real-time ML chains on Apache Flink and Kafka from Apache Airflow.

Importing this package is cheap and has no side effects: no Airflow import, no network, no pyflink.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]


def get_provider_info() -> dict:
    """Return the provider metadata Airflow's ``ProvidersManager`` reads through the entry point.

    The dictionary follows ``airflow/provider_info.schema.json`` of the installed Airflow; a unit test
    validates it against that schema and imports every class path it names.
    """
    return {
        "package-name": "airflow-rtml",
        "name": "Real-time ML on Flink and Kafka (airflow-rtml)",
        "description": (
            "Flink job operators, deferrable watermark sensors and triggers, and stream-to-batch "
            "dependencies for real-time machine-learning chains on Apache Flink and Apache Kafka."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Apache Flink (REST)",
                "external-doc-url": "https://nightlies.apache.org/flink/flink-docs-stable/docs/ops/rest_api/",
                "tags": ["apache"],
            }
        ],
        "hooks": [
            {"integration-name": "Apache Flink (REST)",
             "python-modules": ["airflow_rtml.hooks.flink", "airflow_rtml.hooks.flink_sql"]},
        ],
        "operators": [
            {"integration-name": "Apache Flink (REST)",
             "python-modules": ["airflow_rtml.operators.flink", "airflow_rtml.operators.streams"]},
        ],
        "sensors": [
            {"integration-name": "Apache Flink (REST)",
             "python-modules": ["airflow_rtml.sensors.flink", "airflow_rtml.sensors.watermark"]},
        ],
        "triggers": [
            {"integration-name": "Apache Flink (REST)",
             "python-modules": ["airflow_rtml.triggers.flink", "airflow_rtml.triggers.watermark",
                                "airflow_rtml.triggers.kafka"]},
        ],
        "extra-links": ["airflow_rtml.links.FlinkJobLink", "airflow_rtml.links.StreamProgressLink"],
        "connection-types": [
            {"hook-class-name": "airflow_rtml.hooks.flink.FlinkRestHook", "connection-type": "flink_rest"},
            {"hook-class-name": "airflow_rtml.hooks.flink_sql.FlinkSqlGatewayHook",
             "connection-type": "flink_sql_gateway"},
        ],
        "plugins": [
            {"name": "airflow_rtml", "plugin-class": "airflow_rtml.plugins.RtmlPlugin"},
        ],
    }
