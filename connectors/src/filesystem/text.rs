//! JSON-lines and CSV files as sources, decoded straight into Arrow batches
//! as the bytes arrive.
//!
//! A JSON-lines file larger than the split size (`source.split-size`,
//! 32 MiB by default) is read as several splits, each a run of whole lines:
//! planning moves every cut to just after a newline, so consecutive splits
//! tile the file and each line belongs to exactly one. (A JSON record
//! cannot hold a raw newline; a CSV field can, so CSV files stay whole.)
//! Planning also decodes each split's first line for its event time, which
//! orders the splits and lets the watermark move past splits not yet read.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMillisecondType};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use bytes::{Buf, Bytes};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use sluice_engine::connector::{
    ScanRequest, Source, SourceChanges, Split, SplitPosition, without_positions,
};
use sluice_engine::error::preview;
use sluice_engine::sql::TableDef;
use sluice_engine::time::Millis;
use sluice_engine::{Result, SluiceError};

use super::{FileSet, Format};

/// Bytes per split of a JSON-lines file unless the table says otherwise.
pub const DEFAULT_SPLIT_SIZE: u64 = 32 << 20;

/// Bytes read at a time while looking for a line's end during planning.
const PEEK_SIZE: u64 = 64 << 10;

/// Reads planning has in flight per file (and files planned at once).
const PLANNING_READS: usize = 8;

#[derive(Debug)]
pub struct TextSource {
    files: FileSet,
    /// The full table schema: CSV columns are positional.
    table_schema: SchemaRef,
    format: Format,
    /// Bytes per split of a JSON-lines file.
    split_size: u64,
}

impl TextSource {
    pub fn new(files: FileSet, table: &TableDef, format: Format, split_size: u64) -> Self {
        Self {
            files,
            table_schema: Arc::clone(&table.physical),
            format,
            split_size: split_size.max(1),
        }
    }

    /// The splits of one file: line-aligned ranges of about the split size
    /// (one range for CSV), each with its first row's event time.
    async fn plan_file(
        &self,
        meta: ObjectMeta,
        request: &ScanRequest,
    ) -> Result<Vec<Arc<dyn Split>>> {
        let store = self.files.root.store.as_ref();
        let (path, url, size) = (&meta.location, self.files.url_of(&meta.location), meta.size);
        let version = self.files.version_of(&meta);
        // Each cut moves to the first line start at or after it, looked for
        // before the next cut only: a cut inside a line that runs past the
        // next cut has no line start of its own, and goes.
        let cuts: Vec<u64> = match self.format {
            Format::Json | Format::DebeziumJson => (1..)
                .map(|k| k * self.split_size)
                .take_while(|&cut| cut < size)
                .collect(),
            _ => Vec::new(),
        };
        let searches: Vec<(u64, u64)> = cuts
            .iter()
            .enumerate()
            .map(|(k, &cut)| (cut, cuts.get(k + 1).copied().unwrap_or(size)))
            .collect();
        let url_ref = &url;
        let starts: Vec<Option<u64>> = futures::stream::iter(searches)
            .map(|(cut, until)| line_start(store, path, url_ref, cut, until))
            .buffered(PLANNING_READS)
            .try_collect()
            .await?;
        let mut bounds: Vec<u64> = std::iter::once(0)
            .chain(starts.into_iter().flatten().filter(|&start| start < size))
            .collect();
        bounds.push(size);
        let ranges: Vec<Range<u64>> = bounds.windows(2).map(|w| w[0]..w[1]).collect();
        let whole = ranges.len() == 1;
        let time_column = match (&request.time_column, self.format) {
            (Some(column), Format::Json) => request.schema.index_of(column).ok(),
            _ => None,
        };
        let first_times: Vec<Option<Millis>> = futures::stream::iter(ranges.clone())
            .map(|range| async move {
                let Some(column) = time_column.filter(|_| !range.is_empty()) else {
                    return Ok(None);
                };
                let line = first_line(store, path, url_ref, range).await?;
                Ok::<_, SluiceError>(line.and_then(|l| json_time(&l, &request.schema, column)))
            })
            .buffered(PLANNING_READS)
            .try_collect()
            .await?;
        let splits = ranges
            .into_iter()
            .zip(first_times)
            .map(|(range, first_time)| {
                Arc::new(TextSplit {
                    store: Arc::clone(&self.files.root.store),
                    url: url.clone(),
                    path: path.clone(),
                    version: version.clone(),
                    local: self.files.is_local(),
                    range,
                    whole,
                    first_time,
                    format: self.format,
                    table_schema: Arc::clone(&self.table_schema),
                    request: request.clone(),
                }) as Arc<dyn Split>
            })
            .collect();
        Ok(splits)
    }
}

