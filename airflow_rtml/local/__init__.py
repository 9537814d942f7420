"""The embedded local stack (Flink session cluster, Kafka broker, Hive metastore, Airflow's components, a supervisor) and the `rtml` CLI."""
