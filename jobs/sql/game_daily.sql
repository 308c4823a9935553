-- Daily game analytics, the seed use case.
--
-- Per app and day: daily active players, sessions, play time and revenue;
-- the distribution of players by daily play time (a window cascaded over a
-- window); and a split that sends malformed or unknown events to their own
-- sink. Run it with `sluice demo`, or:
--   sluice run jobs/sql/game_daily.sql --set DATA=data/game --set OUT=out/game_daily
SET 'pipeline.name' = 'game_daily';

CREATE TABLE events (
  app_id     STRING,
  player_id  BIGINT,
  event      STRING,
  duration_s DOUBLE,
  amount     DOUBLE,
  ts         TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = '${DATA}/events',
  'format' = 'parquet'
);

CREATE TABLE daily_app_stats (
  app_id         STRING,
  day_start      TIMESTAMP(3),
  day_end        TIMESTAMP(3),
  active_players BIGINT,
  sessions       BIGINT,
  play_time_s    DOUBLE,
  revenue        DOUBLE
) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT}/daily_app_stats',
  'format' = 'parquet'
);

CREATE TABLE playtime_distribution (
  app_id    STRING,
  day_start TIMESTAMP(3),
  bucket    STRING,
  players   BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT}/playtime_distribution',
  'format' = 'parquet'
);

CREATE TABLE bad_events (
  app_id     STRING,
  player_id  BIGINT,
  event      STRING,
  duration_s DOUBLE,
  amount     DOUBLE,
  ts         TIMESTAMP(3)
) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT}/bad_events',
  'format' = 'parquet'
);

CREATE VIEW valid_events AS
SELECT * FROM events
WHERE player_id IS NOT NULL
  AND app_id IS NOT NULL
  AND event IN ('session_start', 'level_up', 'purchase', 'session_end');

-- The split: whatever is not a valid event goes aside, never silently away.
INSERT INTO bad_events
SELECT * FROM events
WHERE player_id IS NULL
   OR app_id IS NULL
   OR event IS NULL
   OR event NOT IN ('session_start', 'level_up', 'purchase', 'session_end');

INSERT INTO daily_app_stats
SELECT
  app_id,
  window_start,
  window_end,
  COUNT(DISTINCT player_id),
  COUNT(*) FILTER (WHERE event = 'session_start'),
  COALESCE(SUM(duration_s), 0),
  COALESCE(SUM(amount), 0)
FROM TABLE(TUMBLE(TABLE valid_events, DESCRIPTOR(ts), INTERVAL '1' DAY))
GROUP BY app_id, window_start, window_end;

-- Play time per player and day; `window_time` is the rowtime of each row,
-- so a second window can group these rows again.
CREATE VIEW player_daily AS
SELECT
  app_id,
  player_id,
  window_time AS rowtime,
  COALESCE(SUM(duration_s), 0) AS play_time_s
FROM TABLE(TUMBLE(TABLE valid_events, DESCRIPTOR(ts), INTERVAL '1' DAY))
GROUP BY app_id, player_id, window_start, window_end, window_time;

INSERT INTO playtime_distribution
SELECT app_id, window_start, bucket, COUNT(*) AS players
FROM (
  SELECT
    app_id,
    window_start,
    window_end,
    CASE
      WHEN play_time_s < 600 THEN '0-10 min'
      WHEN play_time_s < 1800 THEN '10-30 min'
      WHEN play_time_s < 3600 THEN '30-60 min'
      ELSE '60+ min'
    END AS bucket
  FROM TABLE(TUMBLE(TABLE player_daily, DESCRIPTOR(rowtime), INTERVAL '1' DAY))
)
GROUP BY app_id, window_start, window_end, bucket;
