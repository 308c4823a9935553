//! # sluice-connectors
//!
//! Sources and sinks for Sluice jobs, found by the `connector` option:
//!
//! - `filesystem`: Parquet, JSON lines and CSV files on any object store
//!   (`file://` or a plain path, `s3://`, `gs://`, `az://`), as a source
//!   (row-group splits, projection pushdown, statistics-ordered reading) and
//!   as a sink (part files per subtask, visible once the job commits;
//!   `debezium-json` writes an updating result as a changelog).
//! - `kafka`: topics as sources (a split per partition, read concurrently,
//!   each with its own watermark; startup and bounded modes; bad records
//!   fail, are skipped, or go to a dead-letter topic) and as sinks.
//! - `upsert-kafka`: an updating result as upserts and tombstones of its
//!   primary key, into a (compacted) topic.
//! - `nexmark`: Nexmark events generated in the source, in the shape of
//!   the Flink Nexmark benchmark's `datagen` table; bounded by `events.num`.
//! - `print`: rows to standard output, as Flink prints them (`+I[...]`,
//!   `-U[...]`, `+U[...]`, `-D[...]`).
//! - `blackhole`: discards rows (for benchmarks).

#![forbid(unsafe_code)]

pub mod checkpoints;
pub mod debezium;
pub mod filesystem;
pub mod kafka;
pub mod nexmark;
pub mod print;
pub mod store;

use std::sync::Arc;

use sluice_engine::connector::ConnectorRegistry;

/// A registry with every connector of this crate.
pub fn registry() -> ConnectorRegistry {
    let mut registry = ConnectorRegistry::default();
    registry.register_source("filesystem", Arc::new(filesystem::FileSystemFactory));
    registry.register_sink("filesystem", Arc::new(filesystem::FileSystemFactory));
    registry.register_source("kafka", Arc::new(kafka::KafkaFactory));
    registry.register_sink("kafka", Arc::new(kafka::KafkaFactory));
    registry.register_source("upsert-kafka", Arc::new(kafka::UpsertKafkaFactory));
    registry.register_sink("upsert-kafka", Arc::new(kafka::UpsertKafkaFactory));
    registry.register_source("nexmark", Arc::new(nexmark::NexmarkFactory));
    registry.register_sink("print", Arc::new(print::PrintFactory));
    registry.register_sink("blackhole", Arc::new(print::BlackholeFactory));
    registry
}
