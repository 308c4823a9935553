-- Nexmark q8, monitor new users: people who opened an account and created
-- an auction in the same 10-second window (a window join of two window
-- aggregates, Flink's q8 as written upstream).
SET 'pipeline.name' = 'nexmark_q8';

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

CREATE TABLE q8 (id BIGINT, name STRING, starttime TIMESTAMP(3)) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT:-out/nexmark}/q8',
  'format' = 'parquet'
);

INSERT INTO q8
SELECT P.id, P.name, P.starttime
FROM (
  SELECT id, name, window_start AS starttime, window_end AS endtime
  FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY id, name, window_start, window_end
) P
JOIN (
  SELECT seller, window_start AS starttime, window_end AS endtime
  FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY seller, window_start, window_end
) A
ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime;
