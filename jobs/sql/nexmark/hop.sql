-- Bids per auction in 10-second windows every 2 seconds: the hop benchmark shape.
SET 'pipeline.name' = 'nexmark_hop';

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

CREATE TABLE hop (
  auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT:-out/nexmark}/hop',
  'format' = 'parquet'
);

INSERT INTO hop
SELECT auction, window_start, window_end, COUNT(*) AS bids
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;
