//! The `filesystem` connector: files on any object store.
//!
//! Options (Flink's names): `path` (a file, a directory, or a glob such as
//! `/data/bid/*.parquet`; names starting with `.` or `_` are skipped, as
//! Flink and Hadoop skip staged and marker files, and only regular files
//! are read), `format` (`parquet`, `json`, `csv`), `csv.field-delimiter`,
//! and Sluice's `csv.header` (`'true'` when the first line names the
//! columns; Flink's CSV has none) and `source.split-size` (bytes per split
//! of a JSON-lines file, `32mb` by default, so one large file is still read
//! by every source subtask).

mod listing;
mod parquet;
mod sink;
mod text;
mod version;

use std::sync::Arc;

use sluice_engine::connector::{
    ConnectorContext, OptionNames, Sink, SinkFactory, Source, SourceFactory,
};
use sluice_engine::sql::{Options, TableDef};
use sluice_engine::{Result, SluiceError};

pub use listing::FileSet;

/// The option that sets the bytes per split of a JSON-lines file.
const SPLIT_SIZE: &str = "source.split-size";

/// The smallest split size the option accepts.
const MIN_SPLIT_SIZE: u64 = 64 << 10;

pub use sluice_engine::sql::settings::LATE_DATA_PATH;

/// A sink for rows that arrived behind the watermark: JSON lines (rows of
/// different operators have different columns) in part files under `path`.
pub fn late_data_sink(path: &str) -> Result<Arc<dyn Sink>> {
    let location = crate::store::resolve(path, "late data", LATE_DATA_PATH)?;
    Ok(Arc::new(sink::FileSink::new(
        location,
        Format::Json,
        Arc::new(arrow::datatypes::Schema::empty()),
    )))
}

/// Flink's `csv.field-delimiter`: one character, or `\t`; `,` by default.
pub(crate) fn take_csv_delimiter(options: &mut Options) -> Result<u8> {
    match options.take("csv.field-delimiter") {
        None => Ok(b','),
        Some(d) if d.len() == 1 => Ok(d.as_bytes()[0]),
        Some(d) if d == "\\t" => Ok(b'\t'),
        Some(d) => Err(SluiceError::config(format!(
            "table `{}`: option 'csv.field-delimiter' = '{d}' must be one character",
            options.table()
        ))),
    }
}

/// The file formats the connector reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Json,
    /// A changelog: Debezium envelopes as JSON lines.
    DebeziumJson,
    Csv {
        delimiter: u8,
        header: bool,
    },
}

impl Format {
    fn from_options(options: &mut Options) -> Result<Self> {
        let name = options.require("format")?;
        let format = match name.to_ascii_lowercase().as_str() {
            "parquet" => Self::Parquet,
            "json" => Self::Json,
            "debezium-json" => Self::DebeziumJson,
            "csv" => {
                let delimiter = take_csv_delimiter(options)?;
                let header = options
                    .take_parsed::<bool>("csv.header", "'true' or 'false'")?
                    .unwrap_or(false);
                Self::Csv { delimiter, header }
            }
            other => {
                return Err(SluiceError::config(format!(
                    "table `{}`: option 'format' = '{other}' is not supported by the filesystem connector (use 'parquet', 'json', 'csv' or 'debezium-json')",
                    options.table()
                )));
            }
        };
        Ok(format)
    }

    /// One JSON value per line, so a file can be split at line ends.
    pub fn is_json_lines(self) -> bool {
        matches!(self, Self::Json | Self::DebeziumJson)
    }

    fn extension(&self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Json | Self::DebeziumJson => "json",
            Self::Csv { .. } => "csv",
        }
    }
}

/// Creates filesystem sources and sinks.
pub struct FileSystemFactory;

/// The options of files, read or written.
const FILE_OPTIONS: OptionNames = &[
    "path",
    "format",
    "csv.field-delimiter",
    "csv.header",
    SPLIT_SIZE,
];

impl SourceFactory for FileSystemFactory {
    fn option_names(&self) -> OptionNames {
        FILE_OPTIONS
    }
    fn create_source(
        &self,
        table: &TableDef,
        options: &mut Options,
        _context: &ConnectorContext,
    ) -> Result<Arc<dyn Source>> {
        let path = options.require("path")?;
        let format = Format::from_options(options)?;
        let files = FileSet::parse(&path, &table.name)?;
        let split_size = options.take_memory_size(SPLIT_SIZE)?;
        if let Some(size) = split_size
            && size < MIN_SPLIT_SIZE
        {
            return Err(SluiceError::config(format!(
                "table `{}`: option '{SPLIT_SIZE}' = {size} bytes is below the smallest split, 64kb (each split costs reads while planning)",
                table.name
            )));
        }
        if split_size.is_some() && !format.is_json_lines() {
            return Err(SluiceError::config(format!(
                "table `{}`: option '{SPLIT_SIZE}' applies to 'json' and 'debezium-json' files only (Parquet splits by row group; a CSV field may hold a newline, so CSV files are read whole)",
                table.name
            )));
        }
        Ok(match format {
            Format::Parquet => Arc::new(parquet::ParquetSource::new(files, table)),
            _ => Arc::new(text::TextSource::new(
                files,
                table,
                format,
                split_size.unwrap_or(text::DEFAULT_SPLIT_SIZE),
            )),
        })
    }
}

impl SinkFactory for FileSystemFactory {
    fn option_names(&self) -> OptionNames {
        FILE_OPTIONS
    }

    fn supports_overwrite(&self) -> bool {
        true
    }
    fn create_sink(
        &self,
        table: &TableDef,
        options: &mut Options,
        context: &ConnectorContext,
    ) -> Result<Arc<dyn Sink>> {
        let path = options.require("path")?;
        let format = Format::from_options(options)?;
        if matches!(format, Format::Csv { .. }) {
            return Err(SluiceError::config(format!(
                "table `{}`: the filesystem sink writes 'parquet' or 'json', not 'csv' yet",
                table.name
            )));
        }
        let location = crate::store::resolve(&path, &table.name, "path")?;
        Ok(Arc::new(
            sink::FileSink::new(location, format, Arc::clone(&table.schema))
                .replacing(context.overwrite),
        ))
    }
}
