-- Nexmark q23, expand bid with person and auction: every bid of a person
-- who has also listed an item, with the person's and each of their
-- auctions' columns (a three-way regular join, as written upstream).
SET 'pipeline.name' = 'nexmark_q23';

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

CREATE TABLE person (
  id            BIGINT,
  name          STRING,
  email_address STRING,
  credit_card   STRING,
  city          STRING,
  state         STRING,
  date_time     TIMESTAMP(3),
  extra         STRING,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = '${DATA:-data/nexmark}/person',
  'format' = 'parquet',
  'stream.connector' = 'kafka',
  'stream.topic' = '${TOPIC:-nexmark}.person',
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

CREATE TABLE q23 (
  bidder BIGINT, price BIGINT, channel STRING, url STRING, bid_extra STRING,
  person_id BIGINT, name STRING, email_address STRING, credit_card STRING,
  city STRING, state STRING, person_extra STRING,
  item_name STRING, description STRING, initial_bid BIGINT, reserve BIGINT,
  auction_date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT,
  category BIGINT, auction_extra STRING
) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT:-out/nexmark}/q23',
  'format' = 'parquet'
);

INSERT INTO q23
SELECT
  B.bidder, B.price, B.channel, B.url, B.extra,
  P.id, P.name, P.email_address, P.credit_card, P.city, P.state, P.extra,
  A.item_name, A.description, A.initial_bid, A.reserve, A.date_time, A.expires,
  A.seller, A.category, A.extra
FROM bid B
JOIN person P ON P.id = B.bidder
JOIN auction A ON A.seller = B.bidder;
