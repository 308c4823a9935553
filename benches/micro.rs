//! Micro-benchmarks of the hot paths, on Nexmark bids:
//!
//! ```text
//! cargo bench -p sluice-benches --bench micro
//! cargo bench -p sluice-benches --bench micro -- window   # a subset
//! ```
//!
//! Each piece is taken from a job that the real planner compiled, so what is
//! measured is what a job runs: a split of a JSON-lines or Parquet file
//! decoded into Arrow batches; the hash exchange's routing of a batch; the
//! local (pre-exchange) window aggregate updating its groups, for a tumbling
//! and a hopping window (slices make hop cost about the same as tumble); and
//! the snapshot of a large keyed state encoded as a checkpoint writes it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use sluice::JobSpec;
use sluice::generate::FileFormat;
use sluice_engine::connector::ScanRequest;
use sluice_engine::exec::exchange::hash_partition;
use sluice_engine::ops::{Message, Operator, OperatorContext, OperatorFactory, Output};
use sluice_engine::plan::{JobGraph, NodeKind, Partitioning};
use sluice_engine::sql::Mode;

/// Nexmark events generated for the benchmarks (about 184,000 bids).
const EVENTS: u64 = 200_000;

const BID: &str = "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, \
     date_time TIMESTAMP(3), extra STRING, \
     WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND";

struct Data {
    _dir: tempfile::TempDir,
    parquet: std::path::PathBuf,
    json: std::path::PathBuf,
}

fn data() -> Data {
    let dir = tempfile::tempdir().expect("tempdir");
    let parquet = dir.path().join("parquet");
    let json = dir.path().join("json");
    for (path, format) in [(&parquet, FileFormat::Parquet), (&json, FileFormat::Json)] {
        sluice::generate::nexmark::generate(path, EVENTS, 1, format).expect("generate bids");
    }
    Data {
        _dir: dir,
        parquet,
        json,
    }
}

/// The operator graph of `INSERT INTO o {select}` over bids in `dir`.
fn graph(dir: &Path, format: &str, mode: Mode, sink: &str, select: &str) -> JobGraph {
    let sql = format!(
        "CREATE TABLE bid ({BID}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = '{format}');
         CREATE TABLE o ({sink}) WITH ('connector' = 'blackhole');
         INSERT INTO o {select};",
        dir.join("bid").display()
    );
    JobSpec::from_text("micro", &sql)
        .with_mode(mode)
        .with_parallelism(1)
        .graph()
        .expect("plan the benchmark job")
}

/// Reads every split of the graph's source: the batches its subtasks see.
async fn read_source(graph: &JobGraph) -> Vec<RecordBatch> {
    let source = graph
        .nodes
        .iter()
        .find_map(|n| match &n.kind {
            NodeKind::Source(s) => Some(s),
            _ => None,
        })
        .expect("a source");
    let request = ScanRequest {
        metrics: Arc::default(),
        projection: source.projection.clone(),
        schema: Arc::clone(&source.read_schema),
        time_column: source.watermark.as_ref().map(|_| "date_time".to_string()),
        batch_size: 8192,
    };
    let mut batches = Vec::new();
    for split in source
        .source
        .plan_splits(request)
        .await
        .expect("plan splits")
    {
        let mut stream = split.open();
        while let Some(batch) = stream.next().await {
            batches.push(batch.expect("read a batch"));
        }
    }
    batches
}

fn context() -> OperatorContext {
    OperatorContext {
        subtask: 0,
        parallelism: 1,
        parameters: Arc::new(BTreeMap::new()),
        metrics: Arc::default(),
    }
}

/// The operators from the source up to and including the first one named
/// `name`, in chain order.
fn operators_up_to(graph: &JobGraph, name: &str) -> Vec<Arc<dyn OperatorFactory>> {
    let mut chain = Vec::new();
    for node in &graph.nodes {
        if let NodeKind::Operator(factory) = &node.kind {
            chain.push(Arc::clone(factory));
            if factory.name() == name {
                return chain;
            }
        }
    }
    panic!("no operator named {name} in the graph");
}

fn create(factory: &dyn OperatorFactory) -> Box<dyn Operator> {
    let mut op = factory.create(&context()).expect("create the operator");
    op.open(&context()).expect("open the operator");
    op
}

/// Runs `batches` through `ops`, then the end of input (the watermark at
/// +infinity), and returns the rows the last operator emits.
fn feed(ops: &[Arc<dyn OperatorFactory>], mut batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
    for factory in ops {
        let mut op = create(factory.as_ref());
        let mut out = Output::default();
        for batch in std::mem::take(&mut batches) {
            op.on_batch(0, batch, &mut out).expect("operator");
        }
        op.on_watermark(i64::MAX, &mut out).expect("end of input");
        batches = out
            .drain()
            .filter_map(|m| match m {
                Message::Data(b) => Some(b),
                _ => None,
            })
            .collect();
    }
    batches
}

fn rows(batches: &[RecordBatch]) -> u64 {
    batches.iter().map(|b| b.num_rows() as u64).sum()
}

