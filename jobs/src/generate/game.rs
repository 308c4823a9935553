//! Mobile-game SDK events: the seed use case.
//!
//! Rows are `(app_id, player_id, event, duration_s, amount, ts)` over `days`
//! days from 2026-01-01 UTC. Events are `session_start`, `level_up`,
//! `purchase` (with `amount`) and `session_end` (with the session's
//! `duration_s`). The same arguments always give the same rows.
//!
//! # The model
//!
//! Players, not events, come first, and they behave like the players of a
//! free-to-play game: most try it once, a few play every day, and a few
//! pay.
//!
//! - **Players** each play one app (`player_id % 4`). A player is active on
//!   `k` of the `days` days, `k` drawn with `P(k) ∝ k^-1.5` (a Zipf law): over
//!   3 days about 65 % of players play on one day only and 12 % on all
//!   three. Their engagement `e = (k - 1) / (days - 1)` (0 for one-day
//!   players, 1 for daily ones) drives the rest.
//! - **Sessions** per active day: 1 plus a geometric number with continuation
//!   probability `0.3 + 0.4 e` (1.4 a day on average for one-day players,
//!   3.3 for daily ones). A session starts at a time of day drawn from a
//!   curve that peaks at 20:00 UTC and is lowest at 08:00, after the
//!   player's previous session of that day; its length is log-normal with a
//!   median of `4 (1 + 1.5 e)` minutes and σ = 1, between 10 s and 4 h. A
//!   player's daily play time therefore ranges from seconds to hours, most
//!   of it under 10 minutes.
//! - **Payers** are `2 % + 10 % e` of players; each session of a payer has a
//!   purchase with probability 0.35, and another after each with the same
//!   probability, so over 3 days about 3 % of players buy something. Prices are app-store
//!   price points from 0.99 to 99.99, cheap ones far more often; one payer
//!   in ten is a "whale" who buys from the dearer points.
//! - **Level-ups** fill the event count: `events` minus the session,
//!   purchase and malformed events, spread over the sessions in proportion
//!   to their length (one per two minutes of play on average). So the player
//!   base grows with `events`: over 3 days, about one player per 25 events,
//!   and on any one day about half of an app's players play.
//! - **Malformed events**, as real SDK traffic has: 1 % are an unknown event
//!   (`crash_report_v0`) inside a session, and 1 % of all events lose their
//!   player id.
//!
//! Events come out in time order up to a jitter of ±2 s, within the demo
//! job's 5 s watermark bound, and every session ends inside the `days`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_engine::{Result, SluiceError};

use super::{Destination, FileFormat};
use crate::generate::nexmark::BASE_TIME_MS;

pub const APPS: [&str; 4] = ["puzzle_quest", "space_miner", "word_duel", "kart_blitz"];
pub const EVENTS: [&str; 4] = ["session_start", "level_up", "purchase", "session_end"];
/// The malformed event name the generator mixes in.
pub const UNKNOWN_EVENT: &str = "crash_report_v0";

