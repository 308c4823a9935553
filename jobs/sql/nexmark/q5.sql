-- Nexmark q5, hot items: the auction with the most bids in each 10-second
-- window, every 2 seconds. Flink's q5 joins the per-auction counts with
-- their maximum per window; here the second window picks the top auction
-- itself (FIRST_VALUE ordered by count), which is the same answer with ties
-- broken by the highest auction id.
SET 'pipeline.name' = 'nexmark_q5';

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

CREATE TABLE q5 (
  window_start TIMESTAMP(3), window_end TIMESTAMP(3), auction BIGINT, bids BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT:-out/nexmark}/q5',
  'format' = 'parquet'
);

-- Bids per auction and hop window; `window_time` carries each count on as
-- the rowtime of its window.
CREATE VIEW auction_bids AS
SELECT auction, window_time AS rowtime, COUNT(*) AS bids
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end, window_time;

-- Hop windows end every 2 seconds, so a 2-second tumble over their rowtime
-- holds exactly one hop window's counts.
INSERT INTO q5
SELECT
  window_end - INTERVAL '10' SECOND AS window_start,
  window_end,
  FIRST_VALUE(auction ORDER BY bids DESC, auction DESC) AS auction,
  MAX(bids) AS bids
FROM TABLE(TUMBLE(TABLE auction_bids, DESCRIPTOR(rowtime), INTERVAL '2' SECOND))
GROUP BY window_start, window_end;
