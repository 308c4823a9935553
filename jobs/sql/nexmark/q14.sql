-- Nexmark q14: a calculation over bids with a Rust UDF (count_char).
SET 'pipeline.name' = 'nexmark_q14';

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

CREATE TABLE q14 (
  auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), bidTimeType STRING, date_time TIMESTAMP(3), extra STRING, c_counts BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT:-out/nexmark}/q14',
  'format' = 'parquet'
);

INSERT INTO q14
SELECT
  auction,
  bidder,
  0.908 * price AS price,
  CASE
    WHEN HOUR(date_time) >= 8 AND HOUR(date_time) <= 18 THEN 'dayTime'
    WHEN HOUR(date_time) <= 6 OR HOUR(date_time) >= 20 THEN 'nightTime'
    ELSE 'otherTime'
  END AS bidTimeType,
  date_time,
  extra,
  count_char(extra, 'c') AS c_counts
FROM bid
WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000;
