"""The embedded local stack (Flink session cluster, Kafka broker, Airflow standalone) and the `rtml` CLI."""
