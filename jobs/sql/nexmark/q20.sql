-- Nexmark q20, expand bid with auction: every bid on an auction of
-- category 10, with the auction's columns (a regular join, Flink's q20 as
-- written upstream, without its `extra` columns' names clashing).
SET 'pipeline.name' = 'nexmark_q20';

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
  'stream.connector' = 'kafka',
  'stream.topic' = '${TOPIC:-nexmark}.bid',
  'stream.properties.bootstrap.servers' = '${KAFKA:-127.0.0.1:9092}',
  'stream.format' = 'json',
  'stream.scan.bounded.mode' = '${BOUNDED:-unbounded}'
);

CREATE TABLE auction (
  id          BIGINT,
  item_name   STRING,
  description STRING,
  initial_bid BIGINT,
  reserve     BIGINT,
  date_time   TIMESTAMP(3),
  expires     TIMESTAMP(3),
  seller      BIGINT,
  category    BIGINT,
  extra       STRING,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = '${DATA:-data/nexmark}/auction',
  'format' = 'parquet',
  'stream.connector' = 'kafka',
  'stream.topic' = '${TOPIC:-nexmark}.auction',
  'stream.properties.bootstrap.servers' = '${KAFKA:-127.0.0.1:9092}',
  'stream.format' = 'json',
  'stream.scan.bounded.mode' = '${BOUNDED:-unbounded}'
);

CREATE TABLE q20 (
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
  bid_date_time TIMESTAMP(3), bid_extra STRING,
  item_name STRING, description STRING, initial_bid BIGINT, reserve BIGINT,
  auction_date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT,
  category BIGINT, auction_extra STRING
) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT:-out/nexmark}/q20',
  'format' = 'parquet'
);

INSERT INTO q20
SELECT
  B.auction, B.bidder, B.price, B.channel, B.url, B.date_time, B.extra,
  A.item_name, A.description, A.initial_bid, A.reserve, A.date_time, A.expires,
  A.seller, A.category, A.extra
FROM bid AS B INNER JOIN auction AS A ON B.auction = A.id
WHERE A.category = 10;
