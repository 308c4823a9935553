//! Parquet files as sources: one split per row group, read in event-time order.
//!
//! When a job starts, each file's footer is read once: its schema is fitted
//! to the table (missing columns and incompatible types are errors naming the
//! file and the column), and the row groups' statistics give each split its
//! smallest event time, so that splits can be read earliest first and the
//! watermark held below the rows not yet read.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector,
};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use sluice_engine::connector::{ScanRequest, Source, Split, SplitPosition, without_positions};
use sluice_engine::sql::TableDef;
use sluice_engine::time::Millis;
use sluice_engine::{Result, SluiceError};

use super::FileSet;

#[derive(Debug)]
pub struct ParquetSource {
    files: FileSet,
    table: String,
}

impl ParquetSource {
    pub fn new(files: FileSet, table: &TableDef) -> Self {
        Self {
            files,
            table: table.name.clone(),
        }
    }
}

impl Source for ParquetSource {
    fn plan_splits(&self, request: ScanRequest) -> BoxFuture<'_, Result<Vec<Arc<dyn Split>>>> {
        Box::pin(async move {
            let files = self.files.list().await?;
            let store = Arc::clone(&self.files.root.store);
            let request = Arc::new(request);
            let planned: Vec<Vec<Arc<dyn Split>>> = futures::stream::iter(files)
                .map(|meta| {
                    let store = Arc::clone(&store);
                    let request = Arc::clone(&request);
                    let url = self.files.url_of(&meta.location);
                    let version = self.files.version_of(&meta);
                    async move {
                        let file = FileAt {
                            path: meta.location,
                            size: meta.size,
                            url,
                            version,
                        };
                        plan_file(store, file, &self.table, &request).await
                    }
                })
                // In order: splits of equal times are dealt in planning's
                // order, which must not change from run to run.
                .buffered(8)
                .try_collect()
                .await?;
            Ok(planned.into_iter().flatten().collect())
        })
    }
}

/// Where a file is, and which version of it planning found.
struct FileAt {
    path: Path,
    size: u64,
    url: String,
    version: String,
}

async fn plan_file(
    store: Arc<dyn ObjectStore>,
    file: FileAt,
    table: &str,
    request: &ScanRequest,
) -> Result<Vec<Arc<dyn Split>>> {
    let FileAt {
        path,
        size,
        url,
        version,
    } = file;
    let mut reader = ObjectReader::new(Arc::clone(&store), path.clone(), size);
    let metadata = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
        .await
        .map_err(|e| read_error(&url, "not a readable Parquet file", e))?;
    let fit = Arc::new(SchemaFit::new(
        table,
        &url,
        metadata.schema(),
        &request.schema,
    )?);
    let mask = ProjectionMask::roots(metadata.parquet_schema(), fit.read_columns.iter().copied());
    let min_times = match &request.time_column {
        Some(column) => row_group_min_times(&metadata, &fit, column)?,
        None => vec![None; metadata.metadata().num_row_groups()],
    };
    let file = Arc::new(ParquetFile {
        store,
        path,
        size,
        url,
        version,
        metadata: metadata.clone(),
        fit,
        mask,
        batch_size: request.batch_size,
    });
    let mut first_row = 0;
    Ok(metadata
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .map(|(i, rg)| {
            let rows = rg.num_rows().max(0) as u64;
            first_row += rows;
            Arc::new(RowGroupSplit {
                file: Arc::clone(&file),
                row_group: i,
                first_row: first_row - rows,
                rows,
                min_time: min_times[i],
            }) as Arc<dyn Split>
        })
        .collect())
}

/// The smallest event time of each row group, from the footer's statistics.
fn row_group_min_times(
    metadata: &ArrowReaderMetadata,
    fit: &SchemaFit,
    column: &str,
) -> Result<Vec<Option<Millis>>> {
    let groups = metadata.metadata().num_row_groups();
    let Some(file_column) = fit.file_name_of(column) else {
        return Ok(vec![None; groups]);
    };
    let Ok(converter) =
        StatisticsConverter::try_new(file_column, metadata.schema(), metadata.parquet_schema())
    else {
        return Ok(vec![None; groups]);
    };
    let mins = match converter.row_group_mins(metadata.metadata().row_groups().iter()) {
        Ok(mins) => mins,
        Err(_) => return Ok(vec![None; groups]),
    };
    let Ok(mins) = cast(&mins, &DataType::Timestamp(TimeUnit::Millisecond, None)) else {
        return Ok(vec![None; groups]);
    };
    Ok(mins
        .as_primitive::<TimestampMillisecondType>()
        .iter()
        .collect())
}

