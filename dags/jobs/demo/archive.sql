-- Archive: the chain's raw impressions, raw clicks and labelled samples, written into hourly Hive partitions
-- (Parquet, dt=YYYY-MM-DD/hour=HH of each record's *event time*). Each record keeps its Kafka partition, offset
-- and timestamp: the order the live topic held it in, for a backfill to replay.
--
-- A partition is committed (its _SUCCESS file written) once the sink's watermark has passed the hour's end and the
-- checkpoint holding its files completed: {{hourly_partition_commit}} is airflow_rtml.offline.archive's
-- HOURLY_PARTITION_COMMIT, which commits at watermark >= hour end - 1 ms, the instant the window signal uses. A record that arrives behind the
-- watermark could land in a partition already committed; it goes to the archive-late topic instead (counted,
-- whole, not lost), so a committed partition never changes. "Behind" is Flink's own test, ts <= CURRENT_WATERMARK(ts),
-- made where the record enters: the sink's watermark is never ahead of that for this record (records and
-- watermarks travel in order), so a record kept is never in a partition its sink has committed. It depends only
-- on the watermark, which for a topic of several partitions is the minimum over them: a partition read ahead of
-- the others (catching up) does not make the others' records late. Malformed records (no event time) are not
-- archived here: the label join routes them to the dead-letter topic.
CREATE TEMPORARY TABLE impressions_in (
    line STRING,
    kafka_partition INT METADATA FROM 'partition' VIRTUAL,
    kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL,
    kafka_ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
    ts_ms AS TRY_CAST(JSON_VALUE(line, '$.ts') AS BIGINT),
    -- A malformed record's time never drives the watermark (one bad record must not make every later one late):
    ts AS TO_TIMESTAMP_LTZ(CASE WHEN JSON_VALUE(line, '$.imp_id') IS NOT NULL AND JSON_VALUE(line, '$.user') IS NOT NULL
              AND JSON_VALUE(line, '$.item') IS NOT NULL AND JSON_VALUE(line, '$.bucket') IN ('control', 'treatment')
         THEN COALESCE(TRY_CAST(JSON_VALUE(line, '$.ts') AS BIGINT), 0) ELSE 0 END, 3),
    WATERMARK FOR ts AS ts - INTERVAL '{lateness_seconds}' SECOND(3)
) WITH ('connector' = 'kafka', 'topic' = '{impressions_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'properties.group.id' = '{job_name}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'raw');

CREATE TEMPORARY TABLE clicks_in (
    line STRING,
    kafka_partition INT METADATA FROM 'partition' VIRTUAL,
    kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL,
    kafka_ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
    ts_ms AS TRY_CAST(JSON_VALUE(line, '$.ts') AS BIGINT),
    -- A malformed record's time never drives the watermark (one bad record must not make every later one late):
    ts AS TO_TIMESTAMP_LTZ(CASE WHEN JSON_VALUE(line, '$.imp_id') IS NOT NULL
         THEN COALESCE(TRY_CAST(JSON_VALUE(line, '$.ts') AS BIGINT), 0) ELSE 0 END, 3),
    WATERMARK FOR ts AS ts - INTERVAL '{lateness_seconds}' SECOND(3)
) WITH ('connector' = 'kafka', 'topic' = '{clicks_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'properties.group.id' = '{job_name}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'raw');