/// The exponent of the Zipf law of a player's active days.
const ACTIVE_DAYS_EXPONENT: f64 = 1.5;
/// Median session length of a one-day player, seconds.
const SESSION_MEDIAN_S: f64 = 240.0;
const SESSION_SIGMA: f64 = 1.0;
const SESSION_MIN_S: f64 = 10.0;
const SESSION_MAX_S: f64 = 4.0 * 3600.0;
/// Least pause between two sessions of one player, milliseconds.
const SESSION_GAP_MS: i64 = 60_000;
/// Seconds of play per level-up, on average.
const LEVEL_UP_EVERY_S: f64 = 120.0;
const PURCHASE_PROBABILITY: f64 = 0.35;
const PRICES: [f64; 7] = [0.99, 1.99, 4.99, 9.99, 19.99, 49.99, 99.99];
const PRICE_WEIGHTS: [u32; 7] = [35, 20, 20, 12, 8, 4, 1];
/// How far out of order an event may come, milliseconds.
const JITTER_MS: i64 = 2_000;
const DAY_MS: i64 = 86_400_000;

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("app_id", DataType::Utf8, true),
        Field::new("player_id", DataType::Int64, true),
        Field::new("event", DataType::Utf8, true),
        Field::new("duration_s", DataType::Float64, true),
        Field::new("amount", DataType::Float64, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

/// Writes `events` game events over `days` days into `out/events`.
pub fn generate(
    out: &Path,
    events: u64,
    days: u32,
    files: usize,
    format: FileFormat,
) -> Result<u64> {
    generate_to(
        &Destination::Files {
            dir: out.to_path_buf(),
            files,
            format,
        },
        events,
        days,
    )
}

/// Generates `events` game events over `days` days as the table `events`
/// of `destination`.
pub fn generate_to(destination: &Destination, events: u64, days: u32) -> Result<u64> {
    const CHUNK: usize = 64 * 1024;
    let schema = schema();
    let mut writer = destination.table("events", Arc::clone(&schema), events, events)?;
    let mut rng = SmallRng::seed_from_u64(42);
    let plan = Plan::new(&mut rng, events, days.max(1));
    // Jitter and lost ids from a generator of their own.
    let mut noise = SmallRng::seed_from_u64(43);
    let mut batch = EventBatch::default();
    let mut written = 0;
    for event in plan.events(&mut rng).take(events as usize) {
        batch.push(&event, &mut noise);
        written += 1;
        if batch.rows == CHUNK {
            writer.write(&batch.finish(&schema)?)?;
        }
    }
    if batch.rows > 0 {
        writer.write(&batch.finish(&schema)?)?;
    }
    writer.finish()?;
    Ok(written)
}

/// One player's session: when, how long, and what happens in it.
#[derive(Debug, Clone, Copy)]
struct Session {
    start_ms: i64,
    duration_ms: i64,
    player: u32,
    /// Its purchases' prices are `purchases` prices from `first_price` on.
    first_price: usize,
    purchases: u16,
    level_ups: u32,
    crashes: u32,
}

/// Every session of the data set, in start order, with event counts that
/// add up to the requested number of events.
struct Plan {
    sessions: Vec<Session>,
    prices: Vec<f64>,
}

impl Plan {
    fn new(rng: &mut SmallRng, events: u64, days: u32) -> Self {
        let limit_ms = i64::from(days) * DAY_MS - JITTER_MS - 1;
        let crashes = events / 100;
        let target = events.saturating_sub(crashes) as f64;
        let mut sessions = Vec::new();
        let mut prices = Vec::new();
        let mut nominal = 0.0;
        let mut player = 0u32;
        while nominal < target {
            nominal += add_player(rng, player, days, limit_ms, &mut sessions, &mut prices);
            player += 1;
        }
        sessions.sort_by_key(|s| (s.start_ms, s.player));
        let fixed = sessions
            .iter()
            .map(|s| 2 + u64::from(s.purchases))
            .sum::<u64>()
            + crashes;
        spread(
            &mut sessions,
            events.saturating_sub(fixed),
            |s| s.duration_ms as f64,
            |s, n| s.level_ups = n,
        );
        spread(&mut sessions, crashes, |_| 1.0, |s, n| s.crashes = n);
        Self { sessions, prices }
    }

    /// The events of all sessions in time order.
    fn events<'a>(&'a self, rng: &'a mut SmallRng) -> impl Iterator<Item = Event> + 'a {
        TimeOrder {
            plan: self,
            rng,
            next_session: 0,
            pending: BinaryHeap::new(),
            made: 0,
        }
    }
}

/// Adds one player's sessions; returns how many events they should hold.
fn add_player(
    rng: &mut SmallRng,
    player: u32,
    days: u32,
    limit_ms: i64,
    sessions: &mut Vec<Session>,
    prices: &mut Vec<f64>,
) -> f64 {
    let active = active_days(rng, days);
    let engagement = if days > 1 {
        f64::from(active - 1) / f64::from(days - 1)
    } else {
        0.0
    };
    let payer = rng.random_bool(0.02 + 0.1 * engagement);
    let whale = payer && rng.random_bool(0.1);
    let median_s = SESSION_MEDIAN_S * (1.0 + 1.5 * engagement);
    let mut nominal = 0.0;
    for day in pick_days(rng, active, days) {
        let mut count = 1;
        while rng.random_bool(0.3 + 0.4 * engagement) {
            count += 1;
        }
        let mut starts: Vec<i64> = (0..count)
            .map(|_| i64::from(day) * DAY_MS + time_of_day(rng))
            .collect();
        starts.sort_unstable();
        let mut free_from = i64::MIN;
        for start in starts {
            let duration_s = (median_s * (SESSION_SIGMA * standard_normal(rng)).exp())
                .clamp(SESSION_MIN_S, SESSION_MAX_S)
                .round();
            let duration_ms = duration_s as i64 * 1000;
            // After the previous session, and over before the last day is.
            let start_ms = start.max(free_from).min(limit_ms - duration_ms).max(0);
            free_from = start_ms + duration_ms + SESSION_GAP_MS;
            let first_price = prices.len();
            while payer && prices.len() - first_price < 10 && rng.random_bool(PURCHASE_PROBABILITY)
            {
                prices.push(price(rng, whale));
            }
            let purchases = (prices.len() - first_price) as u16;
            nominal += 2.0 + f64::from(purchases) + duration_s / LEVEL_UP_EVERY_S;
            sessions.push(Session {
                start_ms: BASE_TIME_MS as i64 + start_ms,
                duration_ms,
                player,
                first_price,
                purchases,
                level_ups: 0,
                crashes: 0,
            });
        }
    }
    nominal
}

/// How many days a player plays: `k` in `1..=days` with `P(k) ∝ k^-1.5`.
fn active_days(rng: &mut SmallRng, days: u32) -> u32 {
    let weight = |k: u32| f64::from(k).powf(-ACTIVE_DAYS_EXPONENT);
    let total: f64 = (1..=days).map(weight).sum();
    let mut left = rng.random::<f64>() * total;
    for k in 1..=days {
        left -= weight(k);
        if left < 0.0 {
            return k;
        }
    }
    days
}

/// `count` distinct days of `0..days`, in order.
fn pick_days(rng: &mut SmallRng, count: u32, days: u32) -> Vec<u32> {
    let mut all: Vec<u32> = (0..days).collect();
    for i in 0..count as usize {
        let j = rng.random_range(i..all.len());
        all.swap(i, j);
    }
    all.truncate(count as usize);
    all.sort_unstable();
    all
}

/// A time of day, milliseconds, more often in the evening: density
/// `1 + 0.6 cos(2π (t - 20 h) / 24 h)`.
fn time_of_day(rng: &mut SmallRng) -> i64 {
    loop {
        let t = rng.random_range(0..DAY_MS);
        let phase = (t as f64 / DAY_MS as f64 - 20.0 / 24.0) * std::f64::consts::TAU;
        if rng.random::<f64>() * 1.6 < 1.0 + 0.6 * phase.cos() {
            return t;
        }
    }
}

/// A standard normal sample (Box-Muller).
fn standard_normal(rng: &mut SmallRng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// One purchase's price; whales buy from the dearer points.
fn price(rng: &mut SmallRng, whale: bool) -> f64 {
    let skip = if whale { 3 } else { 0 };
    let weights = &PRICE_WEIGHTS[skip..];
    let mut left = rng.random_range(0..weights.iter().sum::<u32>());
    for (i, w) in weights.iter().enumerate() {
        if left < *w {
            return PRICES[skip + i];
        }
        left -= w;
    }
    PRICES[PRICES.len() - 1]
}

/// Shares `total` out over the sessions in proportion to `weight`, exactly:
/// each takes what its running sum rounds to, less what went before.
fn spread(
    sessions: &mut [Session],
    total: u64,
    weight: impl Fn(&Session) -> f64,
    mut set: impl FnMut(&mut Session, u32),
) {
    let sum: f64 = sessions.iter().map(&weight).sum();
    if sum <= 0.0 {
        return;
    }
    let mut running = 0.0;
    let mut given = 0u64;
    let last = sessions.len().saturating_sub(1);
    for (i, s) in sessions.iter_mut().enumerate() {
        running += weight(s);
        let upto = if i == last {
            total
        } else {
            ((running / sum) * total as f64).round() as u64
        };
        let n = upto.saturating_sub(given);
        given += n;
        set(s, u32::try_from(n).unwrap_or(u32::MAX));
    }
}

/// What happened, to whom and when.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Event {
    at_ms: i64,
    player: u32,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    SessionStart,
    LevelUp,
    Purchase { amount: f64 },
    SessionEnd { duration_s: f64 },
    Crash,
}

/// An event waiting for its turn, ordered by time, then by when it was
/// made, so that the output does not depend on the heap.
struct Queued {
    made: u64,
    event: Event,
}

impl Queued {
    fn key(&self) -> (i64, u64) {
        (self.event.at_ms, self.made)
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// Merges the sessions' events into time order: a session's events wait
/// in a heap until no later-starting session can come before them, so
/// the heap holds only the sessions open at one time.
struct TimeOrder<'a> {
    plan: &'a Plan,
    rng: &'a mut SmallRng,
    next_session: usize,
    pending: BinaryHeap<Reverse<Queued>>,
    made: u64,
}

impl TimeOrder<'_> {
    fn push(&mut self, at_ms: i64, player: u32, kind: Kind) {
        self.made += 1;
        self.pending.push(Reverse(Queued {
            made: self.made,
            event: Event {
                at_ms,
                player,
                kind,
            },
        }));
    }

    fn open(&mut self, s: Session) {
        let end = s.start_ms + s.duration_ms.max(1);
        self.push(s.start_ms, s.player, Kind::SessionStart);
        for _ in 0..s.level_ups {
            let at = self.rng.random_range(s.start_ms..end);
            self.push(at, s.player, Kind::LevelUp);
        }
        let plan = self.plan;
        let prices = plan
            .prices
            .get(s.first_price..s.first_price + usize::from(s.purchases))
            .unwrap_or_default();
        for &amount in prices {
            let at = self.rng.random_range(s.start_ms..end);
            self.push(at, s.player, Kind::Purchase { amount });
        }
        for _ in 0..s.crashes {
            let at = self.rng.random_range(s.start_ms..end);
            self.push(at, s.player, Kind::Crash);
        }
        let duration_s = (s.duration_ms / 1000) as f64;
        self.push(end, s.player, Kind::SessionEnd { duration_s });
    }
}

impl Iterator for TimeOrder<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            let next = self.plan.sessions.get(self.next_session).copied();
            let ready = match (self.pending.peek(), &next) {
                (Some(Reverse(q)), Some(s)) => q.event.at_ms < s.start_ms,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if ready {
                return self.pending.pop().map(|Reverse(q)| q.event);
            }
            self.next_session += 1;
            self.open(next?);
        }
    }
}

