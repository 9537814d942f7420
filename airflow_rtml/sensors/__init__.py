"""airflow-rtml sensors."""
