"""airflow-rtml operators."""
