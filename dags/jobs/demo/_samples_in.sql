-- The labelled samples as a source (included by the jobs that read them). A sample labelled 0 is written only
-- once its attribution window has passed, so samples arrive that much out of order: the watermark waits for it.
-- The watermark moves with every record ('on-event'), not every 200 ms: which records are late then depends on
-- the order of the records alone, never on how fast they were read, so a backfill that replays the same order
-- drops exactly the records this job dropped (airflow_rtml.offline.backfill).
CREATE TEMPORARY TABLE samples_in (
    imp_id STRING, `user` STRING, item STRING, bucket STRING, ts_ms BIGINT, label INT,
    ts AS TO_TIMESTAMP_LTZ(ts_ms, 3),
    WATERMARK FOR ts AS ts - INTERVAL '{samples_delay_seconds}' SECOND(3)
) WITH ('connector' = 'kafka', 'topic' = '{samples_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'properties.group.id' = '{job_name}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json',
        'scan.watermark.emit.strategy' = 'on-event');
