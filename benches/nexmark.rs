//! Nexmark side by side: Sluice and DataFusion on the same Parquet files.
//!
//! ```text
//! cargo run --release -p sluice-benches --bin nexmark-bench -- \
//!     --events 10000000 --data /tmp/nexmark-10m --parallelism 2
//! ```
//!
//! Generates the data once (8 time-ranged files), then for each query runs
//! Sluice's job file in batch mode and the equivalent DataFusion SQL, in the
//! same process and the same tokio runtime, with the same number of
//! threads/partitions. Each result is checked against the other (row count
//! and an order-independent checksum), so a fast wrong answer cannot pass.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

#[derive(Parser)]
struct Args {
    /// Events to generate (when the data directory has none yet).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    #[arg(long, default_value = "/tmp/sluice-nexmark")]
    data: PathBuf,
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// Queries to run.
    #[arg(long, value_delimiter = ',', default_value = "tumble,hop")]
    queries: Vec<String>,
    /// Runs of each engine per query; the best is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Row count and an order-independent checksum of formatted rows.
fn fingerprint(batches: &[arrow::array::RecordBatch]) -> Result<(usize, u64)> {
    let rows = sluice_tests::sorted_rows(batches).map_err(anyhow::Error::msg)?;
    let mut sum = 0u64;
    for row in &rows {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        row.hash(&mut h);
        sum = sum.wrapping_add(h.finish());
    }
    Ok((rows.len(), sum))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.parallelism)
        .enable_all()
        .build()?;
    if !args.data.join("bid").exists() {
        eprintln!(
            "generating {} Nexmark events into {}",
            args.events,
            args.data.display()
        );
        sluice::generate::nexmark::generate(
            &args.data,
            args.events,
            8,
            sluice::generate::FileFormat::Parquet,
        )?;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    println!(
        "| query | bids | Sluice s | Sluice events/s | DataFusion s | DataFusion events/s | Sluice/DataFusion time | results |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for query in &args.queries {
        let Some(sql) = sluice_tests::reference::nexmark(query) else {
            bail!("no DataFusion equivalent for `{query}`");
        };
        let out = std::env::temp_dir().join(format!("sluice-bench-{query}"));
        let job = root.join("jobs/sql/nexmark").join(format!("{query}.sql"));
        let mut sluice_best = f64::MAX;
        let mut rows_in = 0;
        for _ in 0..args.runs {
            let _ = std::fs::remove_dir_all(&out);
            let spec = sluice::JobSpec::from_file(&job)?
                .with_var("DATA", &args.data.display().to_string())
                .with_var("OUT", &out.display().to_string())
                .with_parallelism(args.parallelism);
            let started = Instant::now();
            let result = runtime.block_on(sluice::run(&spec))?;
            sluice_best = sluice_best.min(started.elapsed().as_secs_f64());
            rows_in = result.rows_in;
        }
        let sluice_rows =
            sluice_tests::read_parquet_dir(&out.join(query)).map_err(anyhow::Error::msg)?;
        let sluice_print = fingerprint(&sluice_rows)?;

        let config = SessionConfig::new().with_target_partitions(args.parallelism);
        let ctx = SessionContext::new_with_config(config);
        let bid = args.data.join("bid");
        runtime.block_on(ctx.register_parquet(
            "bid",
            bid.to_str().context("path")?,
            ParquetReadOptions::default(),
        ))?;
        let mut df_best = f64::MAX;
        let mut df_rows = Vec::new();
        for _ in 0..args.runs {
            let started = Instant::now();
            df_rows = runtime.block_on(async { ctx.sql(sql).await?.collect().await })?;
            df_best = df_best.min(started.elapsed().as_secs_f64());
        }
        let df_print = fingerprint(&df_rows)?;
        let verdict = if sluice_print == df_print {
            format!("same {} rows", sluice_print.0)
        } else {
            format!(
                "DIFFER: Sluice {} rows, DataFusion {} rows",
                sluice_print.0, df_print.0
            )
        };
        println!(
            "| {query} | {rows_in} | {sluice_best:.3} | {:.2}M | {df_best:.3} | {:.2}M | {:.2} | {verdict} |",
            rows_in as f64 / sluice_best / 1e6,
            rows_in as f64 / df_best / 1e6,
            sluice_best / df_best
        );
    }
    Ok(())
}
