-- The Flink job "ctr-per-bucket" of flink_jobs.py: clicks and impressions from Kafka, the click-through rate
-- per item and 10-minute event-time bucket, upserted to a compacted topic.
CREATE TEMPORARY TABLE events (
    item_id STRING, clicked BOOLEAN, ts BIGINT,
    event_time AS TO_TIMESTAMP_LTZ(ts, 3),
    WATERMARK FOR event_time AS event_time - INTERVAL '5' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'item-events', 'format' = 'json', 'scan.startup.mode' = 'earliest-offset',
        'properties.bootstrap.servers' = '{{ conn.kafka_default.extra_dejson["bootstrap.servers"] }}',
        'properties.group.id' = 'ctr-per-bucket');
CREATE TEMPORARY TABLE ctr (
    item_id STRING, bucket_start TIMESTAMP(3), ctr DOUBLE,
    PRIMARY KEY (item_id, bucket_start) NOT ENFORCED
) WITH ('connector' = 'upsert-kafka', 'topic' = 'ctr-per-bucket', 'key.format' = 'json', 'value.format' = 'json',
        'properties.bootstrap.servers' = '{{ conn.kafka_default.extra_dejson["bootstrap.servers"] }}');
INSERT INTO ctr
SELECT item_id, window_start, AVG(CASE WHEN clicked THEN 1.0 ELSE 0.0 END)
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(event_time), INTERVAL '10' MINUTE))
GROUP BY item_id, window_start, window_end;
