"""Reading a stream's progress: one room, used by the triggers, the sensors' worker path, the skew check, the
relay, the demo and the UI view.

* :mod:`~airflow_rtml.streams.flink` — :class:`~airflow_rtml.streams.flink.FlinkStreamReader`: a Flink job's
  progress over REST or the TaskManagers' Prometheus reporters (picked by itself), one typed
  :class:`~airflow_rtml.progress.Observation` per poll; the one job-reference resolution;
* :mod:`~airflow_rtml.streams.kafka` — :class:`~airflow_rtml.streams.kafka.KafkaProgressConsumer`: one shared
  consumer per progress topic, records dead-lettered, the topic's settings checked;
* :mod:`~airflow_rtml.streams.shared` — the process-wide coalescing cache (one fetch per cluster and interval).

The decisions over what is read are pure and live in :mod:`airflow_rtml.progress`.
"""