impl Source for TextSource {
    /// Debezium files are a multiset of changes: a file of one writer is
    /// in order, but nothing orders one file after another.
    fn changes(&self) -> SourceChanges {
        match self.format {
            Format::DebeziumJson => SourceChanges::Unordered,
            _ => SourceChanges::InsertOnly,
        }
    }

    fn plan_splits(&self, request: ScanRequest) -> BoxFuture<'_, Result<Vec<Arc<dyn Split>>>> {
        Box::pin(async move {
            let files = self.files.list().await?;
            let planned: Vec<Vec<Arc<dyn Split>>> = futures::stream::iter(files)
                .map(|meta| self.plan_file(meta, &request))
                .buffered(PLANNING_READS)
                .try_collect()
                .await?;
            Ok(planned.into_iter().flatten().collect())
        })
    }
}

/// Where the first line starting in `at..until` begins: just after the
/// first newline in bytes `at - 1 .. until - 1`; `None` if there is none.
async fn line_start(
    store: &dyn ObjectStore,
    path: &Path,
    url: &str,
    at: u64,
    until: u64,
) -> Result<Option<u64>> {
    let mut from = at.saturating_sub(1);
    let end = until.saturating_sub(1);
    while from < end {
        let to = (from + PEEK_SIZE).min(end);
        let bytes = get(store, path, url, from..to).await?;
        if let Some(i) = bytes.iter().position(|&b| b == b'\n') {
            return Ok(Some(from + i as u64 + 1));
        }
        from = to;
    }
    Ok(None)
}

/// The first line of `range` (without its newline), or `None` if it is
/// longer than the bytes planning is willing to read for it.
async fn first_line(
    store: &dyn ObjectStore,
    path: &Path,
    url: &str,
    range: Range<u64>,
) -> Result<Option<Bytes>> {
    let to = (range.start + PEEK_SIZE).min(range.end);
    let bytes = get(store, path, url, range.start..to).await?;
    Ok(match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => Some(bytes.slice(..i)),
        None if to == range.end => Some(bytes),
        None => None,
    })
}

async fn get(store: &dyn ObjectStore, path: &Path, url: &str, range: Range<u64>) -> Result<Bytes> {
    store
        .get_range(path, range)
        .await
        .map_err(|e| SluiceError::io(format!("reading {url}"), e))
}

/// The event time in column `column` of one JSON record, if it decodes.
/// A record that does not is left for reading to report.
fn json_time(line: &[u8], schema: &SchemaRef, column: usize) -> Option<Millis> {
    let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(1)
        .build_decoder()
        .ok()?;
    decoder.decode(line).ok()?;
    decoder.decode(b"\n").ok()?;
    let batch = decoder.flush().ok()??;
    let times = cast(
        batch.column(column),
        &DataType::Timestamp(TimeUnit::Millisecond, None),
    )
    .ok()?;
    let times = times.as_primitive::<TimestampMillisecondType>();
    (times.len() == 1 && times.is_valid(0)).then(|| times.value(0))
}

#[derive(Debug)]
struct TextSplit {
    store: Arc<dyn ObjectStore>,
    path: Path,
    url: String,
    /// The file's version when planned (see `version.rs`), and whether it
    /// is on a local disk (which decides what a version is).
    version: String,
    local: bool,
    /// The bytes of the file this split reads: whole lines.
    range: Range<u64>,
    /// Whether the range is the whole file (the split is named by the file).
    whole: bool,
    first_time: Option<Millis>,
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

/// Debezium envelopes, decoded as JSON and unpacked into rows with their
/// row kinds; an envelope that is not a change is a bad record.
struct Debezium {
    json: Json,
    row: SchemaRef,
}

impl Decoder for Debezium {
    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        self.json.decode(buf)
    }
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        let Some(envelopes) = self.json.flush()? else {
            return Ok(None);
        };
        let (rows, bad) = crate::debezium::unpack(&envelopes, &self.row, false)
            .map_err(|e| ArrowError::JsonError(e.to_string()))?;
        match bad.into_iter().next() {
            Some(bad) => Err(ArrowError::JsonError(bad.reason)),
            None => Ok(Some(rows)),
        }
    }
    fn is_full(&self) -> bool {
        self.json.is_full()
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
    split: Arc<TextSplit>,
    chunks: BoxStream<'static, Result<Bytes>>,
    buffer: Bytes,
    /// Bytes of the file decoded so far: after a full batch, the offset
    /// of the next record.
    offset: u64,
    /// Where the first record of the batch being decoded begins.
    batch_start: u64,
    decoder: Box<dyn Decoder>,
    finished: bool,
    /// Columns of the table to keep (CSV decodes every column).
    projection: Option<Vec<usize>>,
}

