//! The `nexmark` connector: Nexmark events generated in the source, in the
//! shape of the Flink Nexmark benchmark's `datagen` table, so that
//! benchmark's DDL and queries run unchanged and stream mode has a source
//! that needs no broker.
//!
//! ```sql
//! CREATE TABLE datagen (
//!     event_type INT,
//!     person  ROW<id BIGINT, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR,
//!                 city VARCHAR, state VARCHAR, dateTime TIMESTAMP(3), extra VARCHAR>,
//!     auction ROW<id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT,
//!                 reserve BIGINT, dateTime TIMESTAMP(3), expires TIMESTAMP(3),
//!                 seller BIGINT, category BIGINT, extra VARCHAR>,
//!     bid     ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR,
//!                 url VARCHAR, dateTime TIMESTAMP(3), extra VARCHAR>,
//!     dateTime AS CASE WHEN event_type = 0 THEN person.dateTime
//!                      WHEN event_type = 1 THEN auction.dateTime
//!                      ELSE bid.dateTime END,
//!     WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
//! ) WITH ('connector' = 'nexmark', 'events.num' = '10000000');
//! ```
//!
//! Options (the Flink benchmark's names): `events.num` (the source ends
//! after that many events; without it, it never ends), `first-event.rate`
//! and `next-event.rate` (events per second of event time; default 10,000),
//! `person.proportion`, `auction.proportion`, `bid.proportion` (default
//! 1, 3, 46). Event time starts at 2026-01-01 00:00:00 UTC, as `sluice gen
//! nexmark` does, so both give the same events. A bounded source generates
//! as fast as it can; an unbounded one keeps to its rate in wall-clock time.
//!
//! The `ROW` fields are filled by position, in the order above; their names
//! are the table's own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, StringBuilder, StructArray, TimestampMillisecondBuilder,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;
use nexmark::event::Event;
use sluice_engine::connector::{
    ConnectorContext, OptionNames, Reading, ScanRequest, Source, SourceFactory, Split,
    SplitPosition, without_positions,
};
use sluice_engine::error::ExecContext;
use sluice_engine::sql::{Mode, Options, TableDef};
use sluice_engine::{Result, SluiceError};

/// 2026-01-01T00:00:00Z: where generated Nexmark event time starts.
pub const BASE_TIME_MS: u64 = 1_767_225_600_000;

/// The generator's settings, with the words Flink's Nexmark generator uses
/// (nexmark-flink's `PersonGenerator`): `'OR'`, `'Boise'`, `'Peter'`. The
/// `nexmark` crate writes them in lower case, so the benchmark's own
/// queries (q3: `P.state = 'OR'`) found nothing in its events.
pub fn flink_config() -> NexmarkConfig {
    let words = |text: &str| text.split(',').map(str::to_string).collect();
    NexmarkConfig {
        base_time: BASE_TIME_MS,
        us_states: words("AZ,CA,ID,OR,WA,WY"),
        us_cities: words(
            "Phoenix,Los Angeles,San Francisco,Boise,Portland,Bend,Redmond,Seattle,Kent,Cheyenne",
        ),
        first_names: words("Peter,Paul,Luke,John,Saul,Vicky,Kate,Julie,Sarah,Deiter,Walter"),
        last_names: words("Shultz,Abrams,Spencer,White,Bartels,Walton,Smith,Jones,Noris"),
        ..NexmarkConfig::default()
    }
}

/// The kinds of a struct's fields, in Nexmark's order.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Text,
    Time,
}

use Kind::{Int, Text, Time};

const PERSON: [Kind; 8] = [Int, Text, Text, Text, Text, Text, Time, Text];
const AUCTION: [Kind; 10] = [Int, Text, Text, Int, Int, Time, Time, Int, Int, Text];
const BID: [Kind; 7] = [Int, Int, Int, Text, Text, Time, Text];

/// What a column of the table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    EventType,
    Person,
    Auction,
    Bid,
}

impl Column {
    fn of(table: &str, field: &Field) -> Result<Self> {
        let (column, kinds): (Self, &[Kind]) = match field.name().to_ascii_lowercase().as_str() {
            "event_type" => return Ok(Self::EventType),
            "person" => (Self::Person, &PERSON),
            "auction" => (Self::Auction, &AUCTION),
            "bid" => (Self::Bid, &BID),
            other => {
                return Err(SluiceError::config(format!(
                    "table `{table}`: the nexmark connector provides the columns event_type, person, auction and bid, not `{other}`"
                )));
            }
        };
        match field.data_type() {
            DataType::Struct(fields) if fields.len() == kinds.len() => Ok(column),
            other => Err(SluiceError::config(format!(
                "table `{table}`: column `{}` must be a ROW of {} fields as in the Flink Nexmark benchmark, not {other}",
                field.name(),
                kinds.len()
            ))),
        }
    }

