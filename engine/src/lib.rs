//! # sluice-engine
//!
//! The heart of Sluice: one columnar executor for bounded and unbounded inputs.
//!
//! A batch is a stream that ends. Sources yield *splits* (a Parquet row-group
//! range, later a Kafka partition); each split produces Arrow record batches
//! and its own watermark, and a bounded split that ends contributes a watermark
//! of +infinity. Everything downstream (operators, windows, sinks) is written
//! once and does not know which mode it runs in.
//!
//! The layers, top depends on bottom only:
//!
//! - [`sql`]: job files in the Flink SQL dialect, parsed with sqlparser's
//!   primitives and planned by DataFusion into a `LogicalPlan` per `INSERT`.
//! - [`plan`]: the [`plan::JobGraph`] built from those plans (operators, exchanges,
//!   parallelism) and its chaining into stages.
//! - [`exec`]: the runtime: subtasks on tokio, byte-bounded channels, hash exchanges.
//! - [`ops`]: operators: projection and filter, window aggregation, session
//!   windows, updating aggregation, regular joins.
//! - [`changelog`]: row kinds and changelog modes of updating results.
//! - [`time`]: watermarks and window assignment.
//! - [`connector`]: the source and sink traits that `sluice-connectors` implements.

#![forbid(unsafe_code)]

pub mod changelog;
pub mod checkpoint;
pub mod connector;
pub mod error;
pub mod exec;
pub mod failpoint;
pub mod metrics;
pub mod ops;
pub mod plan;
pub mod sql;
pub mod suggest;
pub mod time;

pub use error::{Result, SluiceError};
pub use exec::{JobResult, RunOptions, StopSignal};
pub use sql::{JobFile, Mode};
