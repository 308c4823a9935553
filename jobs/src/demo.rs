//! `sluice demo`: the game analytics job end to end, and its results as a
//! person wants to read them.
//!
//! The demo generates game events when `--data` has none, runs the copy
//! of `jobs/sql/game_daily.sql` built into the binary, and prints each
//! output table sorted: the daily figures per app and day with money in
//! cents, the play-time distribution as one row per app and day with its
//! buckets in their numeric order, and the first malformed events.
//!
//! It runs the built-in copy rather than the file on disk because the
//! report below reads that job's tables and columns by name: the demo
//! then works from any directory and cannot be broken by an edited file,
//! which `sluice run jobs/sql/game_daily.sql` runs instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use arrow::record_batch::RecordBatch;
use sluice::JobSpec;
use sluice::generate::{self, FileFormat};
use sluice_engine::sql::Mode;

/// The job the demo runs, as it was when the binary was built.
const GAME_DAILY: &str = include_str!("../sql/game_daily.sql");
const JOB_PATH: &str = "jobs/sql/game_daily.sql";
/// Malformed events shown.
const BAD_EVENTS_SHOWN: usize = 5;

pub async fn run(data: &Path, out: &Path, events: u64, mode: Mode) -> Result<()> {
    if data.join("events").exists() {
        eprintln!(
            "sluice demo: using the events already in {} (remove it to generate new ones)",
            data.display()
        );
    } else {
        eprintln!(
            "sluice demo: generating {events} game events into {}",
            data.display()
        );
        generate::game::generate(data, events, 3, 4, FileFormat::Parquet)?;
    }
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("clearing {}", out.display()))?;
    }
    eprintln!(
        "sluice demo: running the built-in copy of {JOB_PATH} in {mode} mode \
         (to run your own: sluice run {JOB_PATH} --set DATA={} --set OUT={})",
        data.display(),
        out.display()
    );
    let spec = JobSpec::from_text(JOB_PATH, GAME_DAILY)
        .with_mode(mode)
        .with_var("DATA", &data.display().to_string())
        .with_var("OUT", &out.display().to_string());
    crate::run_job(&spec).await?;

    let dir = out.join("daily_app_stats");
    let stats = daily_stats(&read_parquet_dir(&dir)?)?;
    println!(
        "\ndaily_app_stats: {} rows in {}, per app and day",
        stats.len(),
        dir.display()
    );
    print!("{}", stats_table(&stats));

    let dir = out.join("playtime_distribution");
    let counts = bucket_counts(&read_parquet_dir(&dir)?)?;
    println!(
        "\nplaytime_distribution: {} rows in {}, players per app and day by daily play time",
        counts.len(),
        dir.display()
    );
    print!("{}", distribution_table(&counts));

    let dir = out.join("bad_events");
    let bad = read_parquet_dir(&dir)?;
    let rows: usize = bad.iter().map(RecordBatch::num_rows).sum();
    println!(
        "\nbad_events: {rows} rows in {}, the first {} in time order",
        dir.display(),
        rows.min(BAD_EVENTS_SHOWN)
    );
    if rows > 0 {
        let first = first_by_time(&bad, BAD_EVENTS_SHOWN)?;
        println!("{}", arrow::util::pretty::pretty_format_batches(&[first])?);
    }
    Ok(())
}

/// One row of `daily_app_stats`.
#[derive(Debug, Clone, PartialEq)]
struct DayStats {
    app: String,
    day: String,
    active_players: i64,
    sessions: i64,
    play_time_s: f64,
    revenue: f64,
}

/// One row of `playtime_distribution`.
#[derive(Debug, Clone, PartialEq)]
struct BucketCount {
    app: String,
    day: String,
    bucket: String,
    players: i64,
}

/// The rows of `daily_app_stats`, by app and day.
fn daily_stats(batches: &[RecordBatch]) -> Result<Vec<DayStats>> {
    let mut rows = Vec::new();
    for b in batches {
        let app = strings(b, "app_id")?;
        let day = days(b, "day_start")?;
        let active = integers(b, "active_players")?;
        let sessions = integers(b, "sessions")?;
        let play = floats(b, "play_time_s")?;
        let revenue = floats(b, "revenue")?;
        for i in 0..b.num_rows() {
            rows.push(DayStats {
                app: app[i].clone(),
                day: day[i].clone(),
                active_players: active[i],
                sessions: sessions[i],
                play_time_s: play[i],
                revenue: revenue[i],
            });
        }
    }
    rows.sort_by(|a, b| (&a.app, &a.day).cmp(&(&b.app, &b.day)));
    Ok(rows)
}

/// The rows of `playtime_distribution`, in no particular order.
fn bucket_counts(batches: &[RecordBatch]) -> Result<Vec<BucketCount>> {
    let mut rows = Vec::new();
    for b in batches {
        let app = strings(b, "app_id")?;
        let day = days(b, "day_start")?;
        let bucket = strings(b, "bucket")?;
        let players = integers(b, "players")?;
        for i in 0..b.num_rows() {
            rows.push(BucketCount {
                app: app[i].clone(),
                day: day[i].clone(),
                bucket: bucket[i].clone(),
                players: players[i],
            });
        }
    }
    Ok(rows)
}

fn stats_table(rows: &[DayStats]) -> String {
    let header = [
        "app_id",
        "day",
        "active players",
        "sessions",
        "play time (h)",
        "min per player",
        "revenue",
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let per_player = if r.active_players > 0 {
                r.play_time_s / 60.0 / r.active_players as f64
            } else {
                0.0
            };
            vec![
                r.app.clone(),
                r.day.clone(),
                r.active_players.to_string(),
                r.sessions.to_string(),
                format!("{:.1}", r.play_time_s / 3600.0),
                format!("{per_player:.1}"),
                format!("{:.2}", r.revenue),
            ]
        })
        .collect();
    table(&header, &body)
}

