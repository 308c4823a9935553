//! DataFusion SQL that computes what Sluice's shipped jobs compute, to check
//! Sluice's results independently (in tests) and to race it (in benches).
//!
//! The queries read the tables the generators write (`person`, `auction`,
//! `bid`, `events`) and
//! return the sink's columns in the sink's order and types.

/// DataFusion's SQL for the Nexmark job file `jobs/sql/nexmark/{query}.sql`.
pub fn nexmark(query: &str) -> Option<&'static str> {
    Some(match query {
        "q0" => "SELECT auction, bidder, price, date_time, extra FROM bid",
        "q1" => {
            "SELECT auction, bidder, CAST(0.908 * price AS DECIMAL(23, 3)) AS price, date_time, extra FROM bid"
        }
        "q2" => "SELECT auction, price FROM bid WHERE auction % 123 = 0",
        "q3" => {
            "SELECT P.name, P.city, P.state, A.id FROM auction A JOIN person P ON A.seller = P.id \
             WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')"
        }
        // The bids at the highest price of their 10-second window.
        "q7" => {
            "SELECT B.auction, B.price, B.bidder, B.date_time, B.extra FROM bid B JOIN ( \
               SELECT MAX(price) AS maxprice, \
                 date_bin(INTERVAL '10 seconds', date_time) + INTERVAL '10 seconds' AS dt \
               FROM bid GROUP BY date_bin(INTERVAL '10 seconds', date_time)) B1 \
             ON B.price = B1.maxprice \
             WHERE B.date_time BETWEEN B1.dt - INTERVAL '10 seconds' AND B1.dt"
        }
        // People and their auctions in the same 10-second tumbling window.
        "q8" => {
            "SELECT P.id, P.name, P.starttime FROM ( \
               SELECT id, name, date_bin(INTERVAL '10 seconds', date_time) AS starttime \
               FROM person GROUP BY id, name, date_bin(INTERVAL '10 seconds', date_time)) P \
             JOIN ( \
               SELECT seller, date_bin(INTERVAL '10 seconds', date_time) AS starttime \
               FROM auction GROUP BY seller, date_bin(INTERVAL '10 seconds', date_time)) A \
             ON P.id = A.seller AND P.starttime = A.starttime"
        }
        // A HOP window of 10 s every 2 s holds a bid in the 5 windows
        // starting at its 2-second slice and the 4 before it.
        "q5_upstream" => {
            "WITH windowed AS ( \
               SELECT B.auction, date_bin(INTERVAL '2 seconds', B.date_time) - S.back AS starttime \
               FROM bid B CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '2 seconds'), \
                 (INTERVAL '4 seconds'), (INTERVAL '6 seconds'), (INTERVAL '8 seconds')) AS S(back)), \
             auction_bids AS (SELECT auction, count(*) AS num, starttime FROM windowed GROUP BY auction, starttime), \
             max_bids AS (SELECT max(num) AS maxn, starttime FROM auction_bids GROUP BY starttime) \
             SELECT A.auction, A.num FROM auction_bids A JOIN max_bids M \
             ON A.starttime = M.starttime AND A.num >= M.maxn"
        }
        "q23" => {
            "SELECT B.bidder, B.price, B.channel, B.url, B.extra, \
               P.id, P.name, P.email_address, P.credit_card, P.city, P.state, P.extra, \
               A.item_name, A.description, A.initial_bid, A.reserve, A.date_time, A.expires, \
               A.seller, A.category, A.extra \
             FROM bid B JOIN person P ON P.id = B.bidder JOIN auction A ON A.seller = B.bidder"
        }
        "q20" => {
            "SELECT B.auction, B.bidder, B.price, B.channel, B.url, B.date_time, B.extra, \
               A.item_name, A.description, A.initial_bid, A.reserve, A.date_time, A.expires, \
               A.seller, A.category, A.extra \
             FROM bid B JOIN auction A ON B.auction = A.id WHERE A.category = 10"
        }
        "q15" => {
            "SELECT to_char(date_time, '%Y-%m-%d') AS day, count(*), \
               count(*) FILTER (WHERE price < 10000), \
               count(*) FILTER (WHERE price >= 10000 AND price < 1000000), \
               count(*) FILTER (WHERE price >= 1000000), \
               count(DISTINCT bidder), \
               count(DISTINCT bidder) FILTER (WHERE price < 10000), \
               count(DISTINCT bidder) FILTER (WHERE price >= 10000 AND price < 1000000), \
               count(DISTINCT bidder) FILTER (WHERE price >= 1000000), \
               count(DISTINCT auction), \
               count(DISTINCT auction) FILTER (WHERE price < 10000), \
               count(DISTINCT auction) FILTER (WHERE price >= 10000 AND price < 1000000), \
               count(DISTINCT auction) FILTER (WHERE price >= 1000000) \
             FROM bid GROUP BY 1"
        }
        // Sessions with window functions: a new session starts where the
        // gap to the bidder's previous bid exceeds 10 s.
        "q11" => {
            "SELECT bidder, count(*) AS bid_count, min(date_time) AS starttime, \
               max(date_time) + INTERVAL '10 seconds' AS endtime \
             FROM (SELECT bidder, date_time, sum(new_session) OVER (PARTITION BY bidder ORDER BY date_time \
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session \
                   FROM (SELECT bidder, date_time, CASE WHEN date_time - lag(date_time) OVER (PARTITION BY bidder \
                           ORDER BY date_time) <= INTERVAL '10 seconds' THEN 0 ELSE 1 END AS new_session FROM bid)) \
             GROUP BY bidder, session"
        }
        "q14" => {
            "SELECT auction, bidder, CAST(0.908 * price AS DECIMAL(23, 3)), \
               CASE WHEN date_part('hour', date_time) >= 8 AND date_part('hour', date_time) <= 18 THEN 'dayTime' \
                    WHEN date_part('hour', date_time) <= 6 OR date_part('hour', date_time) >= 20 THEN 'nightTime' \
                    ELSE 'otherTime' END, \
               date_time, extra, CAST(length(extra) - length(replace(extra, 'c', '')) AS BIGINT) \
             FROM bid WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000"
        }
        "q16" => {
            "SELECT channel, to_char(date_time, '%Y-%m-%d') AS day, max(to_char(date_time, '%H:%M')), count(*), \
               count(*) FILTER (WHERE price < 10000), \
               count(*) FILTER (WHERE price >= 10000 AND price < 1000000), \
               count(*) FILTER (WHERE price >= 1000000), \
               count(DISTINCT bidder), \
               count(DISTINCT bidder) FILTER (WHERE price < 10000), \
               count(DISTINCT bidder) FILTER (WHERE price >= 10000 AND price < 1000000), \
               count(DISTINCT bidder) FILTER (WHERE price >= 1000000), \
               count(DISTINCT auction), \
               count(DISTINCT auction) FILTER (WHERE price < 10000), \
               count(DISTINCT auction) FILTER (WHERE price >= 10000 AND price < 1000000), \
               count(DISTINCT auction) FILTER (WHERE price >= 1000000) \
             FROM bid GROUP BY 1, 2"
        }
        "q21" => {
            "SELECT auction, bidder, price, channel, \
               CASE WHEN lower(channel) = 'apple' THEN '0' WHEN lower(channel) = 'google' THEN '1' \
                    WHEN lower(channel) = 'facebook' THEN '2' WHEN lower(channel) = 'baidu' THEN '3' \
                    ELSE regexp_match(url, '(&|^)channel_id=([^&]*)')[2] END \
             FROM bid \
             WHERE regexp_match(url, '(&|^)channel_id=([^&]*)')[2] IS NOT NULL \
                OR lower(channel) IN ('apple', 'google', 'facebook', 'baidu')"
        }
        "q22" => {
            "SELECT auction, bidder, price, channel, split_part(url, '/', 4), split_part(url, '/', 5), \
             split_part(url, '/', 6) FROM bid"
        }
        "tumble" => {
            "SELECT auction, date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01') AS window_start, \
             date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01') + INTERVAL '10 seconds' AS window_end, \
             count(*) AS bids, max(price) AS top_price \
             FROM bid GROUP BY 1, 2, 3"
        }
        // Without a hopping window function, each bid is joined to the five
        // windows it belongs to: the row copying Sluice's slices avoid.
        "hop" => {
            "SELECT auction, ws AS window_start, ws + INTERVAL '10 seconds' AS window_end, count(*) AS bids FROM ( \
               SELECT auction, date_bin(INTERVAL '2 seconds', date_time, TIMESTAMP '1970-01-01') - o AS ws \
               FROM bid CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '2 seconds'), (INTERVAL '4 seconds'), \
                 (INTERVAL '6 seconds'), (INTERVAL '8 seconds')) AS offsets(o)) \
             GROUP BY 1, 2, 3"
        }
        // The hop counts as above, then the top auction of each window.
        "q5" => {
            "SELECT ws AS window_start, ws + INTERVAL '10 seconds' AS window_end, \
               first_value(auction ORDER BY bids DESC, auction DESC) AS auction, max(bids) AS bids FROM ( \
               SELECT auction, ws, count(*) AS bids FROM ( \
                 SELECT auction, date_bin(INTERVAL '2 seconds', date_time, TIMESTAMP '1970-01-01') - o AS ws \
                 FROM bid CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '2 seconds'), (INTERVAL '4 seconds'), \
                   (INTERVAL '6 seconds'), (INTERVAL '8 seconds')) AS offsets(o)) \
               GROUP BY 1, 2) \
             GROUP BY ws"
        }
        _ => return None,
    })
}