fn sources(c: &mut Criterion, data: &Data, runtime: &tokio::runtime::Runtime) {
    let mut group = c.benchmark_group("source");
    group.sample_size(10);
    for (name, dir, format, mode) in [
        ("json_lines_split", &data.json, "json", Mode::Stream),
        ("parquet_split", &data.parquet, "parquet", Mode::Batch),
    ] {
        let three = graph(
            dir,
            format,
            mode,
            "auction BIGINT, price BIGINT, date_time TIMESTAMP(3)",
            "SELECT auction, price, date_time FROM bid",
        );
        let all = graph(
            dir,
            format,
            mode,
            BID.split(", WATERMARK").next().unwrap_or(BID),
            "SELECT auction, bidder, price, channel, url, date_time, extra FROM bid",
        );
        let bids = rows(&runtime.block_on(read_source(&three)));
        group.throughput(Throughput::Elements(bids));
        group.bench_function(format!("{name}/3_columns"), |b| {
            b.iter(|| runtime.block_on(read_source(&three)))
        });
        group.bench_function(format!("{name}/all_columns"), |b| {
            b.iter(|| runtime.block_on(read_source(&all)))
        });
    }
    group.finish();
}

fn exchange(c: &mut Criterion, data: &Data, runtime: &tokio::runtime::Runtime) {
    let graph = graph(
        &data.parquet,
        "parquet",
        Mode::Batch,
        "auction BIGINT, window_start TIMESTAMP(3), bids BIGINT",
        "SELECT auction, window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) \
         GROUP BY auction, window_start, window_end",
    );
    let keys = graph
        .edges
        .iter()
        .find_map(|e| match &e.partitioning {
            Partitioning::Hash(keys) => Some(keys.clone()),
            _ => None,
        })
        .expect("a hash exchange");
    // The exchange routes the local aggregate's partial states.
    let local = operators_up_to(&graph, "LocalWindowAggregate");
    let states = feed(&local, runtime.block_on(read_source(&graph)));
    let mut group = c.benchmark_group("exchange");
    group.throughput(Throughput::Elements(rows(&states)));
    for parallelism in [2, 8] {
        group.bench_function(format!("hash_partition/{parallelism}"), |b| {
            let mut hashes = Vec::new();
            b.iter(|| {
                for batch in &states {
                    hash_partition(batch, &keys, parallelism, &mut hashes).expect("partition");
                }
            })
        });
    }
    group.finish();
}

fn windows(c: &mut Criterion, data: &Data, runtime: &tokio::runtime::Runtime) {
    let mut group = c.benchmark_group("window_update");
    group.sample_size(20);
    for (name, window) in [
        (
            "tumble_10s",
            "TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)",
        ),
        (
            "hop_10s_2s",
            "HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)",
        ),
        (
            "cumulate_10s_2s",
            "CUMULATE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)",
        ),
    ] {
        let graph = graph(
            &data.parquet,
            "parquet",
            Mode::Batch,
            "auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, top BIGINT",
            &format!(
                "SELECT auction, window_start, COUNT(*), MAX(price) FROM TABLE({window}) \
                 GROUP BY auction, window_start, window_end"
            ),
        );
        let ops = operators_up_to(&graph, "LocalWindowAggregate");
        let (before, local) = ops.split_at(ops.len() - 1);
        let input = feed(before, runtime.block_on(read_source(&graph)));
        group.throughput(Throughput::Elements(rows(&input)));
        // Each batch is added to its slices' groups; the slices leave when
        // the watermark passes them, as in a job.
        group.bench_function(name, |b| {
            b.iter_batched(
                || (create(local[0].as_ref()), input.clone()),
                |(mut op, input)| {
                    let mut out = Output::default();
                    for batch in input {
                        op.on_batch(0, batch, &mut out).expect("aggregate");
                    }
                    op.on_watermark(i64::MAX, &mut out).expect("fire");
                    out
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn snapshot(c: &mut Criterion, data: &Data, runtime: &tokio::runtime::Runtime) {
    // One-hour windows per (bidder, auction): almost every bid is a key of
    // its own, and nothing fires, so the whole input is state.
    let graph = graph(
        &data.parquet,
        "parquet",
        Mode::Stream,
        "bidder BIGINT, auction BIGINT, bids BIGINT, top BIGINT",
        "SELECT bidder, auction, COUNT(*), MAX(price) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' HOUR)) \
         GROUP BY bidder, auction, window_start, window_end",
    );
    let ops = operators_up_to(&graph, "WindowAggregate");
    let local = feed(&ops[..ops.len() - 1], runtime.block_on(read_source(&graph)));
    let merge = &ops[ops.len() - 1];
    let filled = || {
        let mut op = create(merge.as_ref());
        let mut out = Output::default();
        for batch in &local {
            op.on_batch(0, batch.clone(), &mut out).expect("merge");
        }
        op
    };
    let take = |op: &mut Box<dyn Operator>| {
        let state = op.snapshot().expect("snapshot").expect("keyed state");
        let batches = &state.tables[0].batches;
        sluice_engine::checkpoint::state::encode(batches[0].schema(), batches).expect("encode")
    };
    let mut op = filled();
    let encoded = take(&mut op);
    eprintln!("checkpoint state: {} bytes", encoded.len());
    let mut group = c.benchmark_group("checkpoint");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    // The first snapshot after rows arrived: the live hash tables are
    // emitted as arrays (and kept, frozen), then encoded as Arrow IPC.
    group.bench_function("snapshot_and_encode/after_updates", |b| {
        b.iter_batched(filled, |mut op| take(&mut op), BatchSize::LargeInput)
    });
    // A snapshot of state that has not changed since the last: only encoding.
    group.bench_function("snapshot_and_encode/unchanged", |b| {
        b.iter(|| take(&mut op))
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let data = data();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    sources(c, &data, &runtime);
    exchange(c, &data, &runtime);
    windows(c, &data, &runtime);
    snapshot(c, &data, &runtime);
}

criterion_group!(micro, benches);
criterion_main!(micro);
