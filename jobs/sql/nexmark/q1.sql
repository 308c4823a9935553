-- Nexmark q1: currency conversion (dollars to euros).
SET 'pipeline.name' = 'nexmark_q1';

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

CREATE TABLE q1 (
  auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), date_time TIMESTAMP(3), extra STRING
) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT:-out/nexmark}/q1',
  'format' = 'parquet'
);

INSERT INTO q1 SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid;