/// DataFusion's SQL for the `daily_app_stats` output of `game_daily.sql`.
pub const GAME_DAILY_APP_STATS: &str = "\
    SELECT app_id, date_bin(INTERVAL '1 day', ts, TIMESTAMP '1970-01-01') AS day_start, \
      date_bin(INTERVAL '1 day', ts, TIMESTAMP '1970-01-01') + INTERVAL '1 day' AS day_end, \
      count(DISTINCT player_id), count(*) FILTER (WHERE event = 'session_start'), \
      coalesce(sum(duration_s), 0), coalesce(sum(amount), 0) \
    FROM events \
    WHERE player_id IS NOT NULL AND app_id IS NOT NULL \
      AND event IN ('session_start', 'level_up', 'purchase', 'session_end') \
    GROUP BY 1, 2, 3";

/// DataFusion's SQL for the `bad_events` output of `game_daily.sql`.
pub const GAME_BAD_EVENTS: &str = "\
    SELECT * FROM events WHERE player_id IS NULL OR app_id IS NULL OR event IS NULL \
      OR event NOT IN ('session_start', 'level_up', 'purchase', 'session_end')";

/// DataFusion's SQL for the `playtime_distribution` output of `game_daily.sql`.
pub const GAME_PLAYTIME_DISTRIBUTION: &str = "\
    SELECT app_id, day_start, \
      CASE WHEN play_time_s < 600 THEN '0-10 min' WHEN play_time_s < 1800 THEN '10-30 min' \
           WHEN play_time_s < 3600 THEN '30-60 min' ELSE '60+ min' END AS bucket, \
      count(*) AS players \
    FROM (SELECT app_id, player_id, date_bin(INTERVAL '1 day', ts, TIMESTAMP '1970-01-01') AS day_start, \
            coalesce(sum(duration_s), 0) AS play_time_s \
          FROM events \
          WHERE player_id IS NOT NULL AND app_id IS NOT NULL \
            AND event IN ('session_start', 'level_up', 'purchase', 'session_end') \
          GROUP BY 1, 2, 3) \
    GROUP BY 1, 2, 3";
