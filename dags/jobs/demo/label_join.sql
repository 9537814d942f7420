-- Label join: impressions LEFT interval-joined with clicks inside the attribution window -> raw samples.
-- A sample's label is 1 if a click came within {attribution_minutes} minutes (event time), 0 once that window
-- has passed. Malformed records of either topic go to the dead-letter topic. An impression arriving more than the
-- allowed lateness behind the highest event time seen before it is late: it is written to the late topic (counted)
-- and still labelled (not lost). Nothing is dropped silently.
CREATE TEMPORARY TABLE impressions_raw (
    line STRING,
    imp_id AS JSON_VALUE(line, '$.imp_id'),
    `user` AS JSON_VALUE(line, '$.user'),
    item AS JSON_VALUE(line, '$.item'),
    bucket AS JSON_VALUE(line, '$.bucket'),
    ts_ms AS TRY_CAST(JSON_VALUE(line, '$.ts') AS BIGINT),
    -- A malformed record's time never drives the watermark (one bad record must not make every later one late):
    ts AS TO_TIMESTAMP_LTZ(CASE WHEN JSON_VALUE(line, '$.imp_id') IS NOT NULL AND JSON_VALUE(line, '$.user') IS NOT NULL
              AND JSON_VALUE(line, '$.item') IS NOT NULL AND JSON_VALUE(line, '$.bucket') IN ('control', 'treatment')
         THEN COALESCE(TRY_CAST(JSON_VALUE(line, '$.ts') AS BIGINT), 0) ELSE 0 END, 3),
    arrival AS PROCTIME(),
    WATERMARK FOR ts AS ts - INTERVAL '{lateness_seconds}' SECOND(3)
) WITH ('connector' = 'kafka', 'topic' = '{impressions_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'properties.group.id' = '{job_name}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'raw');

CREATE TEMPORARY TABLE clicks_raw (
    line STRING,
    imp_id AS JSON_VALUE(line, '$.imp_id'),
    ts_ms AS TRY_CAST(JSON_VALUE(line, '$.ts') AS BIGINT),
    -- A malformed record's time never drives the watermark (one bad record must not make every later one late):
    ts AS TO_TIMESTAMP_LTZ(CASE WHEN JSON_VALUE(line, '$.imp_id') IS NOT NULL
         THEN COALESCE(TRY_CAST(JSON_VALUE(line, '$.ts') AS BIGINT), 0) ELSE 0 END, 3),
    WATERMARK FOR ts AS ts - INTERVAL '{lateness_seconds}' SECOND(3)
) WITH ('connector' = 'kafka', 'topic' = '{clicks_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'properties.group.id' = '{job_name}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'raw');

CREATE TEMPORARY TABLE samples (
    imp_id STRING, `user` STRING, item STRING, bucket STRING, ts_ms BIGINT, label INT
) WITH ('connector' = 'kafka', 'topic' = '{samples_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'format' = 'json', 'sink.delivery-guarantee' = 'at-least-once');

CREATE TEMPORARY TABLE dead_letter (source_topic STRING, line STRING)
WITH ('connector' = 'kafka', 'topic' = '{dead_letter_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
      'format' = 'json');

CREATE TEMPORARY TABLE late_events (source_topic STRING, imp_id STRING, ts_ms BIGINT)
WITH ('connector' = 'kafka', 'topic' = '{late_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
      'format' = 'json');

CREATE TEMPORARY VIEW impressions AS
SELECT imp_id, `user`, item, bucket, ts_ms, ts, arrival,
       imp_id IS NOT NULL AND `user` IS NOT NULL AND item IS NOT NULL AND ts_ms IS NOT NULL
           AND bucket IN ('control', 'treatment') AS is_valid,
       line
FROM impressions_raw;

CREATE TEMPORARY VIEW clicks AS
SELECT imp_id, ts_ms, ts, imp_id IS NOT NULL AND ts_ms IS NOT NULL AS is_valid, line FROM clicks_raw;

EXECUTE STATEMENT SET BEGIN
INSERT INTO dead_letter
    SELECT '{impressions_topic}', line FROM impressions WHERE NOT is_valid
    UNION ALL
    SELECT '{clicks_topic}', line FROM clicks WHERE NOT is_valid;
INSERT INTO late_events
    SELECT '{impressions_topic}', imp_id, ts_ms FROM (
        SELECT imp_id, ts_ms,
               MAX(ts_ms) OVER (ORDER BY arrival ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS seen_max_ms
        FROM impressions WHERE is_valid)
    WHERE ts_ms < seen_max_ms - {lateness_seconds} * 1000;
INSERT INTO samples
    SELECT i.imp_id, i.`user`, i.item, i.bucket, i.ts_ms, CASE WHEN c.imp_id IS NULL THEN 0 ELSE 1 END
    FROM (SELECT * FROM impressions WHERE is_valid) i
    LEFT JOIN (SELECT * FROM clicks WHERE is_valid) c
    ON i.imp_id = c.imp_id AND c.ts > i.ts AND c.ts <= i.ts + INTERVAL '{attribution_minutes}' MINUTE;
END;