    fn kinds(self) -> &'static [Kind] {
        match self {
            Self::EventType => &[],
            Self::Person => &PERSON,
            Self::Auction => &AUCTION,
            Self::Bid => &BID,
        }
    }
}

pub struct NexmarkFactory;

impl SourceFactory for NexmarkFactory {
    fn option_names(&self) -> OptionNames {
        &[
            "events.num",
            "first-event.rate",
            "next-event.rate",
            "person.proportion",
            "auction.proportion",
            "bid.proportion",
        ]
    }
    fn create_source(
        &self,
        table: &TableDef,
        options: &mut Options,
        context: &ConnectorContext,
    ) -> Result<Arc<dyn Source>> {
        for field in table.physical.fields() {
            Column::of(&table.name, field)?;
        }
        let count = |key: &str, default: usize, options: &mut Options| {
            options
                .take_parsed::<usize>(key, "a whole number")
                .map(|v| v.unwrap_or(default))
        };
        let events = options.take_parsed::<u64>("events.num", "a whole number")?;
        let first_rate = count("first-event.rate", 10_000, options)?;
        let next_rate = count("next-event.rate", first_rate, options)?;
        let config = NexmarkConfig {
            first_rate,
            next_rate,
            person_proportion: count("person.proportion", 1, options)?,
            auction_proportion: count("auction.proportion", 3, options)?,
            bid_proportion: count("bid.proportion", 46, options)?,
            ..flink_config()
        };
        if first_rate == 0
            || next_rate == 0
            || config.person_proportion + config.auction_proportion + config.bid_proportion == 0
        {
            return Err(SluiceError::config(format!(
                "table `{}`: the nexmark rates and proportions must not be zero",
                table.name
            )));
        }
        if context.mode == Mode::Batch && events.is_none() {
            return Err(SluiceError::config(format!(
                "table `{}`: a nexmark source in batch mode must be bounded: set 'events.num'",
                table.name
            )));
        }
        Ok(Arc::new(NexmarkSource {
            table: table.name.clone(),
            config,
            events,
            splits: context.parallelism.max(1),
        }))
    }
}

#[derive(Debug, Clone)]
struct NexmarkSource {
    table: String,
    config: NexmarkConfig,
    events: Option<u64>,
    splits: usize,
}

impl Source for NexmarkSource {
    fn plan_splits(&self, request: ScanRequest) -> BoxFuture<'_, Result<Vec<Arc<dyn Split>>>> {
        Box::pin(async move {
            let columns = request
                .schema
                .fields()
                .iter()
                .map(|f| Column::of(&self.table, f))
                .collect::<Result<Vec<_>>>()?;
            let n = self.splits as u64;
            Ok((0..n)
                .map(|i| {
                    Arc::new(NexmarkSplit {
                        config: self.config.clone(),
                        index: i,
                        step: n,
                        count: self.events.map(|e| e.saturating_sub(i).div_ceil(n)),
                        rate: self.config.first_rate as f64 / n as f64,
                        schema: Arc::clone(&request.schema),
                        columns: columns.clone(),
                        batch_size: request.batch_size,
                    }) as Arc<dyn Split>
                })
                .collect())
        })
    }

    fn reading(&self) -> Reading {
        Reading::Concurrent { idle_timeout: None }
    }

    fn is_bounded(&self) -> bool {
        self.events.is_some()
    }
}

/// Every `step`-th event from `index`: event times ascend within a split.
#[derive(Debug)]
struct NexmarkSplit {
    config: NexmarkConfig,
    index: u64,
    step: u64,
    /// Events this split yields; `None` for ever.
    count: Option<u64>,
    /// Events per wall-clock second when unbounded.
    rate: f64,
    schema: SchemaRef,
    columns: Vec<Column>,
    batch_size: usize,
}

impl Split for NexmarkSplit {
    fn describe(&self) -> String {
        match self.count {
            Some(count) => format!(
                "nexmark events {} + {}k for {count} events",
                self.index, self.step
            ),
            None => format!("nexmark events {} + {}k", self.index, self.step),
        }
    }

    fn min_event_time(&self) -> Option<i64> {
        Some(BASE_TIME_MS as i64)
    }

    fn estimated_rows(&self) -> Option<u64> {
        self.count
    }

    fn key(&self) -> String {
        format!("nexmark:{}/{}", self.index, self.step)
    }

