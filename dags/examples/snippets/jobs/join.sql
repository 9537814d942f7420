-- The Flink job "sample-join" of join_after_features.py (a sketch: replace the tables with yours). Each sample
-- is joined with the user's features as of the sample's event time: an event-time temporal join on a versioned
-- table, so the join never reads a feature version from the sample's future.
CREATE TEMPORARY TABLE samples (
    user_id STRING, item_id STRING, ts BIGINT,
    event_time AS TO_TIMESTAMP_LTZ(ts, 3),
    WATERMARK FOR event_time AS event_time - INTERVAL '5' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'samples', 'format' = 'json', 'scan.startup.mode' = 'earliest-offset',
        'properties.bootstrap.servers' = '{{ conn.kafka_default.extra_dejson["bootstrap.servers"] }}',
        'properties.group.id' = 'sample-join');
CREATE TEMPORARY TABLE user_features (
    user_id STRING, ctr DOUBLE, version_ms BIGINT,
    version_time AS TO_TIMESTAMP_LTZ(version_ms, 3),
    WATERMARK FOR version_time AS version_time,
    PRIMARY KEY (user_id) NOT ENFORCED
) WITH ('connector' = 'upsert-kafka', 'topic' = 'user-features', 'key.format' = 'json', 'value.format' = 'json',
        'properties.bootstrap.servers' = '{{ conn.kafka_default.extra_dejson["bootstrap.servers"] }}');
CREATE TEMPORARY TABLE joined (user_id STRING, item_id STRING, ts BIGINT, user_ctr DOUBLE)
    WITH ('connector' = 'print');
INSERT INTO joined
SELECT s.user_id, s.item_id, s.ts, f.ctr
FROM samples AS s
LEFT JOIN user_features FOR SYSTEM_TIME AS OF s.event_time AS f ON s.user_id = f.user_id;