impl DecodeState {
    /// The next batch and the byte offset just after its last record.
    async fn next_batch(&mut self) -> Option<Result<(RecordBatch, SplitPosition)>> {
        loop {
            if !self.buffer.is_empty() {
                match self.decoder.decode(&self.buffer) {
                    Ok(consumed) => {
                        self.buffer.advance(consumed);
                        self.offset += consumed as u64;
                    }
                    Err(e) => return Some(Err(self.error(e).await)),
                }
                if self.decoder.is_full() {
                    return self.flush_at().await.transpose();
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
                    return self.flush_at().await.transpose();
                }
            }
        }
    }

    async fn flush_at(&mut self) -> Result<Option<(RecordBatch, SplitPosition)>> {
        let offset = self.offset;
        let batch = match self.flush() {
            Ok(batch) => batch,
            Err(e) => return Err(self.error(e).await),
        };
        self.batch_start = offset;
        Ok(batch.map(|batch| (batch, at_byte(offset))))
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        let batch = self.decoder.flush()?;
        match (batch, &self.projection) {
            (Some(b), Some(p)) => b.project(p).map(Some),
            (b, _) => Ok(b),
        }
    }

    /// A data error for `e`, raised decoding the records of the batch
    /// from `batch_start` on: it names the bad record's byte offset, found
    /// by decoding them again one at a time, and quotes at most a
    /// [`preview`] of the reason (which may hold the whole value).
    fn error(&self, e: ArrowError) -> impl Future<Output = SluiceError> + Send + 'static {
        let (split, batch_start) = (Arc::clone(&self.split), self.batch_start);
        async move {
            let url = &split.url;
            match split.find_bad_record(batch_start).await {
                Some((at, reason)) => SluiceError::Data(format!(
                    "{url}: the record at byte {at} cannot be decoded: {}",
                    preview(&reason.to_string())
                )),
                None => SluiceError::Data(format!(
                    "{url}: a record at or after byte {batch_start} cannot be decoded: {}",
                    preview(&e.to_string())
                )),
            }
        }
    }
}

impl TextSplit {
    /// A decoder for the records from byte `start` on, `batch_size` rows
    /// at a time.
    fn decoder(&self, start: u64, batch_size: usize) -> Result<Decoding, ArrowError> {
        match self.format {
            Format::Json => arrow::json::ReaderBuilder::new(Arc::clone(&self.request.schema))
                .with_batch_size(batch_size)
                .build_decoder()
                .map(|d| (Box::new(Json(d, batch_size)) as Box<dyn Decoder>, None)),
            Format::Csv { delimiter, header } => Ok((
                Box::new(Csv(arrow::csv::ReaderBuilder::new(Arc::clone(
                    &self.table_schema,
                ))
                // A resumed file starts after its header.
                .with_header(header && start == 0)
                .with_delimiter(delimiter)
                .with_batch_size(batch_size)
                .build_decoder())) as Box<dyn Decoder>,
                Some(self.request.projection.clone()),
            )),
            Format::DebeziumJson => arrow::json::ReaderBuilder::new(
                crate::debezium::envelope_schema(&self.request.schema, false),
            )
            .with_batch_size(batch_size)
            .build_decoder()
            .map(|d| {
                let json = Json(d, batch_size);
                let row = Arc::clone(&self.request.schema);
                (Box::new(Debezium { json, row }) as Box<dyn Decoder>, None)
            }),
            Format::Parquet => Err(ArrowError::InvalidArgumentError(format!(
                "{:?} files are not read as text lines",
                self.format
            ))),
        }
    }

