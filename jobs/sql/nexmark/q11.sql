-- Nexmark q11: user sessions: how many bids each bidder makes while active
-- (a session ends after 10 s without a bid).
SET 'pipeline.name' = 'nexmark_q11';

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

CREATE TABLE q11 (
  bidder BIGINT, bid_count BIGINT, starttime TIMESTAMP(3), endtime TIMESTAMP(3)
) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT:-out/nexmark}/q11',
  'format' = 'parquet'
);

INSERT INTO q11
SELECT bidder, COUNT(*) AS bid_count, window_start AS starttime, window_end AS endtime
FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end;
