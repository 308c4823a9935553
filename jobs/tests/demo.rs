//! `sluice demo` as a new user runs it: generated data that looks like a
//! game's, and results sorted and readable.

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::prelude::{ParquetReadOptions, SessionContext};

const BUCKETS: [&str; 4] = ["0-10 min", "10-30 min", "30-60 min", "60+ min"];

#[test]
fn the_demo_runs_the_built_in_job_and_prints_sorted_readable_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("demo")
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("out"))
        .args(["--events", "20000"])
        .output()
        .expect("run sluice demo");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("generating 20000 game events"), "{stderr}");
    assert!(
        stderr.contains("running the built-in copy of jobs/sql/game_daily.sql"),
        "{stderr}"
    );
    assert!(stderr.contains("20000 rows in"), "{stderr}");

    let stats = section(&stdout, "daily_app_stats: 12 rows");
    assert_eq!(
        stats.header,
        [
            "app_id",
            "day",
            "active players",
            "sessions",
            "play time (h)",
            "min per player",
            "revenue"
        ]
    );
    assert_eq!(stats.rows.len(), 12, "4 apps over 3 days:\n{stdout}");
    let keys: Vec<(&str, &str)> = stats.rows.iter().map(|r| (r[0], r[1])).collect();
    assert!(keys.is_sorted(), "by app and day:\n{stdout}");
    for row in &stats.rows {
        let (_, cents) = row[6].split_once('.').expect("revenue has cents");
        assert_eq!(cents.len(), 2, "revenue in cents: {}", row[6]);
    }

    // Players do not all play every day: each day's active players are
    // well under the app's players over the three days, counted here from
    // the generated events by DataFusion.
    let base = players_per_app(&data.join("events"));
    assert_eq!(base.len(), 4, "{base:?}");
    let mut active: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for row in &stats.rows {
        let players: i64 = row[2].parse().expect("active players");
        let of = base[row[0]];
        assert!(
            players * 10 < of * 8,
            "{} on {}: {players} of {of} players active",
            row[0],
            row[1]
        );
        active.insert((row[0], row[1]), players);
        let minutes: f64 = row[5].parse().expect("minutes per player");
        assert!(minutes < 60.0, "{minutes} min per player and day");
    }

    let distribution = section(&stdout, "playtime_distribution:");
    assert_eq!(distribution.header[..2], ["app_id", "day"]);
    assert_eq!(distribution.header[2..], BUCKETS, "buckets in their order");
    let keys: Vec<(&str, &str)> = distribution.rows.iter().map(|r| (r[0], r[1])).collect();
    assert!(keys.is_sorted(), "by app and day:\n{stdout}");
    for row in &distribution.rows {
        let counts: Vec<i64> = row[2..].iter().map(|c| c.parse().expect("count")).collect();
        assert_eq!(
            counts.iter().sum::<i64>(),
            active[&(row[0], row[1])],
            "each active player in one bucket: {row:?}"
        );
        assert!(
            counts[0] > counts[3],
            "more players under 10 minutes than over an hour: {row:?}"
        );
    }

    assert!(stdout.contains("bad_events:"), "{stdout}");
    assert!(stdout.contains("crash_report_v0"), "{stdout}");
}

/// A table the demo prints: its header's columns and its rows' cells.
struct Section<'a> {
    header: Vec<&'a str>,
    rows: Vec<Vec<&'a str>>,
}

/// The table under the line that starts with `title`: a header, a rule of
/// dashes, then rows up to a blank line. Columns are two spaces apart.
fn section<'a>(stdout: &'a str, title: &str) -> Section<'a> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with(title)).skip(1);
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no `{title}` in:\n{stdout}"));
    let header = header
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let rows = lines
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    Section { header, rows }
}

fn players_per_app(events: &Path) -> BTreeMap<String, i64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let ctx = SessionContext::new();
        ctx.register_parquet(
            "events",
            events.to_str().expect("utf-8"),
            ParquetReadOptions::default(),
        )
        .await
        .expect("register");
        let batches = ctx
            .sql(
                "SELECT app_id, count(DISTINCT player_id) FROM events \
                 WHERE player_id IS NOT NULL GROUP BY app_id",
            )
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let mut base = BTreeMap::new();
        for b in &batches {
            let apps = cast(b.column(0), &DataType::Utf8).expect("app ids as text");
            let apps = apps
                .as_string::<i32>()
                .iter()
                .map(|a| a.unwrap_or_default());
            let counts = b.column(1).as_primitive::<Int64Type>();
            for (app, n) in apps.zip(counts.values()) {
                base.insert(app.to_string(), *n);
            }
        }
        base
    })
}
