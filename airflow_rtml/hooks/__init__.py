"""airflow-rtml hooks."""
