-- The labelled samples as a source (included by the jobs that read them). A sample labelled 0 is written only
-- once its attribution window has passed, so samples arrive that much out of order: the watermark waits for it.
CREATE TEMPORARY TABLE samples_in (
    imp_id STRING, `user` STRING, item STRING, bucket STRING, ts_ms BIGINT, label INT,
    ts AS TO_TIMESTAMP_LTZ(ts_ms, 3),
    WATERMARK FOR ts AS ts - INTERVAL '{samples_delay_seconds}' SECOND(3)
) WITH ('connector' = 'kafka', 'topic' = '{samples_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'properties.group.id' = '{job_name}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json');