/// One Parquet file's footer and how its columns map to the table's.
#[derive(Debug)]
struct ParquetFile {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    url: String,
    /// The file's version when planned (see `version.rs`).
    version: String,
    metadata: ArrowReaderMetadata,
    fit: Arc<SchemaFit>,
    mask: ProjectionMask,
    batch_size: usize,
}

#[derive(Debug)]
struct RowGroupSplit {
    file: Arc<ParquetFile>,
    row_group: usize,
    /// The file's rows before this row group's.
    first_row: u64,
    rows: u64,
    min_time: Option<Millis>,
}

impl Split for RowGroupSplit {
    fn describe(&self) -> String {
        format!("{} row group {}", self.file.url, self.row_group)
    }

    fn version(&self) -> Option<String> {
        Some(self.file.version.clone())
    }

    fn min_event_time(&self) -> Option<Millis> {
        self.min_time
    }

    fn estimated_rows(&self) -> Option<u64> {
        Some(self.rows)
    }

    /// The row's number in the file (from 1), and its row group.
    fn locate_row<'a>(
        &'a self,
        before: &'a SplitPosition,
        _after: &'a SplitPosition,
        _rows: usize,
        row: usize,
    ) -> BoxFuture<'a, String> {
        let (url, group) = (&self.file.url, self.row_group);
        let at = match before.rows() {
            Ok(read) => format!(
                "row {} of {url} (row group {group})",
                self.first_row + read + row as u64 + 1
            ),
            Err(_) => format!("row {} of a batch of {url} row group {group}", row + 1),
        };
        Box::pin(std::future::ready(at))
    }

    fn open(self: Arc<Self>) -> BoxStream<'static, Result<RecordBatch>> {
        without_positions(self.open_at(None))
    }

    /// Resumes after `rows:N` by a row selection: the pages of the rows
    /// read before are skipped, not decoded.
    fn open_at(
        self: Arc<Self>,
        position: Option<SplitPosition>,
    ) -> BoxStream<'static, Result<(RecordBatch, SplitPosition)>> {
        let skip = match SplitPosition::rows_to_skip(position.as_ref(), &self.describe()) {
            Ok(rows) => rows,
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
        if skip > self.rows {
            let message = format!(
                "{}: resuming after row {skip}, but it has only {} rows now",
                self.describe(),
                self.rows
            );
            return futures::stream::once(async move { Err(SluiceError::Data(message)) }).boxed();
        }
        let file = Arc::clone(&self.file);
        let reader = ObjectReader::new(Arc::clone(&file.store), file.path.clone(), file.size);
        let mut builder =
            ParquetRecordBatchStreamBuilder::new_with_metadata(reader, file.metadata.clone())
                .with_projection(file.mask.clone())
                .with_row_groups(vec![self.row_group])
                .with_batch_size(file.batch_size);
        if skip > 0 {
            builder = builder.with_row_selection(RowSelection::from(vec![
                RowSelector::skip(skip as usize),
                RowSelector::select((self.rows - skip) as usize),
            ]));
        }
        match builder.build() {
            Ok(stream) => {
                let mut read = skip;
                let name = self.describe();
                stream
                    .map(move |batch| {
                        let batch =
                            batch.map_err(|e| read_error(&name, "damaged Parquet data", e))?;
                        read += batch.num_rows() as u64;
                        Ok((
                            file.fit.apply(batch, &file.url)?,
                            SplitPosition::after_rows(read),
                        ))
                    })
                    .boxed()
            }
            Err(e) => {
                let url = self.file.url.clone();
                futures::stream::once(async move { Err(SluiceError::Data(format!("{url}: {e}"))) })
                    .boxed()
            }
        }
    }
}