/// Columns being filled for the next batch.
#[derive(Default)]
struct EventBatch {
    app: StringBuilder,
    player: Int64Builder,
    event: StringBuilder,
    duration: Float64Builder,
    amount: Float64Builder,
    ts: TimestampMillisecondBuilder,
    rows: usize,
}

impl EventBatch {
    /// Adds one event, with its jitter and, for 1 % of events, no player id.
    fn push(&mut self, e: &Event, rng: &mut SmallRng) {
        let jitter = rng.random_range(-JITTER_MS..=JITTER_MS);
        self.ts
            .append_value((e.at_ms + jitter).max(BASE_TIME_MS as i64));
        self.app.append_value(APPS[e.player as usize % APPS.len()]);
        if rng.random_range(0..100) == 0 {
            self.player.append_null();
        } else {
            self.player.append_value(i64::from(e.player));
        }
        let (name, duration, amount) = match e.kind {
            Kind::SessionStart => (EVENTS[0], None, None),
            Kind::LevelUp => (EVENTS[1], None, None),
            Kind::Purchase { amount } => (EVENTS[2], None, Some(amount)),
            Kind::SessionEnd { duration_s } => (EVENTS[3], Some(duration_s), None),
            Kind::Crash => (UNKNOWN_EVENT, None, None),
        };
        self.event.append_value(name);
        self.duration.append_option(duration);
        self.amount.append_option(amount);
        self.rows += 1;
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch> {
        self.rows = 0;
        RecordBatch::try_new(
            Arc::clone(schema),
            vec![
                Arc::new(self.app.finish()),
                Arc::new(self.player.finish()),
                Arc::new(self.event.finish()),
                Arc::new(self.duration.finish()),
                Arc::new(self.amount.finish()),
                Arc::new(self.ts.finish()),
            ],
        )
        .map_err(|e| SluiceError::Data(format!("building game events: {e}")))
    }
}

#[cfg(test)]
mod tests {
    //! The model's promises, checked with DataFusion's SQL over the files.

    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Float64Type;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};