    /// The bytes of the split from `start` on.
    ///
    /// The file is read in large ranges, one ahead of the decoder. A
    /// single GET's stream would come in 8 KiB pieces from a local disk,
    /// each a blocking task of its own: most of the time of reading a
    /// JSON file went to waking threads.
    fn chunks(&self, start: u64) -> BoxStream<'static, Result<Bytes>> {
        let store = Arc::clone(&self.store);
        let path = self.path.clone();
        let url = self.url.clone();
        let end = self.range.end;
        let (planned, local) = (self.version.clone(), self.local);
        futures::stream::once(async move {
            let fail = |e| SluiceError::io(format!("reading {url}"), e);
            let meta = store.head(&path).await.map_err(fail)?;
            let size = meta.size;
            if end > size {
                // Shorter than when the job was planned: it was changed since.
                return Err(SluiceError::Data(format!(
                    "{url}: reading up to byte {end}, but it has only {size} bytes now"
                )));
            }
            let now = super::version::file_version(&meta, local);
            if now != planned {
                return Err(SluiceError::Data(format!(
                    "{url}: the file changed while the job read it (when planned: {planned}; now: {now}); its bytes from {start} on are not the ones planning split"
                )));
            }
            let ranges: Vec<Range<u64>> = (start..end)
                .step_by(READ_SIZE as usize)
                .map(|from| from..(from + READ_SIZE).min(end))
                .collect();
            Ok(futures::stream::iter(ranges)
                .map(move |range| {
                    let (store, path, url) = (Arc::clone(&store), path.clone(), url.clone());
                    async move {
                        store
                            .get_range(&path, range)
                            .await
                            .map_err(|e| SluiceError::io(format!("reading {url}"), e))
                    }
                })
                .buffered(2)
                .boxed())
        })
        .try_flatten()
        .boxed()
    }

    /// The first record from byte `from` on that does not decode on its
    /// own, with its offset and why; `None` if each does (or the bytes
    /// cannot be read again).
    async fn find_bad_record(&self, from: u64) -> Option<(u64, ArrowError)> {
        let (mut decoder, _) = self.decoder(from, 1).ok()?;
        let mut chunks = self.chunks(from);
        let (mut record, mut offset) = (from, from);
        while let Some(chunk) = chunks.next().await {
            let mut chunk = chunk.ok()?;
            while !chunk.is_empty() {
                let consumed = match decoder.decode(&chunk) {
                    Ok(consumed) => consumed,
                    Err(e) => return Some((record, e)),
                };
                chunk.advance(consumed);
                offset += consumed as u64;
                if decoder.is_full() {
                    if let Err(e) = decoder.flush() {
                        return Some((record, e));
                    }
                    record = offset;
                } else if consumed == 0 {
                    return None;
                }
            }
        }
        decoder.flush().err().map(|e| (record, e))
    }
}

impl TextSplit {
    /// Where record `k` (0-based) of those from byte `from` on starts, found
    /// by decoding them again one at a time; `None` if the bytes cannot be
    /// read or decoded again. A CSV header is not a record.
    async fn record_start(&self, mut from: u64, k: usize) -> Option<u64> {
        let json = self.format.is_json_lines();
        if matches!(self.format, Format::Csv { header: true, .. }) && from == 0 {
            let first = self.chunks(0).next().await?.ok()?;
            from = first.iter().position(|&b| b == b'\n')? as u64 + 1;
        }
        let (mut decoder, _) = self.decoder(from, 1).ok()?;
        let mut chunks = self.chunks(from);
        let (mut offset, mut count, mut start) = (from, 0, None);
        while let Some(chunk) = chunks.next().await {
            let mut chunk = chunk.ok()?;
            while !chunk.is_empty() {
                if start.is_none() {
                    // Between JSON records, blank space belongs to neither.
                    if json {
                        let blank = chunk.iter().take_while(|b| b.is_ascii_whitespace()).count();
                        chunk.advance(blank);
                        offset += blank as u64;
                        if chunk.is_empty() {
                            break;
                        }
                    }
                    start = Some(offset);
                }
                let consumed = decoder.decode(&chunk).ok()?;
                chunk.advance(consumed);
                offset += consumed as u64;
                if decoder.is_full() {
                    if count == k {
                        return start;
                    }
                    decoder.flush().ok()?;
                    (count, start) = (count + 1, None);
                } else if consumed == 0 {
                    return None;
                }
            }
        }
        // The last record, without a newline after it.
        (count == k).then_some(start).flatten()
    }
}