/// A failure reading `url` (a Parquet file or one of its row groups):
/// trouble fetching its bytes is I/O (retried if it may pass,
/// [`SluiceError::io`]); anything else is the file's content, `what` it
/// is, and will not change on a retry.
fn read_error(url: &str, what: &str, e: parquet::errors::ParquetError) -> SluiceError {
    match &e {
        parquet::errors::ParquetError::External(inner) if inner.is::<object_store::Error>() => {
            SluiceError::io(format!("reading {url}"), e)
        }
        _ => SluiceError::Data(format!("{url}: {what}: {e}")),
    }
}

/// Reads byte ranges of one object for the Parquet decoder.
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl ObjectReader {
    fn new(store: Arc<dyn ObjectStore>, path: Path, size: u64) -> Self {
        Self { store, path, size }
    }
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_metadata_options(options.map(|o| o.metadata_options().clone()))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// How a file's columns become the table's: which to read, in what order,
/// and which to cast.
#[derive(Debug)]
pub struct SchemaFit {
    /// File column indices to read, ascending (the order the reader yields).
    read_columns: Vec<usize>,
    /// For each wanted column: its position among the read columns.
    positions: Vec<usize>,
    /// For each wanted column: its name in the file.
    file_names: Vec<String>,
    target: SchemaRef,
}

impl SchemaFit {
    pub fn new(table: &str, url: &str, file: &Schema, wanted: &SchemaRef) -> Result<Self> {
        let mut indices = Vec::with_capacity(wanted.fields().len());
        let mut file_names = Vec::new();
        for field in wanted.fields() {
            let found = file.index_of(field.name()).ok().or_else(|| {
                file.fields()
                    .iter()
                    .position(|f| f.name().eq_ignore_ascii_case(field.name()))
            });
            let Some(index) = found else {
                let have: Vec<&str> = file.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(SluiceError::Schema(format!(
                    "{url}: no column `{}`, which table `{table}` declares (the file has: {})",
                    field.name(),
                    have.join(", ")
                )));
            };
            let from = file.field(index).data_type();
            if !compatible(from, field.data_type()) {
                return Err(SluiceError::Schema(format!(
                    "{url}: column `{}` is {from} in the file, but table `{table}` declares {}",
                    field.name(),
                    field.data_type()
                )));
            }
            indices.push(index);
            file_names.push(file.field(index).name().clone());
        }
        let mut read_columns = indices.clone();
        read_columns.sort_unstable();
        read_columns.dedup();
        let positions = indices
            .iter()
            .map(|i| read_columns.binary_search(i).unwrap_or_default())
            .collect();
        Ok(Self {
            read_columns,
            positions,
            file_names,
            target: Arc::clone(wanted),
        })
    }

    fn file_name_of(&self, column: &str) -> Option<&str> {
        let i = self.target.index_of(column).ok()?;
        self.file_names.get(i).map(String::as_str)
    }

    /// Reorders and casts a batch read from the file into the table's shape.
    pub fn apply(&self, batch: RecordBatch, url: &str) -> Result<RecordBatch> {
        let columns = self
            .positions
            .iter()
            .zip(self.target.fields())
            .map(|(&p, field)| {
                let column: &ArrayRef = batch.column(p);
                if column.data_type() == field.data_type() {
                    Ok(Arc::clone(column))
                } else {
                    cast(column, field.data_type()).map_err(|e| {
                        SluiceError::Schema(format!(
                            "{url}: column `{}` cannot be read as {}: {e}",
                            field.name(),
                            field.data_type()
                        ))
                    })
                }
            })
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new_with_options(
            Arc::clone(&self.target),
            columns,
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .map_err(|e| SluiceError::Schema(format!("{url}: {e}")))
    }
}

/// Whether values of type `from` can stand for the declared type `to`
/// without changing their meaning (widening, another string or time encoding).
fn compatible(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let integer = |t: &DataType| t.is_integer();
    let string = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    let binary = |t: &DataType| matches!(t, Binary | LargeBinary | BinaryView | FixedSizeBinary(_));
    match (from, to) {
        _ if from == to => true,
        (Dictionary(_, value), to) => compatible(value, to),
        (f, t) if integer(f) && (integer(t) || t.is_floating() || matches!(t, Decimal128(..))) => {
            true
        }
        (f, t) if f.is_floating() && t.is_floating() => true,
        (Decimal128(..) | Decimal256(..), Decimal128(..) | Decimal256(..) | Float64) => true,
        (f, t) if string(f) && string(t) => true,
        (f, t) if binary(f) && binary(t) => true,
        (Timestamp(..), Timestamp(..)) => true,
        (Date32 | Date64, Date32 | Date64) => true,
        (Boolean, Boolean) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::Field;
    use sluice_engine::metrics::JobMetrics;

    /// A Parquet file of `rows` BIGINTs in column `n`, its first data page
    /// header overwritten: the footer reads, the rows do not.
    fn damaged_parquet(path: &std::path::Path, rows: i64) {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .expect("batch");
        let mut bytes = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        // The first page header follows the 4-byte magic number.
        bytes[4..36].fill(0xff);
        std::fs::write(path, bytes).expect("write file");
    }

    /// A damaged page is the file's fault: a data error naming the file
    /// and row group, which no retry can cure.
    #[tokio::test]
    async fn a_damaged_page_is_a_data_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("part-0.parquet");
        damaged_parquet(&path, 1000);
        let source = ParquetSource {
            files: FileSet::parse(&path.display().to_string(), "t").expect("files"),
            table: "t".into(),
        };
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let request = ScanRequest {
            metrics: Arc::new(JobMetrics::default()),
            projection: vec![0],
            schema,
            time_column: None,
            batch_size: 100,
        };
        let splits = source.plan_splits(request).await.expect("the footer reads");
        let mut batches = Arc::clone(&splits[0]).open();
        let err = loop {
            match batches.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e,
                None => panic!("a damaged page read without error"),
            }
        };
        assert!(matches!(err, SluiceError::Data(_)), "{err:?}");
        assert!(!err.is_retryable(), "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "file://{} row group 0: damaged Parquet data: ",
                path.display()
            )),
            "{message}"
        );
    }

    /// A row is named by its number in the file, not in its row group or
    /// from where its split was resumed.
    #[tokio::test]
    async fn a_row_is_located_by_its_number_in_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("part-0.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(0..25))],
        )
        .expect("batch");
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(10))
            .build();
        let file = std::fs::File::create(&path).expect("create");
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(file, Arc::clone(&schema), Some(props))
                .expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        let source = ParquetSource {
            files: FileSet::parse(&path.display().to_string(), "t").expect("files"),
            table: "t".into(),
        };
        let request = ScanRequest {
            metrics: Arc::new(JobMetrics::default()),
            projection: vec![0],
            schema,
            time_column: None,
            batch_size: 4,
        };
        let splits = source.plan_splits(request).await.expect("splits");
        assert_eq!(splits.len(), 3);
        let at = splits[1]
            .locate_row(
                &SplitPosition::after_rows(4),
                &SplitPosition::after_rows(8),
                4,
                2,
            )
            .await;
        assert_eq!(
            at,
            format!("row 17 of file://{} (row group 1)", path.display())
        );
    }

    #[test]
    fn schema_fit_names_the_file_and_column() {
        let file = Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]);
        let wanted = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("a", DataType::Int64, true),
        ]));
        let fit = SchemaFit::new("t", "file:///x.parquet", &file, &wanted).expect("fits");
        assert_eq!(fit.read_columns, vec![0, 1]);
        assert_eq!(fit.positions, vec![1, 0]);

        let wanted = Arc::new(Schema::new(vec![Field::new("b", DataType::Int64, true)]));
        let err = SchemaFit::new("t", "file:///x.parquet", &file, &wanted)
            .expect_err("must fail")
            .to_string();
        assert_eq!(
            err,
            "file:///x.parquet: no column `b`, which table `t` declares (the file has: a, ts)"
        );
        let wanted = Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8, true)]));
        let err = SchemaFit::new("t", "file:///x.parquet", &file, &wanted)
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("column `a` is Int32 in the file, but table `t` declares Utf8"),
            "{err}"
        );
    }
}