/// One row per app and day, a column per bucket in the buckets' order.
fn distribution_table(rows: &[BucketCount]) -> String {
    let mut buckets: Vec<&str> = rows.iter().map(|r| r.bucket.as_str()).collect();
    buckets.sort_by_key(|b| (lower_bound(b), *b));
    buckets.dedup();
    let mut grid: BTreeMap<(&str, &str), BTreeMap<&str, i64>> = BTreeMap::new();
    for r in rows {
        *grid
            .entry((&r.app, &r.day))
            .or_default()
            .entry(&r.bucket)
            .or_default() += r.players;
    }
    let mut header = vec!["app_id", "day"];
    header.extend(&buckets);
    let body: Vec<Vec<String>> = grid
        .iter()
        .map(|((app, day), counts)| {
            let mut row = vec![app.to_string(), day.to_string()];
            row.extend(
                buckets
                    .iter()
                    .map(|b| counts.get(b).copied().unwrap_or(0).to_string()),
            );
            row
        })
        .collect();
    table(&header, &body)
}

/// The number a bucket label starts with: 10 for "10-30 min"; labels
/// without one go last.
fn lower_bound(bucket: &str) -> u64 {
    let digits: String = bucket.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(u64::MAX)
}

/// A plain text table: text columns (the first two) left-aligned, numbers
/// right-aligned.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<String> = cells
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &w))| match i {
                0 | 1 => format!("{cell:<w$}"),
                _ => format!("{cell:>w$}"),
            })
            .collect();
        format!("{}\n", cells.join("  ").trim_end())
    };
    let mut out = line(&mut header.iter().copied());
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    out.push_str(&line(&mut rule.iter().map(String::as_str)));
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// The `n` earliest rows by `ts`, as one batch.
fn first_by_time(batches: &[RecordBatch], n: usize) -> Result<RecordBatch> {
    let first = batches.first().context("no rows to show")?;
    let all = arrow::compute::concat_batches(&first.schema(), batches)?;
    let ts = all
        .column_by_name("ts")
        .context("bad_events has no column ts")?;
    let order = arrow::compute::sort_to_indices(ts, None, Some(n))?;
    Ok(arrow::compute::take_record_batch(&all, &order)?)
}

fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef> {
    let column = batch
        .column_by_name(name)
        .with_context(|| format!("the demo's output has no column {name}"))?;
    arrow::compute::cast(column, to).with_context(|| format!("reading column {name}"))
}

fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<String>> {
    Ok(texts(&column(batch, name, &DataType::Utf8)?))
}

/// A timestamp column as dates, `2026-01-01`.
fn days(batch: &RecordBatch, name: &str) -> Result<Vec<String>> {
    let dates = column(batch, name, &DataType::Date32)?;
    Ok(texts(&arrow::compute::cast(&dates, &DataType::Utf8)?))
}

fn texts(array: &ArrayRef) -> Vec<String> {
    let array = array.as_string::<i32>();
    (0..array.len())
        .map(|i| match array.is_valid(i) {
            true => array.value(i).to_string(),
            false => "NULL".to_string(),
        })
        .collect()
}

fn integers(batch: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    let array = column(batch, name, &DataType::Int64)?;
    let array = array.as_primitive::<Int64Type>();
    Ok((0..array.len())
        .map(|i| if array.is_valid(i) { array.value(i) } else { 0 })
        .collect())
}

fn floats(batch: &RecordBatch, name: &str) -> Result<Vec<f64>> {
    let array = column(batch, name, &DataType::Float64)?;
    let array = array.as_primitive::<Float64Type>();
    Ok((0..array.len())
        .map(|i| {
            if array.is_valid(i) {
                array.value(i)
            } else {
                0.0
            }
        })
        .collect())
}

/// Every row of the Parquet files in `dir`, file by file in name order.
fn read_parquet_dir(dir: &Path) -> Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        bail!("{} was not written", dir.display());
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    paths.sort();
    for path in paths {
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
            .build()?;
        for batch in reader {
            batches.push(batch?);
        }
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(app: &str, day: &str, bucket: &str, players: i64) -> BucketCount {
        BucketCount {
            app: app.into(),
            day: day.into(),
            bucket: bucket.into(),
            players,
        }
    }

    #[test]
    fn buckets_go_in_numeric_order_and_missing_ones_count_zero() {
        let rows = [
            count("b", "2026-01-02", "60+ min", 1),
            count("b", "2026-01-02", "5-10 min", 2),
            count("a", "2026-01-01", "10-30 min", 3),
            count("a", "2026-01-01", "0-5 min", 4),
        ];
        let text = distribution_table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "app_id  day         0-5 min  5-10 min  10-30 min  60+ min"
        );
        assert_eq!(
            lines[2],
            "a       2026-01-01        4         0          3        0"
        );
        assert_eq!(
            lines[3],
            "b       2026-01-02        0         2          0        1"
        );
    }

    #[test]
    fn daily_stats_show_money_in_cents_and_play_time_per_player() {
        let row = DayStats {
            app: "a".into(),
            day: "2026-01-01".into(),
            active_players: 4,
            sessions: 9,
            play_time_s: 5400.0,
            revenue: 12.3456,
        };
        let text = stats_table(&[row]);
        let last = text.lines().last().unwrap_or_default();
        assert_eq!(
            last.split_whitespace().collect::<Vec<_>>(),
            ["a", "2026-01-01", "4", "9", "1.5", "22.5", "12.35"]
        );
    }
}