    fn open(self: Arc<Self>) -> BoxStream<'static, Result<RecordBatch>> {
        without_positions(self.open_at(None))
    }

    /// Positions count the split's events; resuming starts the generator
    /// there, without generating (or waiting for) the events before it.
    fn open_at(
        self: Arc<Self>,
        position: Option<SplitPosition>,
    ) -> BoxStream<'static, Result<(RecordBatch, SplitPosition)>> {
        let made = match position.as_ref().map(SplitPosition::rows) {
            None => 0,
            Some(Ok(rows)) => rows,
            Some(Err(e)) => return futures::stream::once(async { Err(e) }).boxed(),
        };
        if self.count.is_some_and(|count| made > count) {
            let e = SluiceError::Data(format!(
                "{}: resuming after event {made} of {:?}",
                self.describe(),
                self.count
            ));
            return futures::stream::once(async { Err(e) }).boxed();
        }
        let generator = EventGenerator::new(self.config.clone())
            .with_offset(self.index + made * self.step)
            .with_step(self.step);
        // The wall-clock pace counts from the resumed event on.
        let state = (self, generator, made, made, Instant::now());
        futures::stream::unfold(
            state,
            |(split, mut generator, made, resumed, started)| async move {
                let left = split.count.map_or(u64::MAX, |c| c - made);
                if left == 0 {
                    return None;
                }
                let rows = (split.batch_size as u64).min(left) as usize;
                if split.count.is_none() {
                    // Unbounded: keep to the rate in wall-clock time.
                    let due = Duration::from_secs_f64((made - resumed) as f64 / split.rate);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                let made_now = made + rows as u64;
                let item = split
                    .batch(&mut generator, rows)
                    .map(|batch| (batch, SplitPosition::after_rows(made_now)));
                Some((item, (split, generator, made_now, resumed, started)))
            },
        )
        .boxed()
    }
}

impl NexmarkSplit {
    fn batch(&self, generator: &mut EventGenerator, rows: usize) -> Result<RecordBatch> {
        let mut event_type = Int32Builder::with_capacity(rows);
        let mut structs: Vec<StructBuilder> = self
            .columns
            .iter()
            .map(|c| StructBuilder::new(c.kinds(), rows))
            .collect();
        for event in generator.by_ref().take(rows) {
            let kind = match &event {
                Event::Person(_) => Column::Person,
                Event::Auction(_) => Column::Auction,
                Event::Bid(_) => Column::Bid,
            };
            event_type.append_value(match kind {
                Column::Person => 0,
                Column::Auction => 1,
                _ => 2,
            });
            for (column, builder) in self.columns.iter().zip(&mut structs) {
                if *column == kind {
                    builder.append(&event);
                } else if *column != Column::EventType {
                    builder.append_null();
                }
            }
        }
        let event_type: ArrayRef = Arc::new(event_type.finish());
        let columns = self
            .columns
            .iter()
            .zip(structs)
            .zip(self.schema.fields())
            .map(|((column, builder), field)| match column {
                Column::EventType => arrow::compute::cast(&event_type, field.data_type())
                    .exec_context(|| "building nexmark event types".to_string()),
                _ => builder.finish(field),
            })
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .exec_context(|| "building a nexmark batch".to_string())
    }
}

enum FieldBuilder {
    Int(Int64Builder),
    Text(StringBuilder),
    Time(TimestampMillisecondBuilder),
}

/// Builds one ROW column: its fields by position, and which rows are null.
struct StructBuilder {
    fields: Vec<FieldBuilder>,
    valid: Vec<bool>,
}

impl StructBuilder {
    fn new(kinds: &[Kind], rows: usize) -> Self {
        Self {
            fields: kinds
                .iter()
                .map(|k| match k {
                    Int => FieldBuilder::Int(Int64Builder::with_capacity(rows)),
                    Text => FieldBuilder::Text(StringBuilder::with_capacity(rows, rows * 16)),
                    Time => FieldBuilder::Time(TimestampMillisecondBuilder::with_capacity(rows)),
                })
                .collect(),
            valid: Vec::with_capacity(rows),
        }
    }

