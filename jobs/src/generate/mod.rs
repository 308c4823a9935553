//! Data generators: `sluice gen nexmark|game`.
//!
//! Both write time-ordered part files (`part-0000.parquet`, …) per table, so
//! the files of one table cover consecutive event-time ranges, as real
//! backfill inputs do; or the same rows as JSON records to a Kafka topic per
//! table, so one data set feeds both modes.

pub mod game;
pub mod kafka;
pub mod nexmark;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use sluice_engine::{Result, SluiceError};

/// The output format of a generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Parquet,
    Json,
}

impl std::str::FromStr for FileFormat {
    type Err = SluiceError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "parquet" => Ok(Self::Parquet),
            "json" => Ok(Self::Json),
            other => Err(SluiceError::config(format!(
                "unknown format `{other}`: use parquet or json"
            ))),
        }
    }
}

/// Where a generator writes its tables.
#[derive(Debug, Clone)]
pub enum Destination {
    /// Part files in a subdirectory per table.
    Files {
        dir: PathBuf,
        files: usize,
        format: FileFormat,
    },
    /// JSON records to the topic `{topic}.{table}` per table (created with
    /// `partitions` partitions when missing), at most `rate` events per
    /// second in all when given.
    Kafka {
        brokers: String,
        topic: String,
        partitions: i32,
        rate: Option<f64>,
    },
}

impl Destination {
    /// Where table `name` goes, for a table of about `rows` of `events` rows
    /// in all.
    pub fn table(
        &self,
        name: &str,
        schema: SchemaRef,
        rows: u64,
        events: u64,
    ) -> Result<TableOutput> {
        Ok(match self {
            Self::Files { dir, files, format } => TableOutput::Files(Box::new(TableWriter::new(
                &dir.join(name),
                schema,
                *format,
                (rows as usize).div_ceil((*files).max(1)).max(1),
            )?)),
            Self::Kafka {
                brokers,
                topic,
                partitions,
                rate,
            } => {
                let share = rows as f64 / events.max(1) as f64;
                TableOutput::Kafka(kafka::KafkaTableWriter::new(
                    brokers,
                    &self.topic_of(topic, name),
                    *partitions,
                    rate.map(|r| r * share),
                )?)
            }
        })
    }

    fn topic_of(&self, topic: &str, table: &str) -> String {
        format!("{topic}.{table}")
    }

    /// Says where table `name` went, for the generator's summary.
    pub fn describe(&self, name: &str) -> String {
        match self {
            Self::Files { dir, .. } => dir.join(name).display().to_string(),
            Self::Kafka { topic, brokers, .. } => {
                format!("topic '{}' at {brokers}", self.topic_of(topic, name))
            }
        }
    }
}

/// One table's output: files or a topic.
pub enum TableOutput {
    Files(Box<TableWriter>),
    Kafka(kafka::KafkaTableWriter),
}

impl TableOutput {
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Self::Files(w) => w.write(batch),
            Self::Kafka(w) => w.write(batch),
        }
    }

    pub fn finish(self) -> Result<()> {
        match self {
            Self::Files(w) => w.finish(),
            Self::Kafka(w) => w.finish().map(|_| ()),
        }
    }
}

/// Writes one table's rows into `files` part files of about equal size.
pub struct TableWriter {
    dir: PathBuf,
    schema: SchemaRef,
    format: FileFormat,
    rows_per_file: usize,
    rows_in_file: usize,
    index: usize,
    current: Option<Output>,
}

enum Output {
    Parquet(ArrowWriter<File>),
    Json(arrow::json::LineDelimitedWriter<BufWriter<File>>),
}

impl TableWriter {
    pub fn new(
        dir: &Path,
        schema: SchemaRef,
        format: FileFormat,
        rows_per_file: usize,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| SluiceError::io(format!("creating {}", dir.display()), e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            schema,
            format,
            rows_per_file: rows_per_file.max(1),
            rows_in_file: 0,
            index: 0,
            current: None,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self.current.is_none() {
                self.open()?;
            }
            let room = self.rows_per_file - self.rows_in_file;
            let take = room.min(batch.num_rows() - offset);
            let part = batch.slice(offset, take);
            let written = match self.current.as_mut() {
                Some(Output::Parquet(w)) => w.write(&part).map_err(|e| e.to_string()),
                Some(Output::Json(w)) => w.write(&part).map_err(|e| e.to_string()),
                None => Ok(()),
            };
            written
                .map_err(|e| SluiceError::Data(format!("writing {}: {e}", self.dir.display())))?;
            self.rows_in_file += take;
            offset += take;
            if self.rows_in_file >= self.rows_per_file {
                self.close_file()?;
            }
        }
        Ok(())
    }

    fn open(&mut self) -> Result<()> {
        let extension = match self.format {
            FileFormat::Parquet => "parquet",
            FileFormat::Json => "json",
        };
        let path = self.dir.join(format!("part-{:04}.{extension}", self.index));
        let file = File::create(&path)
            .map_err(|e| SluiceError::io(format!("creating {}", path.display()), e))?;
        self.current = Some(match self.format {
            FileFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(256 * 1024))
                    .build();
                Output::Parquet(
                    ArrowWriter::try_new(file, Arc::clone(&self.schema), Some(props))
                        .map_err(|e| SluiceError::Data(format!("{}: {e}", path.display())))?,
                )
            }
            FileFormat::Json => {
                Output::Json(arrow::json::LineDelimitedWriter::new(BufWriter::new(file)))
            }
        });
        self.index += 1;
        self.rows_in_file = 0;
        Ok(())
    }

    fn close_file(&mut self) -> Result<()> {
        let closed = match self.current.take() {
            Some(Output::Parquet(w)) => w.close().map(|_| ()).map_err(|e| e.to_string()),
            Some(Output::Json(mut w)) => w.finish().map_err(|e| e.to_string()),
            None => Ok(()),
        };
        closed.map_err(|e| {
            SluiceError::Data(format!("closing a file in {}: {e}", self.dir.display()))
        })
    }

    pub fn finish(mut self) -> Result<()> {
        self.close_file()
    }
}
