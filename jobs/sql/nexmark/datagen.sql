-- The Flink Nexmark benchmark's own DDL and views (ddl_gen.sql, ddl_views.sql)
-- over Sluice's `nexmark` source, which generates the events itself: no files,
-- no broker. With `events.num` it ends; the events are those that
-- `sluice gen nexmark --events N` writes, so the results match the other jobs'.
--   sluice run jobs/sql/nexmark/datagen.sql --set EVENTS=1000000 --mode stream
SET 'pipeline.name' = 'nexmark_datagen';

CREATE TABLE datagen (
    event_type int,
    person ROW<
        id  BIGINT,
        name  VARCHAR,
        emailAddress  VARCHAR,
        creditCard  VARCHAR,
        city  VARCHAR,
        state  VARCHAR,
        dateTime TIMESTAMP(3),
        extra  VARCHAR>,
    auction ROW<
        id  BIGINT,
        itemName  VARCHAR,
        description  VARCHAR,
        initialBid  BIGINT,
        reserve  BIGINT,
        dateTime  TIMESTAMP(3),
        expires  TIMESTAMP(3),
        seller  BIGINT,
        category  BIGINT,
        extra  VARCHAR>,
    bid ROW<
        auction  BIGINT,
        bidder  BIGINT,
        price  BIGINT,
        channel  VARCHAR,
        url  VARCHAR,
        dateTime  TIMESTAMP(3),
        extra  VARCHAR>,
    dateTime AS
        CASE
            WHEN event_type = 0 THEN person.dateTime
            WHEN event_type = 1 THEN auction.dateTime
            ELSE bid.dateTime
        END,
    WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH (
    'connector' = 'nexmark',
    'first-event.rate' = '10000',
    'next-event.rate' = '10000',
    'events.num' = '${EVENTS:-1000000}',
    'person.proportion' = '1',
    'auction.proportion' = '3',
    'bid.proportion' = '46'
);

CREATE VIEW person AS
SELECT
    person.id,
    person.name,
    person.emailAddress,
    person.creditCard,
    person.city,
    person.state,
    dateTime,
    person.extra
FROM datagen WHERE event_type = 0;

CREATE VIEW auction AS
SELECT
    auction.id,
    auction.itemName,
    auction.description,
    auction.initialBid,
    auction.reserve,
    dateTime,
    auction.expires,
    auction.seller,
    auction.category,
    auction.extra
FROM datagen WHERE event_type = 1;

CREATE VIEW bid AS
SELECT
    bid.auction,
    bid.bidder,
    bid.price,
    bid.channel,
    bid.url,
    dateTime,
    bid.extra
FROM datagen WHERE event_type = 2;

-- Nexmark q1: bid prices in euros.
CREATE TABLE nexmark_q1 (
  auction  BIGINT,
  bidder  BIGINT,
  price  DECIMAL(23, 3),
  dateTime  TIMESTAMP(3),
  extra  VARCHAR
) WITH ('connector' = 'filesystem', 'path' = '${OUT:-out/nexmark}/datagen_q1', 'format' = 'parquet');

INSERT INTO nexmark_q1
SELECT auction, bidder, 0.908 * price as price, dateTime, extra FROM bid;

-- Bids and top price per auction in 10-second tumbling windows.
CREATE TABLE nexmark_tumble (
  auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT, top_price BIGINT
) WITH ('connector' = 'filesystem', 'path' = '${OUT:-out/nexmark}/datagen_tumble', 'format' = 'parquet');

INSERT INTO nexmark_tumble
SELECT auction, window_start, window_end, COUNT(*), MAX(price)
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;

-- New persons and auctions per 10 seconds: the other two views at work.
CREATE TABLE nexmark_arrivals (
  window_start TIMESTAMP(3), persons BIGINT
) WITH ('connector' = 'filesystem', 'path' = '${OUT:-out/nexmark}/datagen_arrivals', 'format' = 'parquet');

INSERT INTO nexmark_arrivals
SELECT window_start, COUNT(*)
FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
GROUP BY window_start, window_end;
