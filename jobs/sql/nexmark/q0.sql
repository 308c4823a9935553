-- Nexmark q0: passthrough. Measures the cost of reading and writing.
SET 'pipeline.name' = 'nexmark_q0';

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

CREATE TABLE q0 (
  auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3), extra STRING
) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT:-out/nexmark}/q0',
  'format' = 'parquet'
);

INSERT INTO q0 SELECT auction, bidder, price, date_time, extra FROM bid;