    use super::*;

    /// A generated data set and a runtime to query it on.
    struct Data {
        dir: tempfile::TempDir,
        runtime: tokio::runtime::Runtime,
    }

    impl Data {
        fn new(events: u64, days: u32) -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let written =
                generate(dir.path(), events, days, 2, FileFormat::Parquet).expect("generate");
            assert_eq!(written, events);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            Self { dir, runtime }
        }

        /// The first row of `sql` over the table `events`, as f64s.
        fn row(&self, sql: &str) -> Vec<f64> {
            let batches = self.runtime.block_on(async {
                let ctx = SessionContext::new();
                let path = self.dir.path().join("events");
                ctx.register_parquet(
                    "events",
                    path.to_str().expect("utf-8"),
                    ParquetReadOptions::default(),
                )
                .await
                .expect("register");
                ctx.sql(sql)
                    .await
                    .expect("plan")
                    .collect()
                    .await
                    .expect("run")
            });
            let batch = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
            batch
                .columns()
                .iter()
                .map(|c| {
                    let c = arrow::compute::cast(c, &DataType::Float64).expect("numeric");
                    let c = c.as_primitive::<Float64Type>();
                    assert!(c.is_valid(0), "{sql} gave NULL");
                    c.value(0)
                })
                .collect()
        }
    }

    const VALID: &str = "player_id IS NOT NULL AND event <> 'crash_report_v0'";

    #[test]
    fn most_players_play_one_day_and_few_play_every_day() {
        let data = Data::new(200_000, 3);
        let row = data.row(&format!(
            "SELECT count(*) FILTER (WHERE days = 1) * 1.0 / count(*), \
                    count(*) FILTER (WHERE days = 3) * 1.0 / count(*) \
             FROM (SELECT player_id, count(DISTINCT date_trunc('day', ts)) AS days \
                   FROM events WHERE {VALID} GROUP BY player_id)"
        ));
        let (once, daily) = (row[0], row[1]);
        assert!((0.5..0.8).contains(&once), "one-day players: {once}");
        assert!((0.05..0.2).contains(&daily), "daily players: {daily}");
    }

    #[test]
    fn daily_active_players_are_a_fraction_of_the_base() {
        let data = Data::new(200_000, 3);
        let row = data.row(&format!(
            "SELECT max(active) * 1.0 / (SELECT count(DISTINCT player_id) FROM events \
                                          WHERE {VALID} AND app_id = 'word_duel') \
             FROM (SELECT date_trunc('day', ts), count(DISTINCT player_id) AS active \
                   FROM events WHERE {VALID} AND app_id = 'word_duel' GROUP BY 1)"
        ));
        assert!(row[0] < 0.7, "the busiest day has {} of the base", row[0]);
    }

    #[test]
    fn sessions_and_daily_play_time_vary_widely() {
        let data = Data::new(200_000, 3);
        let sessions = data.row(
            "SELECT approx_percentile_cont(duration_s, 0.1), approx_percentile_cont(duration_s, 0.5), \
                    approx_percentile_cont(duration_s, 0.9), min(duration_s), max(duration_s) \
             FROM events WHERE event = 'session_end'",
        );
        let (p10, p50, p90) = (sessions[0], sessions[1], sessions[2]);
        assert!((120.0..900.0).contains(&p50), "median session {p50} s");
        assert!(p90 / p10 > 8.0, "p10 {p10} s, p90 {p90} s");
        assert!(sessions[3] >= SESSION_MIN_S && sessions[4] <= SESSION_MAX_S);
        // Per player and day, as the demo's buckets see it.
        let daily = data.row(&format!(
            "SELECT avg(CASE WHEN play < 600 THEN 1.0 ELSE 0.0 END), \
                    avg(CASE WHEN play >= 3600 THEN 1.0 ELSE 0.0 END), avg(play) \
             FROM (SELECT player_id, date_trunc('day', ts), coalesce(sum(duration_s), 0) AS play \
                   FROM events WHERE {VALID} GROUP BY 1, 2)"
        ));
        assert!(daily[0] > 0.3, "under 10 minutes: {}", daily[0]);
        assert!((0.01..0.2).contains(&daily[1]), "60+ minutes: {}", daily[1]);
        assert!(daily[2] < 3600.0, "mean daily play {} s", daily[2]);
    }

    #[test]
    fn a_few_percent_of_players_pay_and_spend_is_skewed() {
        let data = Data::new(200_000, 3);
        let row = data.row(&format!(
            "SELECT count(DISTINCT player_id) FILTER (WHERE event = 'purchase') * 1.0 \
                      / count(DISTINCT player_id), \
                    (SELECT approx_percentile_cont(spend, 0.5) FROM \
                       (SELECT sum(amount) AS spend FROM events WHERE {VALID} AND event = 'purchase' \
                        GROUP BY player_id)), \
                    (SELECT max(spend) FROM \
                       (SELECT sum(amount) AS spend FROM events WHERE {VALID} AND event = 'purchase' \
                        GROUP BY player_id)) \
             FROM events WHERE {VALID}"
        ));
        let (share, median, top) = (row[0], row[1], row[2]);
        assert!((0.01..0.08).contains(&share), "paying players: {share}");
        assert!(top > 10.0 * median, "median spend {median}, top {top}");
    }

    #[test]
    fn malformed_events_are_about_two_percent_and_times_stay_in_range() {
        let data = Data::new(50_000, 2);
        let row = data.row(
            "SELECT count(*) FILTER (WHERE event = 'crash_report_v0'), \
                    count(*) FILTER (WHERE player_id IS NULL), \
                    count(*) FILTER (WHERE ts < TIMESTAMP '2026-01-01' OR ts >= TIMESTAMP '2026-01-03'), \
                    count(*) \
             FROM events",
        );
        assert_eq!(row[0], 500.0, "one event in 100 is unknown");
        assert!((350.0..650.0).contains(&row[1]), "lost ids: {}", row[1]);
        assert_eq!(row[2], 0.0, "every event falls in the two days");
        assert_eq!(row[3], 50_000.0);
    }

    #[test]
    fn events_come_in_time_order_and_alike_each_run() {
        let mut rng = SmallRng::seed_from_u64(42);
        let plan = Plan::new(&mut rng, 20_000, 3);
        let events: Vec<Event> = plan.events(&mut rng).collect();
        assert_eq!(events.len(), 20_000);
        assert!(events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        let mut again = SmallRng::seed_from_u64(42);
        let replay = Plan::new(&mut again, 20_000, 3);
        assert!(replay.events(&mut again).eq(events.iter().copied()));
    }

    #[test]
    fn the_plan_holds_exactly_the_events_asked_for() {
        for (events, days) in [(100, 1), (1_000, 3), (12_345, 7)] {
            let mut rng = SmallRng::seed_from_u64(42);
            let plan = Plan::new(&mut rng, events, days);
            assert_eq!(
                plan.events(&mut rng).count() as u64,
                events,
                "{events} over {days}"
            );
        }
        // Too few for whole sessions: `generate_to` cuts the last ones short.
        for events in [0, 1, 7] {
            let mut rng = SmallRng::seed_from_u64(42);
            let plan = Plan::new(&mut rng, events, 1);
            assert!(plan.events(&mut rng).count() as u64 >= events);
        }
    }
}
