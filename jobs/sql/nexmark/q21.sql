-- Nexmark q21: add a channel_id column from the channel or the URL.
SET 'pipeline.name' = 'nexmark_q21';

CREATE TABLE bid (
  auction   BIGINT,
  bidder    BIGINT,
  price     BIGINT,
  channel   STRING,
  url       STRING,
  date_time TIMESTAMP(3),
  extra     STRING,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = '${DATA:-data/nexmark}/bid',
  'format' = 'parquet',
  -- In stream mode, the topic `sluice gen nexmark --kafka BROKERS` fills.
  'stream.connector' = 'kafka',
  'stream.topic' = '${TOPIC:-nexmark}.bid',
  'stream.properties.bootstrap.servers' = '${KAFKA:-127.0.0.1:9092}',
  'stream.format' = 'json',
  'stream.scan.bounded.mode' = '${BOUNDED:-unbounded}'
);

CREATE TABLE q21 (
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, channel_id STRING
) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT:-out/nexmark}/q21',
  'format' = 'parquet'
);

INSERT INTO q21
SELECT
  auction, bidder, price, channel,
  CASE
    WHEN lower(channel) = 'apple' THEN '0'
    WHEN lower(channel) = 'google' THEN '1'
    WHEN lower(channel) = 'facebook' THEN '2'
    WHEN lower(channel) = 'baidu' THEN '3'
    ELSE REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)
  END AS channel_id
FROM bid
WHERE REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2) IS NOT NULL
   OR lower(channel) IN ('apple', 'google', 'facebook', 'baidu');
