-- Real-time evaluation: click-through per experiment bucket per event-time hour of the labelled samples.
{samples_in}

CREATE TEMPORARY TABLE ctr_per_bucket (
    window_start_ms BIGINT, window_end_ms BIGINT, bucket STRING, impressions BIGINT, clicks BIGINT
) WITH ('connector' = 'kafka', 'topic' = '{evaluation_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'format' = 'json', 'sink.delivery-guarantee' = 'at-least-once');

INSERT INTO ctr_per_bucket
SELECT TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', window_start) * CAST(1000 AS BIGINT),
       TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', window_end) * CAST(1000 AS BIGINT),
       bucket, COUNT(*), CAST(SUM(label) AS BIGINT)
FROM TABLE(TUMBLE(TABLE samples_in, DESCRIPTOR(ts), INTERVAL '1' HOUR))
GROUP BY bucket, window_start, window_end;
