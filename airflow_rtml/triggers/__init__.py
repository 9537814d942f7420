"""airflow-rtml triggers."""
