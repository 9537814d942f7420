-- Sample-feature join, point-in-time correct by construction: each labelled sample is joined with the user and
-- item feature rows valid AS OF its event time (event-time temporal join on the versioned feature tables), and
-- carries each feature's version time, so a consumer can check that no feature comes from the sample's future.
-- Batch -> stream: the offline long-window features (Spark, one Hive partition per hour, published to upsert topics
-- by DAG rtml_demo_offline_features, in hour order) are joined the same way. A version is valid from its
-- version_ms (hour end + attribution window) until the next one, exactly one hour later; so the offline side's
-- watermark may run one hour (minus 1 ms) ahead of its latest version: that promise is true, and it lets the join
-- emit a sample at t as soon as the version valid at t has arrived, never with a later one. A version has arrived
-- only with its marker row, published after all of its rows: a data row moves the watermark only to just before
-- its version (a join released by the first row of a version would read the rest of it as missing; that was the
-- stale offline joins seen now and then: 4,990 of one hour's item lookups in one run).
{samples_in}

CREATE TEMPORARY TABLE offline_user_in (
    `user` STRING, imps_7d BIGINT, ctr_7d DOUBLE, ctr_24h DOUBLE, version_ms BIGINT,
    version_ts AS TO_TIMESTAMP_LTZ(version_ms, 3),
    PRIMARY KEY (`user`) NOT ENFORCED,
    WATERMARK FOR version_ts AS CASE WHEN `user` = '{version_marker}'
        THEN version_ts + INTERVAL '59:59.999' MINUTE TO SECOND(3) ELSE version_ts - INTERVAL '1' SECOND END
) WITH ('connector' = 'upsert-kafka', 'topic' = '{offline_user_features_topic}',
        'properties.bootstrap.servers' = '{bootstrap}', 'properties.group.id' = '{job_name}-ou',
        'key.format' = 'json', 'value.format' = 'json');

CREATE TEMPORARY TABLE offline_item_in (
    item STRING, imps_7d BIGINT, ctr_7d DOUBLE, ctr_24h DOUBLE, version_ms BIGINT,
    version_ts AS TO_TIMESTAMP_LTZ(version_ms, 3),
    PRIMARY KEY (item) NOT ENFORCED,
    WATERMARK FOR version_ts AS CASE WHEN item = '{version_marker}'
        THEN version_ts + INTERVAL '59:59.999' MINUTE TO SECOND(3) ELSE version_ts - INTERVAL '1' SECOND END
) WITH ('connector' = 'upsert-kafka', 'topic' = '{offline_item_features_topic}',
        'properties.bootstrap.servers' = '{bootstrap}', 'properties.group.id' = '{job_name}-oi',
        'key.format' = 'json', 'value.format' = 'json');

CREATE TEMPORARY TABLE user_features_in (
    `user` STRING, imps BIGINT, clicks BIGINT, ctr DOUBLE, version_ms BIGINT,
    version_ts AS TO_TIMESTAMP_LTZ(version_ms, 3),
    PRIMARY KEY (`user`) NOT ENFORCED,
    WATERMARK FOR version_ts AS version_ts
) WITH ('connector' = 'upsert-kafka', 'topic' = '{user_features_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'properties.group.id' = '{job_name}-u', 'key.format' = 'json', 'value.format' = 'json');

CREATE TEMPORARY TABLE item_features_in (
    item STRING, imps BIGINT, clicks BIGINT, ctr DOUBLE, version_ms BIGINT,
    version_ts AS TO_TIMESTAMP_LTZ(version_ms, 3),
    PRIMARY KEY (item) NOT ENFORCED,
    WATERMARK FOR version_ts AS version_ts
) WITH ('connector' = 'upsert-kafka', 'topic' = '{item_features_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'properties.group.id' = '{job_name}-i', 'key.format' = 'json', 'value.format' = 'json');

CREATE TEMPORARY TABLE training_samples (
    imp_id STRING, `user` STRING, item STRING, bucket STRING, ts_ms BIGINT, label INT,
    user_ctr DOUBLE, user_imps BIGINT, user_version_ms BIGINT,
    item_ctr DOUBLE, item_imps BIGINT, item_version_ms BIGINT,
    user_ctr_7d DOUBLE, user_offline_version_ms BIGINT, item_ctr_7d DOUBLE, item_offline_version_ms BIGINT
) WITH ('connector' = 'kafka', 'topic' = '{training_samples_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'format' = 'json', 'sink.delivery-guarantee' = 'at-least-once');

-- The same rows, archived into hourly Hive partitions of their event time (see archive.sql for the commit
-- semantics). Written by this job, so the partition of an hour is committed by the very watermark that closed it.
CREATE TEMPORARY TABLE training_samples_archive (
    imp_id STRING, `user` STRING, item STRING, bucket STRING, ts_ms BIGINT, label INT,
    user_ctr DOUBLE, user_imps BIGINT, user_version_ms BIGINT,
    item_ctr DOUBLE, item_imps BIGINT, item_version_ms BIGINT,
    user_ctr_7d DOUBLE, user_offline_version_ms BIGINT, item_ctr_7d DOUBLE, item_offline_version_ms BIGINT,
    dt STRING, `hour` STRING
) PARTITIONED BY (dt, `hour`) WITH ('connector' = 'filesystem', 'path' = '{training_samples_path}', 'format' = 'parquet',
    {hourly_partition_commit});

CREATE TEMPORARY VIEW joined AS
SELECT s.imp_id, s.`user`, s.item, s.bucket, s.ts_ms, s.label, s.ts,
       u.ctr AS user_ctr, u.imps AS user_imps, u.version_ms AS user_version_ms,
       i.ctr AS item_ctr, i.imps AS item_imps, i.version_ms AS item_version_ms,
       ou.ctr_7d AS user_ctr_7d, ou.version_ms AS user_offline_version_ms,
       oi.ctr_7d AS item_ctr_7d, oi.version_ms AS item_offline_version_ms
FROM samples_in AS s
LEFT JOIN user_features_in FOR SYSTEM_TIME AS OF s.ts AS u ON s.`user` = u.`user`
LEFT JOIN item_features_in FOR SYSTEM_TIME AS OF s.ts AS i ON s.item = i.item
LEFT JOIN offline_user_in FOR SYSTEM_TIME AS OF s.ts AS ou ON s.`user` = ou.`user`
LEFT JOIN offline_item_in FOR SYSTEM_TIME AS OF s.ts AS oi ON s.item = oi.item;

EXECUTE STATEMENT SET BEGIN
INSERT INTO training_samples
    SELECT imp_id, `user`, item, bucket, ts_ms, label, user_ctr, user_imps, user_version_ms,
           item_ctr, item_imps, item_version_ms,
           user_ctr_7d, user_offline_version_ms, item_ctr_7d, item_offline_version_ms
    FROM joined;
INSERT INTO training_samples_archive
    SELECT imp_id, `user`, item, bucket, ts_ms, label, user_ctr, user_imps, user_version_ms,
           item_ctr, item_imps, item_version_ms,
           user_ctr_7d, user_offline_version_ms, item_ctr_7d, item_offline_version_ms,
           DATE_FORMAT(ts, 'yyyy-MM-dd'), DATE_FORMAT(ts, 'HH')
    FROM joined;
END;