impl Split for TextSplit {
    fn describe(&self) -> String {
        if self.whole {
            self.url.clone()
        } else {
            format!(
                "{} bytes {}..{}",
                self.url, self.range.start, self.range.end
            )
        }
    }

    fn version(&self) -> Option<String> {
        Some(self.version.clone())
    }

    fn first_event_time(&self) -> Option<Millis> {
        self.first_time
    }

    fn open(self: Arc<Self>) -> BoxStream<'static, Result<RecordBatch>> {
        without_positions(self.open_at(None))
    }

    /// The record's byte offset in the file, as decoding errors give it: a
    /// line number would need every byte before the split counted.
    fn locate_row<'a>(
        &'a self,
        before: &'a SplitPosition,
        _after: &'a SplitPosition,
        _rows: usize,
        row: usize,
    ) -> BoxFuture<'a, String> {
        Box::pin(async move {
            let url = &self.url;
            let Ok(from) = byte_of(before) else {
                return format!("{url}: record {} of a batch", row + 1);
            };
            match self.record_start(from, row).await {
                Some(at) => format!("{url}: the record at byte {at}"),
                None => format!("{url}: record {} from byte {from}", row + 1),
            }
        })
    }

    /// Positions are byte offsets (`bytes:N`, at a record's start): a
    /// resumed file is read from there, not decoded again from its start.
    fn start_position(&self) -> SplitPosition {
        at_byte(self.range.start)
    }

    fn open_at(
        self: Arc<Self>,
        position: Option<SplitPosition>,
    ) -> BoxStream<'static, Result<(RecordBatch, SplitPosition)>> {
        let start = match position.as_ref().map(byte_of) {
            None => Ok(self.range.start),
            Some(Ok(offset)) if self.range.contains(&offset) || offset == self.range.end => {
                Ok(offset)
            }
            // Another split's position: reading from there would repeat
            // or skip rows of other splits.
            Some(Ok(offset)) => Err(SluiceError::Runtime(format!(
                "{}: resuming at byte {offset}, outside this split's bytes {}..{}",
                self.url, self.range.start, self.range.end
            ))),
            Some(Err(e)) => Err(SluiceError::Runtime(format!("{}: {e}", self.url))),
        };
        let start = match start {
            Ok(start) => start,
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
        let (decoder, projection) = match self.decoder(start, self.request.batch_size) {
            Ok(d) => d,
            Err(e) => {
                let url = self.url.clone();
                return futures::stream::once(async move {
                    Err(SluiceError::Data(format!("{url}: {e}")))
                })
                .boxed();
            }
        };
        let state = DecodeState {
            chunks: self.chunks(start),
            split: self,
            buffer: Bytes::new(),
            offset: start,
            batch_start: start,
            decoder,
            finished: false,
            projection,
        };
        futures::stream::unfold(state, |mut state| async move {
            state.next_batch().await.map(|batch| (batch, state))
        })
        .boxed()
    }
}

/// Bytes per read of a text file (small in tests, so records and batches
/// cross read boundaries there).
const READ_SIZE: u64 = if cfg!(test) { 8 << 10 } else { 4 << 20 };

fn at_byte(offset: u64) -> SplitPosition {
    SplitPosition(format!("bytes:{offset}"))
}

