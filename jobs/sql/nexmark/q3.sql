-- Nexmark q3, local item suggestion: sellers in Oregon, Idaho or California
-- with auctions in category 10 (a regular join of two streams, Flink's q3
-- as written upstream).
SET 'pipeline.name' = 'nexmark_q3';

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

CREATE TABLE q3 (name STRING, city STRING, state STRING, id BIGINT) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT:-out/nexmark}/q3',
  'format' = 'parquet'
);

INSERT INTO q3
SELECT P.name, P.city, P.state, A.id
FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA');
