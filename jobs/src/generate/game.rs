//! Mobile-game SDK events: the seed use case.
//!
//! Rows are `(app_id, player_id, event, duration_s, amount, ts)` over several
//! days from 2026-01-01 UTC. Events are `session_start`, `level_up`,
//! `purchase` (with `amount`) and `session_end` (with the session's
//! `duration_s`). About 2 % are malformed, as real SDK traffic is: an unknown
//! event name or a missing player id. Times are in order up to a jitter of
//! ±2 s, within the demo job's 5 s watermark bound. The same arguments
//! always give the same rows.

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
    let players = (events / 40).max(10) as i64;
    let span = i64::from(days.max(1)) * 86_400_000;
    let step = span as f64 / events.max(1) as f64;
    let mut app = StringBuilder::new();
    let mut player = Int64Builder::new();
    let mut event = StringBuilder::new();
    let mut duration = Float64Builder::new();
    let mut amount = Float64Builder::new();
    let mut ts = TimestampMillisecondBuilder::new();
    let mut rows = 0;
    for i in 0..events {
        let jitter = rng.random_range(-2_000..=2_000);
        let at = (BASE_TIME_MS as i64 + (i as f64 * step) as i64 + jitter).max(BASE_TIME_MS as i64);
        // Players stick to one app, so per-app counts are stable.
        let who = rng.random_range(0..players);
        app.append_value(APPS[(who % APPS.len() as i64) as usize]);
        let roll = rng.random_range(0..1000);
        let kind = match roll {
            0..=9 => "crash_report_v0",
            10..=259 => "session_start",
            260..=599 => "level_up",
            600..=699 => "purchase",
            _ => "session_end",
        };
        if (10..20).contains(&roll) {
            player.append_null();
        } else {
            player.append_value(who);
        }
        event.append_value(kind);
        match kind {
            "session_end" => duration.append_value(f64::from(rng.random_range(30..3_600u32))),
            _ => duration.append_null(),
        }
        match kind {
            "purchase" => amount.append_value(f64::from(rng.random_range(99..9_999u32)) / 100.0),
            _ => amount.append_null(),
        }
        ts.append_value(at);
        rows += 1;
        if rows == CHUNK || i + 1 == events {
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(app.finish()),
                    Arc::new(player.finish()),
                    Arc::new(event.finish()),
                    Arc::new(duration.finish()),
                    Arc::new(amount.finish()),
                    Arc::new(ts.finish()),
                ],
            )
            .map_err(|e| SluiceError::Data(format!("building game events: {e}")))?;
            writer.write(&batch)?;
            rows = 0;
        }
    }
    writer.finish()?;
    Ok(events)
}
