-- Real-time features: per-user and per-item click-through over tumbling {feature_window_minutes}-minute event-time
-- windows of the labelled samples, upserted into versioned feature tables (Kafka, keyed by entity). A row's
-- version is its window end: the value is known from that event time on, never before.
{samples_in}

CREATE TEMPORARY TABLE user_features (
    `user` STRING, imps BIGINT, clicks BIGINT, ctr DOUBLE, version_ms BIGINT, PRIMARY KEY (`user`) NOT ENFORCED
) WITH ('connector' = 'upsert-kafka', 'topic' = '{user_features_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'key.format' = 'json', 'value.format' = 'json');

CREATE TEMPORARY TABLE item_features (
    item STRING, imps BIGINT, clicks BIGINT, ctr DOUBLE, version_ms BIGINT, PRIMARY KEY (item) NOT ENFORCED
) WITH ('connector' = 'upsert-kafka', 'topic' = '{item_features_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'key.format' = 'json', 'value.format' = 'json');

EXECUTE STATEMENT SET BEGIN
INSERT INTO user_features
    SELECT `user`, COUNT(*), CAST(SUM(label) AS BIGINT), CAST(SUM(label) AS DOUBLE) / COUNT(*),
           TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', window_end) * CAST(1000 AS BIGINT)
    FROM TABLE(TUMBLE(TABLE samples_in, DESCRIPTOR(ts), INTERVAL '{feature_window_minutes}' MINUTE))
    GROUP BY `user`, window_start, window_end;
INSERT INTO item_features
    SELECT item, COUNT(*), CAST(SUM(label) AS BIGINT), CAST(SUM(label) AS DOUBLE) / COUNT(*),
           TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', window_end) * CAST(1000 AS BIGINT)
    FROM TABLE(TUMBLE(TABLE samples_in, DESCRIPTOR(ts), INTERVAL '{feature_window_minutes}' MINUTE))
    GROUP BY item, window_start, window_end;
END;
