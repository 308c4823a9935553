//! JSON-lines and CSV files as sources: one split per file, decoded
//! straight into Arrow batches as the bytes arrive.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use bytes::{Buf, Bytes};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sluice_engine::connector::{ScanRequest, Source, Split};
use sluice_engine::sql::TableDef;
use sluice_engine::{Result, SluiceError};

use super::{FileSet, Format};

#[derive(Debug)]
pub struct TextSource {
    files: FileSet,
    /// The full table schema: CSV columns are positional.
    table_schema: SchemaRef,
    format: Format,
}

impl TextSource {
    pub fn new(files: FileSet, table: &TableDef, format: Format) -> Self {
        Self {
            files,
            table_schema: Arc::clone(&table.physical),
            format,
        }
    }
}

impl Source for TextSource {
    fn plan_splits(&self, request: ScanRequest) -> BoxFuture<'_, Result<Vec<Arc<dyn Split>>>> {
        Box::pin(async move {
            let files = self.files.list().await?;
            Ok(files
                .into_iter()
                .map(|meta| {
                    Arc::new(TextSplit {
                        store: Arc::clone(&self.files.root.store),
                        url: self.files.url_of(&meta.location),
                        path: meta.location,
                        format: self.format,
                        table_schema: Arc::clone(&self.table_schema),
                        request: request.clone(),
                    }) as Arc<dyn Split>
                })
                .collect())
        })
    }
}

#[derive(Debug)]
struct TextSplit {
    store: Arc<dyn ObjectStore>,
    path: Path,
    url: String,
    format: Format,
    table_schema: SchemaRef,
    request: ScanRequest,
}

/// The incremental decoders of arrow-json and arrow-csv, behind one face.
trait Decoder: Send {
    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError>;
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError>;
    fn is_full(&self) -> bool;
}

struct Json(arrow::json::reader::Decoder, usize);

impl Decoder for Json {
    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        self.0.decode(buf)
    }
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        self.0.flush()
    }
    fn is_full(&self) -> bool {
        // `len` counts a record the last chunk cut in half: not yet a row.
        !self.0.has_partial_record() && self.0.len() >= self.1
    }
}

struct Csv(arrow::csv::reader::Decoder);

impl Decoder for Csv {
    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        self.0.decode(buf)
    }
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        self.0.flush()
    }
    fn is_full(&self) -> bool {
        self.0.capacity() == 0
    }
}

/// A decoder and the columns to keep of what it decodes.
type Decoding = (Box<dyn Decoder>, Option<Vec<usize>>);

struct DecodeState {
    chunks: BoxStream<'static, Result<Bytes>>,
    buffer: Bytes,
    decoder: Box<dyn Decoder>,
    finished: bool,
    url: String,
    /// Columns of the table to keep (CSV decodes every column).
    projection: Option<Vec<usize>>,
}

impl DecodeState {
    async fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            if !self.buffer.is_empty() {
                match self.decoder.decode(&self.buffer) {
                    Ok(consumed) => self.buffer.advance(consumed),
                    Err(e) => return Some(Err(self.error(e))),
                }
                if self.decoder.is_full() {
                    return self.flush().transpose();
                }
                continue;
            }
            if self.finished {
                return None;
            }
            match self.chunks.next().await {
                Some(Ok(chunk)) => self.buffer = chunk,
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    self.finished = true;
                    return self.flush().transpose();
                }
            }
        }
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>> {
        let batch = self.decoder.flush().map_err(|e| self.error(e))?;
        match (batch, &self.projection) {
            (Some(b), Some(p)) => b.project(p).map(Some).map_err(|e| self.error(e)),
            (b, _) => Ok(b),
        }
    }

    fn error(&self, e: ArrowError) -> SluiceError {
        SluiceError::Data(format!("{}: {e}", self.url))
    }
}

impl Split for TextSplit {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn open(self: Arc<Self>) -> BoxStream<'static, Result<RecordBatch>> {
        let decoder: std::result::Result<Decoding, ArrowError> = match self.format {
            Format::Json => arrow::json::ReaderBuilder::new(Arc::clone(&self.request.schema))
                .with_batch_size(self.request.batch_size)
                .build_decoder()
                .map(|d| {
                    (
                        Box::new(Json(d, self.request.batch_size)) as Box<dyn Decoder>,
                        None,
                    )
                }),
            Format::Csv { delimiter, header } => Ok((
                Box::new(Csv(arrow::csv::ReaderBuilder::new(Arc::clone(
                    &self.table_schema,
                ))
                .with_header(header)
                .with_delimiter(delimiter)
                .with_batch_size(self.request.batch_size)
                .build_decoder())) as Box<dyn Decoder>,
                Some(self.request.projection.clone()),
            )),
            Format::Parquet => Err(ArrowError::InvalidArgumentError(
                "Parquet is not a text format".into(),
            )),
        };
        let (decoder, projection) = match decoder {
            Ok(d) => d,
            Err(e) => {
                let url = self.url.clone();
                return futures::stream::once(async move {
                    Err(SluiceError::Data(format!("{url}: {e}")))
                })
                .boxed();
            }
        };
        let store = Arc::clone(&self.store);
        let path = self.path.clone();
        let url = self.url.clone();
        let get_url = url.clone();
        let chunks = futures::stream::once(async move {
            store
                .get(&path)
                .await
                .map_err(|e| SluiceError::io(format!("reading {get_url}"), e))
        })
        .map_ok(move |result| {
            let url = url.clone();
            result
                .into_stream()
                .map_err(move |e| SluiceError::io(format!("reading {url}"), e))
        })
        .try_flatten()
        .boxed();
        let state = DecodeState {
            chunks,
            buffer: Bytes::new(),
            decoder,
            finished: false,
            url: self.url.clone(),
            projection,
        };
        futures::stream::unfold(state, |mut state| async move {
            state.next_batch().await.map(|batch| (batch, state))
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use sluice_engine::metrics::JobMetrics;

    /// Records cut by chunk boundaries, with batches far smaller than a
    /// chunk, must all arrive whole.
    #[tokio::test]
    async fn json_records_across_chunk_boundaries_arrive_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("part-0.json");
        let rows = 20_000;
        let text: String = (0..rows)
            .map(|i| format!("{{\"id\": {i}, \"pad\": \"{}\"}}\n", "x".repeat(i % 50)))
            .collect();
        std::fs::write(&path, text).expect("write");
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("pad", DataType::Utf8, true),
        ]));
        let files = FileSet::parse(&path.display().to_string(), "t").expect("files");
        let source = TextSource {
            files,
            table_schema: Arc::clone(&schema),
            format: Format::Json,
        };
        let request = ScanRequest {
            metrics: Arc::new(JobMetrics::default()),
            projection: vec![0],
            schema: Arc::new(schema.project(&[0]).expect("project")),
            time_column: None,
            batch_size: 7,
        };
        let mut ids = Vec::new();
        for split in source.plan_splits(request).await.expect("splits") {
            let mut batches = split.open();
            while let Some(batch) = batches.next().await {
                let batch = batch.expect("a whole batch");
                assert!(batch.num_rows() <= 7);
                ids.extend(
                    batch
                        .column(0)
                        .as_primitive::<Int64Type>()
                        .values()
                        .iter()
                        .copied(),
                );
                assert_eq!(batch.column(0).null_count(), 0);
            }
        }
        assert_eq!(ids, (0..rows as i64).collect::<Vec<_>>());
    }
}