    /// Appends an event's fields in Nexmark's order, without allocating:
    /// this runs once per generated event.
    fn append(&mut self, event: &Event) {
        let (ints, texts, times): ([i64; 5], [&str; 6], [i64; 2]) = match event {
            Event::Person(p) => (
                [p.id as i64, 0, 0, 0, 0],
                [
                    &p.name,
                    &p.email_address,
                    &p.credit_card,
                    &p.city,
                    &p.state,
                    &p.extra,
                ],
                [p.date_time as i64, 0],
            ),
            Event::Auction(a) => (
                [
                    a.id as i64,
                    a.initial_bid as i64,
                    a.reserve as i64,
                    a.seller as i64,
                    a.category as i64,
                ],
                [&a.item_name, &a.description, &a.extra, "", "", ""],
                [a.date_time as i64, a.expires as i64],
            ),
            Event::Bid(b) => (
                [b.auction as i64, b.bidder as i64, b.price as i64, 0, 0],
                [&b.channel, &b.url, &b.extra, "", "", ""],
                [b.date_time as i64, 0],
            ),
        };
        let (mut int, mut text, mut time) = (0, 0, 0);
        // The builders follow the kind's field order, so the i-th builder
        // of a kind takes that kind's i-th value.
        for field in &mut self.fields {
            match field {
                FieldBuilder::Int(b) => {
                    b.append_value(ints[int]);
                    int += 1;
                }
                FieldBuilder::Text(b) => {
                    b.append_value(texts[text]);
                    text += 1;
                }
                FieldBuilder::Time(b) => {
                    b.append_value(times[time]);
                    time += 1;
                }
            }
        }
        self.valid.push(true);
    }

    fn append_null(&mut self) {
        for field in &mut self.fields {
            match field {
                FieldBuilder::Int(b) => b.append_null(),
                FieldBuilder::Text(b) => b.append_null(),
                FieldBuilder::Time(b) => b.append_null(),
            }
        }
        self.valid.push(false);
    }

    /// The column, with the table's field names and types.
    fn finish(self, field: &Field) -> Result<ArrayRef> {
        let DataType::Struct(declared) = field.data_type() else {
            return Err(SluiceError::Runtime(format!(
                "nexmark column `{}` is not a ROW",
                field.name()
            )));
        };
        let children = self
            .fields
            .into_iter()
            .zip(declared.iter())
            .map(|(builder, declared)| {
                let built: ArrayRef = match builder {
                    FieldBuilder::Int(mut b) => Arc::new(b.finish()),
                    FieldBuilder::Text(mut b) => Arc::new(b.finish()),
                    FieldBuilder::Time(mut b) => Arc::new(b.finish()),
                };
                arrow::compute::cast(&built, declared.data_type()).exec_context(|| {
                    format!("nexmark field `{}.{}`", field.name(), declared.name())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let fields: Fields = declared
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let array = StructArray::try_new(fields, children, Some(NullBuffer::from(self.valid)))
            .exec_context(|| format!("nexmark column `{}`", field.name()))?;
        Ok(Arc::new(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, StructArray};
    use arrow::datatypes::{Int64Type, Schema};

    fn split() -> Arc<NexmarkSplit> {
        let bid = Field::new(
            "bid",
            DataType::Struct(
                [
                    "auction", "bidder", "price", "channel", "url", "dateTime", "extra",
                ]
                .iter()
                .zip(BID)
                .map(|(name, kind)| {
                    let t = match kind {
                        Int => DataType::Int64,
                        Text => DataType::Utf8,
                        Time => DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
                    };
                    Field::new(*name, t, true)
                })
                .collect(),
            ),
            true,
        );
        Arc::new(NexmarkSplit {
            config: flink_config(),
            index: 1,
            step: 2,
            count: Some(500),
            rate: 1000.0,
            schema: Arc::new(Schema::new(vec![bid])),
            columns: vec![Column::Bid],
            batch_size: 64,
        })
    }

    /// Bidders of the bids in what a split yields, with the positions.
    async fn bidders(position: Option<SplitPosition>) -> Vec<(Vec<i64>, SplitPosition)> {
        split()
            .open_at(position)
            .map(|item| {
                let (batch, position) = item.expect("batch");
                let bids: &StructArray = batch.column(0).as_struct();
                let bidders = bids.column(1).as_primitive::<Int64Type>();
                let values = (0..bids.len())
                    .filter(|&i| !bids.is_null(i))
                    .map(|i| bidders.value(i))
                    .collect();
                (values, position)
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn resuming_generates_exactly_the_events_after_the_position() {
        let all = bidders(None).await;
        assert_eq!(
            all.last().map(|a| a.1.clone()),
            Some(SplitPosition::after_rows(500))
        );
        let everything: Vec<i64> = all.iter().flat_map(|a| a.0.clone()).collect();
        let mut seen = 0;
        for (values, position) in &all[..all.len() - 1] {
            seen += values.len();
            let rest: Vec<i64> = bidders(Some(position.clone()))
                .await
                .into_iter()
                .flat_map(|r| r.0)
                .collect();
            assert_eq!(rest, everything[seen..].to_vec(), "after {position:?}");
        }
        assert!(
            split()
                .open_at(Some(SplitPosition::after_rows(501)))
                .next()
                .await
                .is_some_and(|r| r.is_err())
        );
    }
}