CREATE TEMPORARY TABLE samples_in (
    imp_id STRING, `user` STRING, item STRING, bucket STRING, ts_ms BIGINT, label INT,
    kafka_partition INT METADATA FROM 'partition' VIRTUAL,
    kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL,
    kafka_ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
    ts AS TO_TIMESTAMP_LTZ(ts_ms, 3),
    WATERMARK FOR ts AS ts - INTERVAL '{archive_samples_delay_minutes}' MINUTE
) WITH ('connector' = 'kafka', 'topic' = '{samples_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'properties.group.id' = '{job_name}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json');

CREATE TEMPORARY TABLE impressions_archive (
    line STRING, ts_ms BIGINT, kafka_partition INT, kafka_offset BIGINT, kafka_ts_ms BIGINT, dt STRING, `hour` STRING
) PARTITIONED BY (dt, `hour`) WITH ('connector' = 'filesystem', 'path' = '{impressions_path}', 'format' = 'parquet',
    {hourly_partition_commit});

CREATE TEMPORARY TABLE clicks_archive (
    line STRING, ts_ms BIGINT, kafka_partition INT, kafka_offset BIGINT, kafka_ts_ms BIGINT, dt STRING, `hour` STRING
) PARTITIONED BY (dt, `hour`) WITH ('connector' = 'filesystem', 'path' = '{clicks_path}', 'format' = 'parquet',
    {hourly_partition_commit});

CREATE TEMPORARY TABLE samples_archive (
    imp_id STRING, `user` STRING, item STRING, bucket STRING, ts_ms BIGINT, label INT,
    kafka_partition INT, kafka_offset BIGINT, kafka_ts_ms BIGINT, dt STRING, `hour` STRING
) PARTITIONED BY (dt, `hour`) WITH ('connector' = 'filesystem', 'path' = '{samples_path}', 'format' = 'parquet',
    {hourly_partition_commit});

-- Records behind the watermark, whole, with where they came from (the demo's summary counts them).
CREATE TEMPORARY TABLE archive_late (
    source_topic STRING, line STRING, ts_ms BIGINT, kafka_partition INT, kafka_offset BIGINT
) WITH ('connector' = 'kafka', 'topic' = '{archive_late_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'format' = 'json');

CREATE TEMPORARY VIEW impressions_on_time AS
SELECT line, ts_ms, kafka_partition, kafka_offset, ts, kafka_ts,
       COALESCE(ts <= CURRENT_WATERMARK(ts), FALSE) AS is_late
FROM impressions_in WHERE ts_ms IS NOT NULL AND JSON_VALUE(line, '$.imp_id') IS NOT NULL;

CREATE TEMPORARY VIEW clicks_on_time AS
SELECT line, ts_ms, kafka_partition, kafka_offset, ts, kafka_ts,
       COALESCE(ts <= CURRENT_WATERMARK(ts), FALSE) AS is_late
FROM clicks_in WHERE ts_ms IS NOT NULL AND JSON_VALUE(line, '$.imp_id') IS NOT NULL;

CREATE TEMPORARY VIEW samples_on_time AS
SELECT imp_id, `user`, item, bucket, ts_ms, label, kafka_partition, kafka_offset, ts, kafka_ts,
       COALESCE(ts <= CURRENT_WATERMARK(ts), FALSE) AS is_late
FROM samples_in WHERE ts_ms IS NOT NULL;

EXECUTE STATEMENT SET BEGIN
INSERT INTO impressions_archive
    SELECT line, ts_ms, kafka_partition, kafka_offset, UNIX_TIMESTAMP(CAST(kafka_ts AS STRING)) * 1000,
           DATE_FORMAT(ts, 'yyyy-MM-dd'), DATE_FORMAT(ts, 'HH')
    FROM impressions_on_time WHERE NOT is_late;
INSERT INTO clicks_archive
    SELECT line, ts_ms, kafka_partition, kafka_offset, UNIX_TIMESTAMP(CAST(kafka_ts AS STRING)) * 1000,
           DATE_FORMAT(ts, 'yyyy-MM-dd'), DATE_FORMAT(ts, 'HH')
    FROM clicks_on_time WHERE NOT is_late;
INSERT INTO samples_archive
    SELECT imp_id, `user`, item, bucket, ts_ms, label, kafka_partition, kafka_offset,
           UNIX_TIMESTAMP(CAST(kafka_ts AS STRING)) * 1000, DATE_FORMAT(ts, 'yyyy-MM-dd'), DATE_FORMAT(ts, 'HH')
    FROM samples_on_time WHERE NOT is_late;
INSERT INTO archive_late
    SELECT '{impressions_topic}', line, ts_ms, kafka_partition, kafka_offset FROM impressions_on_time WHERE is_late
    UNION ALL
    SELECT '{clicks_topic}', line, ts_ms, kafka_partition, kafka_offset FROM clicks_on_time WHERE is_late
    UNION ALL
    SELECT '{samples_topic}', JSON_OBJECT('imp_id' VALUE imp_id, 'user' VALUE `user`, 'item' VALUE item,
                                          'bucket' VALUE bucket, 'ts_ms' VALUE ts_ms, 'label' VALUE label),
           ts_ms, kafka_partition, kafka_offset
    FROM samples_on_time WHERE is_late;
END;