fn byte_of(position: &SplitPosition) -> Result<u64> {
    position
        .0
        .strip_prefix("bytes:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            SluiceError::Runtime(format!(
                "'{}' is not a byte offset in a text file (was the table's format changed?)",
                position.0
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Int64Type, Schema};
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
            split_size: DEFAULT_SPLIT_SIZE,
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

    /// Reading on from any batch's position (a byte offset) yields exactly
    /// the rows after it, for JSON lines and for CSV with a header.
    #[tokio::test]
    async fn resuming_at_a_byte_offset_yields_exactly_the_rows_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rows = 500;
        let json: String = (0..rows)
            .map(|i| format!("{{\"id\": {i}, \"pad\": \"{}\"}}\n", "x".repeat(i % 30)))
            .collect();
        let csv: String = std::iter::once("id,pad\n".to_string())
            .chain((0..rows).map(|i| format!("{i},{}\n", "y".repeat(i % 30))))
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("pad", DataType::Utf8, true),
        ]));
        for (name, text, format) in [
            ("part-0.json", json, Format::Json),
            (
                "part-0.csv",
                csv,
                Format::Csv {
                    delimiter: b',',
                    header: true,
                },
            ),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            let source = TextSource {
                files: FileSet::parse(&path.display().to_string(), "t").expect("files"),
                table_schema: Arc::clone(&schema),
                format,
                split_size: DEFAULT_SPLIT_SIZE,
            };
            let request = ScanRequest {
                metrics: Arc::new(JobMetrics::default()),
                projection: vec![0],
                schema: Arc::new(schema.project(&[0]).expect("project")),
                time_column: None,
                batch_size: 64,
            };
            let splits = source.plan_splits(request).await.expect("splits");
            let split = &splits[0];
            let read = |position: Option<SplitPosition>| {
                let split = Arc::clone(split);
                async move {
                    let mut out = Vec::new();
                    let mut batches = split.open_at(position);
                    while let Some(item) = batches.next().await {
                        let (batch, position) = item.expect("batch");
                        let ids: Vec<i64> = batch
                            .column(0)
                            .as_primitive::<Int64Type>()
                            .values()
                            .to_vec();
                        out.push((ids, position));
                    }
                    out
                }
            };
            let all = read(None).await;
            assert_eq!(
                all.iter().flat_map(|b| b.0.clone()).collect::<Vec<_>>(),
                (0..rows as i64).collect::<Vec<_>>(),
                "{name}"
            );
            assert!(all.len() > 3, "{name}: several batches");
            for (ids, position) in &all {
                let next = ids.last().copied().unwrap_or(-1) + 1;
                let rest: Vec<i64> = read(Some(position.clone()))
                    .await
                    .into_iter()
                    .flat_map(|b| b.0)
                    .collect();
                assert_eq!(
                    rest,
                    (next..rows as i64).collect::<Vec<_>>(),
                    "{name} after {position:?}"
                );
            }
            let mut wrong = Arc::clone(split).open_at(Some(SplitPosition("rows:3".into())));
            assert!(
                wrong.next().await.is_some_and(|r| r.is_err()),
                "{name}: a position of another kind is an error"
            );
        }
    }

    /// The splits of the JSON-lines file at `path`, 150 bytes each, reading
    /// columns `projection` in batches of 4 rows, with `time` the rowtime.
    async fn json_splits(
        path: &std::path::Path,
        schema: &SchemaRef,
        projection: &[usize],
        time: &str,
    ) -> Vec<Arc<dyn Split>> {
        let source = TextSource {
            files: FileSet::parse(&path.display().to_string(), "t").expect("files"),
            table_schema: Arc::clone(schema),
            format: Format::Json,
            split_size: 150,
        };
        let request = ScanRequest {
            metrics: Arc::new(JobMetrics::default()),
            projection: projection.to_vec(),
            schema: Arc::new(schema.project(projection).expect("project")),
            time_column: Some(time.into()),
            batch_size: 4,
        };
        source.plan_splits(request).await.expect("splits")
    }

    /// With a split size far below the file's, splits are runs of whole
    /// lines that tile the file: read one after another they give every
    /// record once, in order, whatever the line lengths (lines longer than
    /// a split, one longer than planning reads for a first line, CRLF line
    /// ends, a last line without a newline); each split knows its first
    /// record's event time when its first line is short enough; and a split
    /// resumed at its start or at any of its positions gives the rest of
    /// its own rows, and only those.
    #[tokio::test]
    async fn json_splits_are_whole_lines_that_tile_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("part-0.json");
        let rows = 300;
        let long = 150;
        let pad = |i: usize| {
            let len = match i {
                _ if i == long => PEEK_SIZE as usize + 10,
                _ if i.is_multiple_of(7) => 400,
                _ => i % 40,
            };
            "x".repeat(len)
        };
        let text: String = (0..rows)
            .map(|i| {
                let end = match i {
                    _ if i + 1 == rows => "",
                    _ if i % 2 == 1 => "\r\n",
                    _ => "\n",
                };
                format!(
                    "{{\"id\": {i}, \"ts\": {}, \"pad\": \"{}\"}}{end}",
                    1000 * i,
                    pad(i)
                )
            })
            .collect();
        std::fs::write(&path, text).expect("write");
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("pad", DataType::Utf8, true),
        ]));
        let splits = json_splits(&path, &schema, &[0, 1], "ts").await;
        assert!(splits.len() > 20, "{} splits", splits.len());
        let read = |split: Arc<dyn Split>, position: Option<SplitPosition>| async move {
            let mut out = Vec::new();
            let mut batches = split.open_at(position);
            while let Some(item) = batches.next().await {
                let (batch, position) = item.expect("batch");
                let ids = batch
                    .column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec();
                let times = batch.column(1).as_primitive::<TimestampMillisecondType>();
                out.push((ids, times.value(0), position));
            }
            out
        };
        let mut all = Vec::new();
        for split in &splits {
            let batches = read(Arc::clone(split), None).await;
            assert!(!batches.is_empty(), "{} is empty", split.describe());
            let first_id = batches[0].0[0];
            assert_eq!(
                split.first_event_time(),
                (first_id != long as i64).then_some(batches[0].1),
                "{}: the first row's time",
                split.describe()
            );
            let ids: Vec<i64> = batches.iter().flat_map(|b| b.0.clone()).collect();
            let from_start: Vec<i64> = read(Arc::clone(split), Some(split.start_position()))
                .await
                .into_iter()
                .flat_map(|b| b.0)
                .collect();
            assert_eq!(from_start, ids, "{} from its start", split.describe());
            if split.start_position() != at_byte(0) {
                let mut elsewhere = Arc::clone(split).open_at(Some(at_byte(0)));
                assert!(
                    elsewhere.next().await.is_some_and(|r| r.is_err()),
                    "{}: a position outside the split is an error",
                    split.describe()
                );
            }
            for (k, (done, _, position)) in batches.iter().enumerate() {
                let rest: Vec<i64> = read(Arc::clone(split), Some(position.clone()))
                    .await
                    .into_iter()
                    .flat_map(|b| b.0)
                    .collect();
                let after: usize = batches[..=k].iter().map(|b| b.0.len()).sum();
                assert_eq!(rest, ids[after..], "{} after {done:?}", split.describe());
            }
            all.extend(ids);
        }
        assert_eq!(all, (0..rows as i64).collect::<Vec<_>>());
        assert!(
            splits.iter().any(|s| s.first_event_time().is_none()),
            "the long line starts a split"
        );
    }

    /// The first error of reading `path`, in `format`, as a table of one
    /// BIGINT `id`.
    async fn first_error(path: &std::path::Path, format: Format) -> SluiceError {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let source = TextSource {
            files: FileSet::parse(&path.display().to_string(), "t").expect("files"),
            table_schema: Arc::clone(&schema),
            format,
            split_size: DEFAULT_SPLIT_SIZE,
        };
        let request = ScanRequest {
            metrics: Arc::new(JobMetrics::default()),
            projection: vec![0],
            schema,
            time_column: None,
            batch_size: 64,
        };
        for split in source.plan_splits(request).await.expect("splits") {
            let mut batches = split.open();
            while let Some(batch) = batches.next().await {
                if let Err(e) = batch {
                    return e;
                }
            }
        }
        panic!("{} read without error", path.display());
    }

    /// A bad value of megabytes is quoted by a few hundred bytes of it,
    /// and the message names the file and the bad record's byte offset,
    /// for a value of the wrong type as for broken JSON, and in CSV.
    #[tokio::test]
    async fn a_huge_bad_line_gives_a_short_message_naming_file_and_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("part-0.json");
        let good: String = (0..100).map(|i| format!("{{\"id\": {i}}}\n")).collect();
        let huge = "x".repeat(3 << 20);
        let csv: String = (0..100).map(|i| format!("{i}\n")).collect();
        let csv_format = Format::Csv {
            delimiter: b',',
            header: false,
        };
        for (good, bad, format) in [
            (&good, format!("{{\"id\": \"{huge}\"}}\n"), Format::Json),
            (
                &good,
                format!("{{\"id\": 1, \"pad\": \"{huge}\" \"oops\"}}\n"),
                Format::Json,
            ),
            (&csv, format!("{huge}\n"), csv_format),
        ] {
            std::fs::write(&path, format!("{good}{bad}{good}")).expect("write");
            let err = first_error(&path, format).await;
            assert!(matches!(err, SluiceError::Data(_)), "{err:?}");
            let message = err.to_string();
            assert!(
                message.len() < 600,
                "{} bytes: {}",
                message.len(),
                &message[..600]
            );
            assert!(
                message.starts_with(&format!(
                    "file://{}: the record at byte {} cannot be decoded: ",
                    path.display(),
                    good.len()
                )),
                "{message}"
            );
        }
    }

    /// A file rewritten between planning and reading (same name, same
    /// size, other bytes) is an error naming it, not rows read at offsets
    /// planned in another file; its splits' keys name the version planned.
    #[tokio::test]
    async fn a_file_changed_after_planning_is_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("part-0.json");
        std::fs::write(&path, "{\"id\": 1}\n{\"id\": 2}\n").expect("write");
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let splits = json_splits(&path, &schema, &[0], "id").await;
        let key = splits[0].key();
        assert!(
            key.starts_with(&format!("file://{} @ size 20, modified ", path.display())),
            "{key}"
        );
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::write(&path, "{\"id\": 7}\n{\"id\": 8}\n").expect("rewrite");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(later))
            .expect("touch");
        let mut batches = Arc::clone(&splits[0]).open();
        let err = batches
            .next()
            .await
            .expect("an item")
            .expect_err("changed since planned")
            .to_string();
        assert!(
            err.starts_with(&format!(
                "file://{}: the file changed while the job read it (when planned: size 20, modified ",
                path.display()
            )),
            "{err}"
        );
        assert_ne!(json_splits(&path, &schema, &[0], "id").await[0].key(), key);
    }

    /// A row is named by its record's byte offset in the file, found again
    /// from the position its batch was read from: past blank lines and CRLF
    /// line ends in JSON, past a CSV header, and the same from a position
    /// in the middle of the file (a resumed split) as from its start.
    #[tokio::test]
    async fn a_row_is_located_by_its_records_byte_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let json = "{\"id\": 0}\r\n\n{\"id\": 1}\n  {\"id\": 2}\n{\"id\": 3}";
        let csv = "id\n0\n1\n2\n3\n";
        let header = Format::Csv {
            delimiter: b',',
            header: true,
        };
        for (name, text, format) in [("a.json", json, Format::Json), ("a.csv", csv, header)] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            let source = TextSource {
                files: FileSet::parse(&path.display().to_string(), "t").expect("files"),
                table_schema: Arc::clone(&schema),
                format,
                split_size: DEFAULT_SPLIT_SIZE,
            };
            let request = ScanRequest {
                metrics: Arc::new(JobMetrics::default()),
                projection: vec![0],
                schema: Arc::clone(&schema),
                time_column: None,
                batch_size: 64,
            };
            let split = &source.plan_splits(request).await.expect("splits")[0];
            let url = format!("file://{}", path.display());
            let starts: Vec<u64> = (0..4)
                .map(|id| text.find(&id.to_string()).expect("a record") as u64)
                .map(|at| match format {
                    // `{"id": ` comes before the digit.
                    Format::Json => at - 7,
                    _ => at,
                })
                .collect();
            let end = at_byte(text.len() as u64);
            for (row, at) in starts.iter().enumerate() {
                assert_eq!(
                    split
                        .locate_row(&split.start_position(), &end, 4, row)
                        .await,
                    format!("{url}: the record at byte {at}"),
                    "{name} row {row}"
                );
            }
            assert_eq!(
                split.locate_row(&at_byte(starts[1]), &end, 3, 1).await,
                format!("{url}: the record at byte {}", starts[2]),
                "{name} resumed"
            );
        }
    }

    /// An empty file is one split that yields nothing.
    #[tokio::test]
    async fn an_empty_json_file_is_one_empty_split() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("part-0.json");
        std::fs::write(&path, "").expect("write");
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let splits = json_splits(&path, &schema, &[0], "id").await;
        assert_eq!(splits.len(), 1);
        assert_eq!(splits[0].first_event_time(), None);
        let mut batches = Arc::clone(&splits[0]).open();
        assert!(batches.next().await.is_none());
    }
}
