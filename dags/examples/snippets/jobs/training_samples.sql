-- The Flink job "training-samples" of hourly_training.py: impressions from Kafka, event time from the record's
-- ts (epoch ms), a watermark 5 s behind the highest ts seen, and the number of samples per user and hour.
-- Rendered as an Airflow template: the Kafka address comes from the kafka_default connection.
CREATE TEMPORARY TABLE impressions (
    ts BIGINT,
    user_id STRING,
    item_id STRING,
    event_time AS TO_TIMESTAMP_LTZ(ts, 3),
    WATERMARK FOR event_time AS event_time - INTERVAL '5' SECOND
) WITH (
    'connector' = 'kafka',
    'topic' = 'training-impressions',
    'properties.bootstrap.servers' = '{{ conn.kafka_default.extra_dejson["bootstrap.servers"] }}',
    'properties.group.id' = 'training-samples',
    'scan.startup.mode' = 'earliest-offset',
    'format' = 'json'
);

CREATE TEMPORARY TABLE samples_per_hour (
    window_start TIMESTAMP(3),
    user_id STRING,
    samples BIGINT
) WITH ('connector' = 'print');

INSERT INTO samples_per_hour
SELECT window_start, user_id, COUNT(*)
FROM TABLE(TUMBLE(TABLE impressions, DESCRIPTOR(event_time), INTERVAL '1' HOUR))
GROUP BY window_start, window_end, user_id;
