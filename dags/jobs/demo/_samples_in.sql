-- The labelled samples as a source (included by the jobs that read them). A sample labelled 0 is written only
-- once its attribution window has passed, so samples arrive that much out of order: the watermark waits for it.
-- The feature job adds 'scan.watermark.emit.strategy' = 'on-event' (Chain.sql): its watermark moves with every
-- record, not every 200 ms, so which records are late depends on their order alone, never on how fast they were
-- read, and a backfill that replays the same order drops exactly the records the live job dropped (docs/backfill.md).
CREATE TEMPORARY TABLE samples_in (
    imp_id STRING, `user` STRING, item STRING, bucket STRING, ts_ms BIGINT, label INT,
    ts AS TO_TIMESTAMP_LTZ(ts_ms, 3),
    WATERMARK FOR ts AS ts - INTERVAL '{samples_delay_seconds}' SECOND(3)
) WITH ('connector' = 'kafka', 'topic' = '{samples_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'properties.group.id' = '{job_name}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json'{samples_watermark_options});
