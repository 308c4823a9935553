//! Upserts by key into a changelog: Flink's `ChangelogNormalize`.
//!
//! A compacted topic (`upsert-kafka`) holds, per key, a series of new
//! values and tombstones; it never says what a value replaced. The
//! operator keeps the last row of every key and turns each upsert into
//! what it does to the table: `+I` for a key it has not seen, `-U` with
//! the row before and `+U` with the new one for a key it has, nothing for
//! a row equal to the one it holds (unless a state TTL is set: then the
//! rows downstream may have expired, and it is sent again, as in Flink).
//! A tombstone of a held key gives `-D` with the whole row held (the
//! tombstone itself carries only the key); one of a key it does not hold
//! gives nothing. Its input is hash-partitioned by the key, so each key's
//! records arrive in their partition's order.
//!
//! In batch mode the same operator sends nothing until its input ends
//! (the watermark reaches the end of time), then the table, as inserts:
//! the last row of every key still standing. It holds back the watermark
//! until then, so its rows are never behind one it sent. A stopped job
//! sends no final watermark, and so no partial table: its state is in
//! the checkpoint it stopped with.
//!
//! State: one keyed table, `latest`, of the rows held and when a record
//! last touched each (for `'table.exec.state.ttl'`, which forgets a key
//! no record touched for that long, without a retraction).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int8Array};
use arrow::datatypes::{Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use super::kept_rows::KeptRows;
use super::timer::{TimeDomain, Timer};
use super::{
    Operator, OperatorContext, OperatorFactory, OperatorState, Output, Port, RestoredState,
};
use crate::changelog::{self, RowKind};
use crate::error::{ExecContext, Result, SluiceError};
use crate::time::{BEFORE_TIME, END_OF_TIME, Millis};

/// The state table and its column of last touches.
const LATEST: &str = "latest";
const TOUCHED: &str = "__touched";

/// Makes [`UpsertNormalize`] instances.
#[derive(Debug)]
pub struct UpsertNormalize {
    /// The rows' columns, without the row kind.
    schema: SchemaRef,
    /// The primary key's columns.
    key: Vec<usize>,
    /// Batch mode: the table once, at the end.
    at_end: bool,
    ttl: Option<Millis>,
}

impl UpsertNormalize {
    pub fn new(schema: SchemaRef, key: Vec<usize>, at_end: bool, ttl: Option<Millis>) -> Self {
        Self {
            schema,
            key,
            at_end,
            ttl: ttl.filter(|_| !at_end),
        }
    }

    fn key_names(&self) -> String {
        let names: Vec<&str> = self
            .key
            .iter()
            .map(|&k| self.schema.field(k).name().as_str())
            .collect();
        names.join(", ")
    }
}

impl OperatorFactory for UpsertNormalize {
    fn name(&self) -> &str {
        "UpsertNormalize"
    }

    fn describe(&self) -> String {
        let emit = match self.at_end {
            true => " emit at end",
            false => "",
        };
        let ttl = match self.ttl {
            Some(ttl) => format!(" ttl {}", crate::plan::explain::duration(ttl)),
            None => String::new(),
        };
        format!("key [{}]{emit}{ttl}", self.key_names())
    }

    /// The TTL may change between runs: state restores either way.
    fn fingerprint(&self) -> String {
        format!(
            "key {:?} at_end {} of {}",
            self.key, self.at_end, self.schema
        )
    }

    fn upsert_key(&self) -> Option<Vec<usize>> {
        (!self.at_end).then(|| self.key.clone())
    }

    fn create(&self, _context: &OperatorContext) -> Result<Box<dyn Operator>> {
        let sort_field = |f: &Field| SortField::new(f.data_type().clone());
        let keys = RowConverter::new(
            self.key
                .iter()
                .map(|&k| sort_field(self.schema.field(k)))
                .collect(),
        )
        .exec_context(|| "encoding upsert keys".to_string())?;
        Ok(Box::new(UpsertNormalizeOp {
            schema: Arc::clone(&self.schema),
            key: self.key.clone(),
            at_end: self.at_end,
            ttl: self.ttl,
            keys,
            rows: KeptRows::new(&self.schema, TOUCHED)?,
            latest: HashMap::new(),
            watermark: BEFORE_TIME,
            sent_at_end: false,
            timers_to_set: false,
        }))
    }
}

/// The row a key holds.
struct Latest {
    row: Box<[u8]>,
    /// When a record last touched the key (processing time), its key
    /// group, and whether an expiry timer is set for it.
    touched: Millis,
    key_group: usize,
    timer_set: bool,
}

struct UpsertNormalizeOp {
    schema: SchemaRef,
    key: Vec<usize>,
    at_end: bool,
    ttl: Option<Millis>,
    keys: RowConverter,
    rows: KeptRows,
    latest: HashMap<Box<[u8]>, Latest>,
    watermark: Millis,
    sent_at_end: bool,
    /// After a restore: every key needs its expiry timer set again.
    timers_to_set: bool,
}

/// Rows to send, in order, as arrow-row encodings.
#[derive(Default)]
struct Changes {
    kinds: Vec<i8>,
    rows: Vec<Box<[u8]>>,
}

impl Changes {
    fn push(&mut self, kind: RowKind, row: &[u8]) {
        self.kinds.push(kind.byte());
        self.rows.push(row.into());
    }
}

impl UpsertNormalizeOp {
    fn key_columns(&self, batch: &RecordBatch) -> Vec<ArrayRef> {
        self.key
            .iter()
            .map(|&k| Arc::clone(batch.column(k)))
            .collect()
    }

    fn send(&self, changes: Changes, with_kinds: bool, out: &mut Output) -> Result<()> {
        if changes.rows.is_empty() {
            return Ok(());
        }
        let mut columns = self.rows.decode(changes.rows.iter().map(|r| &**r))?;
        let schema = match with_kinds {
            true => {
                columns.push(Arc::new(Int8Array::from(changes.kinds)));
                changelog::with_row_kind(&self.schema)
            }
            false => Arc::clone(&self.schema),
        };
        let batch = RecordBatch::try_new(schema, columns)
            .exec_context(|| "assembling normalised upserts".to_string())?;
        out.batch(batch);
        Ok(())
    }

    /// Sends the table as inserts, once, at the end of a batch run.
    fn send_table(&mut self, out: &mut Output) -> Result<()> {
        if std::mem::replace(&mut self.sent_at_end, true) {
            return Ok(());
        }
        let mut changes = Changes::default();
        for latest in self.latest.values() {
            changes.push(RowKind::Insert, &latest.row);
        }
        self.send(changes, false, out)
    }

    fn expiry_timer(key: &[u8], latest: &Latest, ttl: Millis) -> Timer {
        Timer {
            domain: TimeDomain::ProcessingTime,
            time: latest.touched.saturating_add(ttl),
            key: Arc::from(key),
            key_group: latest.key_group,
        }
    }

    /// After a restore, an expiry timer for every key held.
    fn set_restored_timers(&mut self, out: &mut Output) {
        if !std::mem::take(&mut self.timers_to_set) {
            return;
        }
        let Some(ttl) = self.ttl else {
            return;
        };
        for (key, latest) in &mut self.latest {
            latest.timer_set = true;
            out.set_timer(Self::expiry_timer(key, latest, ttl));
        }
    }
}

impl Operator for UpsertNormalizeOp {
    fn on_batch(&mut self, _port: Port, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let (data, kinds) = changelog::split(&batch)?;
        let kinds = kinds.ok_or_else(|| {
            SluiceError::Runtime("upserts came without their row kinds".to_string())
        })?;
        let keys = self.key_columns(&data);
        let encoded_keys = self
            .keys
            .convert_columns(&keys)
            .exec_context(|| "encoding upsert keys".to_string())?;
        let encoded_rows = self.rows.encode(data.columns())?;
        let key_groups = match self.ttl {
            Some(_) => crate::exec::exchange::key_groups_of_rows(&keys)?,
            None => Vec::new(),
        };
        if self.ttl.is_some() {
            self.set_restored_timers(out);
        }
        let now = crate::time::wall_clock();
        let mut changes = Changes::default();
        for (i, &kind) in kinds.values().iter().enumerate() {
            let key = encoded_keys.row(i);
            let key = key.as_ref();
            if changelog::is_retraction_byte(kind) {
                if let Some(held) = self.latest.remove(key) {
                    changes.push(RowKind::Delete, &held.row);
                }
                continue;
            }
            let row = encoded_rows.row(i);
            let row = row.as_ref();
            match self.latest.get_mut(key) {
                Some(held) => {
                    if self.ttl.is_some() || *held.row != *row {
                        changes.push(RowKind::UpdateBefore, &held.row);
                        changes.push(RowKind::UpdateAfter, row);
                        held.row = row.into();
                    }
                    held.touched = now;
                }
                None => {
                    changes.push(RowKind::Insert, row);
                    let mut held = Latest {
                        row: row.into(),
                        touched: now,
                        key_group: key_groups.get(i).copied().unwrap_or(0),
                        timer_set: false,
                    };
                    if let Some(ttl) = self.ttl {
                        held.timer_set = true;
                        out.set_timer(Self::expiry_timer(key, &held, ttl));
                    }
                    self.latest.insert(key.into(), held);
                }
            }
        }
        match self.at_end {
            true => Ok(()),
            false => self.send(changes, true, out),
        }
    }

    /// A key's expiry timer: the key is forgotten if no record touched it
    /// since; else the next check is set at its new expiry.
    fn on_timer(&mut self, timer: &Timer, out: &mut Output) -> Result<()> {
        let Some(ttl) = self.ttl else {
            return Ok(());
        };
        let Some(held) = self.latest.get_mut(&*timer.key) else {
            return Ok(());
        };
        if held.touched.saturating_add(ttl) <= timer.time {
            self.latest.remove(&*timer.key);
        } else {
            out.set_timer(Self::expiry_timer(&timer.key, held, ttl));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        self.set_restored_timers(out);
        self.watermark = watermark;
        if self.at_end {
            // Nothing is sent before the end: neither is event time.
            if watermark < END_OF_TIME {
                return Ok(());
            }
            self.send_table(out)?;
        }
        out.watermark(watermark);
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let held = self.latest.values().map(|l| (&*l.row, l.touched));
        Ok(Some(OperatorState {
            tables: self.rows.table(LATEST, held)?.into_iter().collect(),
            watermark: self.watermark,
        }))
    }

    fn restore(&mut self, state: RestoredState) -> Result<()> {
        self.watermark = self.watermark.max(state.watermark);
        self.timers_to_set = self.ttl.is_some();
        for (batch, rows, touched) in
            self.rows
                .restored("UpsertNormalize", &state, LATEST, &self.key)?
        {
            let keys = self.key_columns(&batch);
            let key_groups = crate::exec::exchange::key_groups_of_rows(&keys)?;
            let encoded_keys = self
                .keys
                .convert_columns(&keys)
                .exec_context(|| "encoding restored upsert keys".to_string())?;
            for (i, &key_group) in key_groups.iter().enumerate() {
                self.latest.insert(
                    encoded_keys.row(i).as_ref().into(),
                    Latest {
                        row: rows.row(i).as_ref().into(),
                        touched: touched.value(i),
                        key_group,
                        timer_set: false,
                    },
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Int64Type, Schema};
    use std::collections::BTreeMap;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ]))
    }

    fn context() -> OperatorContext {
        OperatorContext {
            subtask: 0,
            parallelism: 1,
            parameters: Arc::new(BTreeMap::new()),
            metrics: Arc::new(crate::metrics::JobMetrics::default()),
        }
    }

    /// Upserts (`Some(v)`) and tombstones (`None`) of keys.
    fn records(rows: &[(&str, Option<i64>)]) -> RecordBatch {
        let kinds: Vec<i8> = rows
            .iter()
            .map(|(_, v)| match v {
                Some(_) => RowKind::UpdateAfter.byte(),
                None => RowKind::Delete.byte(),
            })
            .collect();
        RecordBatch::try_new(
            changelog::with_row_kind(&schema()),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1))),
                Arc::new(Int8Array::from(kinds)),
            ],
        )
        .expect("test input")
    }

    fn printed(out: &mut Output) -> Vec<String> {
        let mut lines = Vec::new();
        for message in out.drain() {
            let crate::ops::Message::Data(batch) = message else {
                continue;
            };
            let keys = batch.column(0).as_string::<i32>();
            let values = batch.column(1).as_primitive::<Int64Type>();
            let kinds = changelog::row_kinds(&batch);
            for i in 0..batch.num_rows() {
                let kind = kinds.map_or("+I", |k| {
                    RowKind::from_byte(k.value(i)).expect("a kind").short()
                });
                lines.push(format!("{kind}[{}, {}]", keys.value(i), values.value(i)));
            }
        }
        lines
    }

    fn normalize(at_end: bool, ttl: Option<Millis>) -> Box<dyn Operator> {
        UpsertNormalize::new(schema(), vec![0], at_end, ttl)
            .create(&context())
            .expect("operator")
    }

    #[test]
    fn upserts_become_inserts_updates_and_deletes_of_whole_rows() {
        let mut op = normalize(false, None);
        let mut out = Output::default();
        op.on_batch(
            0,
            records(&[
                ("a", Some(1)),
                ("b", Some(2)),
                ("a", Some(3)),
                ("a", Some(3)),
                ("b", None),
                ("c", None),
            ]),
            &mut out,
        )
        .expect("batch");
        assert_eq!(
            printed(&mut out),
            ["+I[a, 1]", "+I[b, 2]", "-U[a, 1]", "+U[a, 3]", "-D[b, 2]"]
        );
        // A key deleted and upserted again starts over.
        op.on_batch(0, records(&[("b", Some(5))]), &mut out)
            .expect("batch");
        assert_eq!(printed(&mut out), ["+I[b, 5]"]);
    }

    #[test]
    fn batch_mode_sends_the_last_row_of_each_key_at_the_end() {
        let mut op = normalize(true, None);
        let mut out = Output::default();
        op.on_batch(
            0,
            records(&[("a", Some(1)), ("b", Some(2)), ("a", Some(3)), ("b", None)]),
            &mut out,
        )
        .expect("batch");
        op.on_watermark(100, &mut out).expect("watermark");
        assert!(out.drain().next().is_none(), "nothing before the end");
        op.on_watermark(END_OF_TIME, &mut out).expect("watermark");
        let mut messages: Vec<_> = out.drain().collect();
        assert!(
            matches!(
                messages.pop(),
                Some(crate::ops::Message::Watermark(END_OF_TIME))
            ),
            "the rows before the final watermark"
        );
        let mut out = Output::default();
        for m in messages {
            if let crate::ops::Message::Data(b) = m {
                out.batch(b);
            }
        }
        assert_eq!(printed(&mut out), ["+I[a, 3]"]);
    }

    #[test]
    fn held_rows_restore_at_another_parallelism_and_are_deleted_whole() {
        let mut op = normalize(false, None);
        let mut out = Output::default();
        op.on_batch(
            0,
            records(&[("a", Some(1)), ("b", Some(2)), ("c", Some(3))]),
            &mut out,
        )
        .expect("batch");
        let state = op.snapshot().expect("snapshot").expect("state");
        let tables: BTreeMap<String, Vec<RecordBatch>> = state
            .tables
            .iter()
            .map(|t| (t.name.clone(), t.batches.clone()))
            .collect();
        let max = crate::exec::exchange::MAX_PARALLELISM;
        let mut seen = Vec::new();
        for range in [0..max / 2, max / 2..max] {
            let mut restored = normalize(false, None);
            restored
                .restore(RestoredState {
                    tables: tables.clone(),
                    watermark: state.watermark,
                    key_groups: range,
                })
                .expect("restore");
            let mut out = Output::default();
            restored
                .on_batch(
                    0,
                    records(&[("a", None), ("b", None), ("c", None)]),
                    &mut out,
                )
                .expect("batch");
            seen.extend(printed(&mut out));
        }
        seen.sort();
        assert_eq!(seen, ["-D[a, 1]", "-D[b, 2]", "-D[c, 3]"]);
    }

    #[test]
    fn with_a_ttl_an_equal_row_is_sent_again_and_an_idle_key_forgotten() {
        let mut op = normalize(false, Some(1_000));
        let mut out = Output::default();
        op.on_batch(0, records(&[("a", Some(1)), ("a", Some(1))]), &mut out)
            .expect("batch");
        let timers: Vec<Timer> = out
            .drain_timers()
            .filter_map(|c| match c {
                crate::ops::timer::TimerChange::Set(t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(printed(&mut out), ["+I[a, 1]", "-U[a, 1]", "+U[a, 1]"]);
        assert_eq!(timers.len(), 1);
        let mut expired = timers[0].clone();
        expired.time = END_OF_TIME;
        op.on_timer(&expired, &mut out).expect("timer");
        op.on_batch(0, records(&[("a", None), ("a", Some(2))]), &mut out)
            .expect("batch");
        assert_eq!(printed(&mut out), ["+I[a, 2]"], "the key was forgotten");
    }
}
