//! Nexmark events (persons, auctions, bids) from the `nexmark` crate, the
//! generator RisingWave uses, so the data follows the benchmark's spec.
//!
//! Events start at 2026-01-01 00:00:00 UTC at 10,000 events per second of
//! event time, as the Nexmark default rate; the same `--events` always gives
//! the same data.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use nexmark::EventGenerator;
use nexmark::event::Event;
use sluice_engine::{Result, SluiceError};

use super::{Destination, FileFormat};

pub use sluice_connectors::nexmark::BASE_TIME_MS;

const CHUNK: usize = 64 * 1024;

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

pub fn bid_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, false),
        Field::new("date_time", ts(), false),
        Field::new("extra", DataType::Utf8, false),
    ]))
}

pub fn auction_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("item_name", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
        Field::new("initial_bid", DataType::Int64, false),
        Field::new("reserve", DataType::Int64, false),
        Field::new("date_time", ts(), false),
        Field::new("expires", ts(), false),
        Field::new("seller", DataType::Int64, false),
        Field::new("category", DataType::Int64, false),
        Field::new("extra", DataType::Utf8, false),
    ]))
}

pub fn person_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("email_address", DataType::Utf8, false),
        Field::new("credit_card", DataType::Utf8, false),
        Field::new("city", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("date_time", ts(), false),
        Field::new("extra", DataType::Utf8, false),
    ]))
}

/// How many events of each kind were written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub persons: u64,
    pub auctions: u64,
    pub bids: u64,
}

#[derive(Default)]
struct Columns {
    ints: Vec<Int64Builder>,
    strings: Vec<StringBuilder>,
    times: Vec<TimestampMillisecondBuilder>,
    rows: usize,
}

impl Columns {
    fn new(ints: usize, strings: usize, times: usize) -> Self {
        Self {
            ints: (0..ints)
                .map(|_| Int64Builder::with_capacity(CHUNK))
                .collect(),
            strings: (0..strings)
                .map(|_| StringBuilder::with_capacity(CHUNK, CHUNK * 16))
                .collect(),
            times: (0..times)
                .map(|_| TimestampMillisecondBuilder::with_capacity(CHUNK))
                .collect(),
            rows: 0,
        }
    }
}

/// Builds a batch from builders, in the order the schema's fields name
/// them: `order` lists (kind, index) with kind 0 = int, 1 = string, 2 = time.
fn finish(columns: &mut Columns, schema: &SchemaRef, order: &[(u8, usize)]) -> Result<RecordBatch> {
    let arrays: Vec<ArrayRef> = order
        .iter()
        .map(|&(kind, i)| -> ArrayRef {
            match kind {
                0 => Arc::new(columns.ints[i].finish()),
                1 => Arc::new(columns.strings[i].finish()),
                _ => Arc::new(columns.times[i].finish()),
            }
        })
        .collect();
    columns.rows = 0;
    RecordBatch::try_new(Arc::clone(schema), arrays)
        .map_err(|e| SluiceError::Data(format!("building a generated batch: {e}")))
}

const BID_ORDER: [(u8, usize); 7] = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (1, 2)];
const AUCTION_ORDER: [(u8, usize); 10] = [
    (0, 0),
    (1, 0),
    (1, 1),
    (0, 1),
    (0, 2),
    (2, 0),
    (2, 1),
    (0, 3),
    (0, 4),
    (1, 2),
];
const PERSON_ORDER: [(u8, usize); 8] = [
    (0, 0),
    (1, 0),
    (1, 1),
    (1, 2),
    (1, 3),
    (1, 4),
    (2, 0),
    (1, 5),
];

/// Generates `events` Nexmark events into `out/{person,auction,bid}`, each
/// split into `files` time-ranged part files.
pub fn generate(out: &Path, events: u64, files: usize, format: FileFormat) -> Result<Counts> {
    generate_to(
        &Destination::Files {
            dir: out.to_path_buf(),
            files,
            format,
        },
        events,
    )
}

/// Generates `events` Nexmark events as the tables `person`, `auction`
/// and `bid` of `destination`.
pub fn generate_to(destination: &Destination, events: u64) -> Result<Counts> {
    let config = sluice_connectors::nexmark::flink_config();
    // Nexmark's mix: 1 person, 3 auctions, 46 bids in every 50 events.
    let share = |n: u64| events * n / 50;
    let mut bids = destination.table("bid", bid_schema(), share(46), events)?;
    let mut auctions = destination.table("auction", auction_schema(), share(3), events)?;
    let mut persons = destination.table("person", person_schema(), share(1), events)?;
    let mut bid_cols = Columns::new(3, 3, 1);
    let mut auction_cols = Columns::new(5, 3, 2);
    let mut person_cols = Columns::new(1, 6, 1);
    let mut counts = Counts::default();
    for event in EventGenerator::new(config).take(events as usize) {
        match event {
            Event::Bid(b) => {
                bid_cols.ints[0].append_value(b.auction as i64);
                bid_cols.ints[1].append_value(b.bidder as i64);
                bid_cols.ints[2].append_value(b.price as i64);
                bid_cols.strings[0].append_value(&b.channel);
                bid_cols.strings[1].append_value(&b.url);
                bid_cols.strings[2].append_value(&b.extra);
                bid_cols.times[0].append_value(b.date_time as i64);
                bid_cols.rows += 1;
                counts.bids += 1;
                if bid_cols.rows == CHUNK {
                    bids.write(&finish(&mut bid_cols, &bid_schema(), &BID_ORDER)?)?;
                }
            }
            Event::Auction(a) => {
                auction_cols.ints[0].append_value(a.id as i64);
                auction_cols.ints[1].append_value(a.initial_bid as i64);
                auction_cols.ints[2].append_value(a.reserve as i64);
                auction_cols.ints[3].append_value(a.seller as i64);
                auction_cols.ints[4].append_value(a.category as i64);
                auction_cols.strings[0].append_value(&a.item_name);
                auction_cols.strings[1].append_value(&a.description);
                auction_cols.strings[2].append_value(&a.extra);
                auction_cols.times[0].append_value(a.date_time as i64);
                auction_cols.times[1].append_value(a.expires as i64);
                auction_cols.rows += 1;
                counts.auctions += 1;
                if auction_cols.rows == CHUNK {
                    auctions.write(&finish(
                        &mut auction_cols,
                        &auction_schema(),
                        &AUCTION_ORDER,
                    )?)?;
                }
            }
            Event::Person(p) => {
                person_cols.ints[0].append_value(p.id as i64);
                for (i, s) in [
                    &p.name,
                    &p.email_address,
                    &p.credit_card,
                    &p.city,
                    &p.state,
                    &p.extra,
                ]
                .into_iter()
                .enumerate()
                {
                    person_cols.strings[i].append_value(s);
                }
                person_cols.times[0].append_value(p.date_time as i64);
                person_cols.rows += 1;
                counts.persons += 1;
                if person_cols.rows == CHUNK {
                    persons.write(&finish(&mut person_cols, &person_schema(), &PERSON_ORDER)?)?;
                }
            }
        }
    }
    bids.write(&finish(&mut bid_cols, &bid_schema(), &BID_ORDER)?)?;
    auctions.write(&finish(
        &mut auction_cols,
        &auction_schema(),
        &AUCTION_ORDER,
    )?)?;
    persons.write(&finish(&mut person_cols, &person_schema(), &PERSON_ORDER)?)?;
    bids.finish()?;
    auctions.finish()?;
    persons.finish()?;
    Ok(counts)
}
