//! The regular join's unit tests: matching, restore, outer padding and
//! retraction, with exact changelogs.

use super::*;
use arrow::array::{AsArray, Int64Array, StringArray};
use arrow::datatypes::{Field, Int64Type, Schema};
use datafusion::physical_expr::expressions::Column;

fn sides() -> (SchemaRef, SchemaRef, SchemaRef) {
    let left = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("l", DataType::Utf8, false),
    ]));
    let right = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("r", DataType::Int64, false),
    ]));
    // Either side may be padded with NULLs in an outer join.
    let joined = Arc::new(Schema::new(
        left.fields()
            .iter()
            .chain(right.fields().iter())
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    (left, right, joined)
}

fn join() -> RegularJoin {
    join_of(JoinKind::Inner, [false, false], true)
}

fn join_of(kind: JoinKind, input_updates: [bool; 2], pad_at_end: bool) -> RegularJoin {
    let (left_schema, right_schema, schema) = sides();
    RegularJoin {
        kind,
        left_keys: vec![Arc::new(Column::new("k", 0))],
        right_keys: vec![Arc::new(Column::new("k", 0))],
        filter: None,
        nulls_equal: false,
        left_schema,
        right_schema,
        schema,
        input_updates,
        pad_at_end,
        ttl: None,
    }
}

fn context(subtask: usize, parallelism: usize) -> OperatorContext {
    OperatorContext {
        subtask,
        parallelism,
        parameters: Arc::default(),
        metrics: Arc::default(),
    }
}

fn left(keys: &[Option<i64>], names: &[&str]) -> RecordBatch {
    RecordBatch::try_new(
        sides().0,
        vec![
            Arc::new(Int64Array::from(keys.to_vec())),
            Arc::new(StringArray::from(names.to_vec())),
        ],
    )
    .expect("left")
}

fn right(keys: &[Option<i64>], values: &[i64]) -> RecordBatch {
    RecordBatch::try_new(
        sides().1,
        vec![
            Arc::new(Int64Array::from(keys.to_vec())),
            Arc::new(Int64Array::from(values.to_vec())),
        ],
    )
    .expect("right")
}

/// (left name, right value) of every joined row, sorted.
fn pairs(out: &mut Output) -> Vec<(String, i64)> {
    let mut pairs = Vec::new();
    for message in out.drain() {
        if let super::super::Message::Data(batch) = message {
            let names = batch.column(1).as_string::<i32>();
            let values = batch.column(3).as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                pairs.push((names.value(i).to_string(), values.value(i)));
            }
        }
    }
    pairs.sort();
    pairs
}

#[test]
fn rows_join_what_came_before_and_after_on_either_side() {
    let mut op = join().create(&context(0, 1)).expect("join");
    let mut out = Output::default();
    op.on_batch(
        0,
        left(&[Some(1), Some(2), None], &["a", "b", "n"]),
        &mut out,
    )
    .expect("left");
    assert!(pairs(&mut out).is_empty());
    op.on_batch(
        1,
        right(&[Some(1), Some(1), None, Some(3)], &[10, 11, 99, 30]),
        &mut out,
    )
    .expect("right");
    assert_eq!(
        pairs(&mut out),
        vec![("a".to_string(), 10), ("a".to_string(), 11)],
        "a NULL key joins nothing"
    );
    op.on_batch(0, left(&[Some(3), Some(1)], &["c", "a2"]), &mut out)
        .expect("left");
    assert_eq!(
        pairs(&mut out),
        vec![
            ("a2".to_string(), 10),
            ("a2".to_string(), 11),
            ("c".to_string(), 30)
        ]
    );
}

/// Both sides' rows survive a checkpoint, and a restore at another
/// parallelism gives each subtask the rows of its key groups only: the
/// rows that come after join exactly as before.
#[test]
fn both_sides_restore_at_another_parallelism() {
    let mut op = join().create(&context(0, 1)).expect("join");
    let mut out = Output::default();
    let keys: Vec<Option<i64>> = (0..40).map(Some).collect();
    let names: Vec<String> = (0..40).map(|k| format!("l{k}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    op.on_batch(0, left(&keys, &names), &mut out).expect("left");
    op.on_batch(1, right(&keys[..20], &[7; 20]), &mut out)
        .expect("right");
    pairs(&mut out);
    let state = op.snapshot().expect("snapshot").expect("state");
    assert_eq!(state.tables.len(), 2);
    let mut joined = Vec::new();
    for subtask in 0..2 {
        let key_groups = crate::exec::exchange::key_groups_of(subtask, 2);
        let mut restored = join().create(&context(subtask, 2)).expect("join");
        restored
            .restore(RestoredState {
                tables: state
                    .tables
                    .iter()
                    .map(|t| (t.name.clone(), t.batches.clone()))
                    .collect(),
                watermark: state.watermark,
                key_groups,
            })
            .expect("restore");
        let mut out = Output::default();
        // Each key once more on the right: it joins its left row where
        // that row's key group went.
        restored
            .on_batch(1, right(&keys, &[8; 40]), &mut out)
            .expect("right");
        joined.extend(pairs(&mut out));
    }
    joined.sort();
    let mut expected: Vec<(String, i64)> = (0..40).map(|k| (format!("l{k}"), 8)).collect();
    expected.sort();
    // One match per key, l{k} with 8, on the one subtask that holds
    // the left row of its key group.
    assert_eq!(joined, expected);
}

/// After the left input ends, right rows still join it but are not
/// kept; the left rows stay for them.
#[test]
fn an_ended_input_lets_the_other_side_stop_keeping_rows() {
    let mut op = join().create(&context(0, 1)).expect("join");
    let mut out = Output::default();
    op.on_batch(0, left(&[Some(1)], &["a"]), &mut out)
        .expect("left");
    op.on_input_end(0, &mut out).expect("end");
    op.on_batch(1, right(&[Some(1), Some(2)], &[10, 20]), &mut out)
        .expect("right");
    assert_eq!(pairs(&mut out), vec![("a".to_string(), 10)]);
    let state = op.snapshot().expect("snapshot").expect("state");
    let rows = |name: &str| -> usize {
        state
            .tables
            .iter()
            .filter(|t| t.name == name)
            .flat_map(|t| &t.batches)
            .map(RecordBatch::num_rows)
            .sum()
    };
    assert_eq!((rows("left"), rows("right")), (1, 0));
}

/// `batch` with row kinds.
fn with_kinds(batch: RecordBatch, kinds: &[RowKind]) -> RecordBatch {
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(Int8Array::from_iter_values(
        kinds.iter().map(|k| k.byte()),
    )));
    RecordBatch::try_new(changelog::with_row_kind(&batch.schema()), columns).expect("kinds")
}

/// Every row sent, in order, as Flink prints it (`+I` without kinds).
fn printed(out: &mut Output) -> Vec<String> {
    let options = arrow::util::display::FormatOptions::default().with_null("NULL");
    let mut lines = Vec::new();
    for message in out.drain() {
        let super::super::Message::Data(batch) = message else {
            continue;
        };
        let (data, kinds) = changelog::split(&batch).expect("split");
        for row in 0..data.num_rows() {
            let values: Vec<String> = data
                .columns()
                .iter()
                .map(|c| {
                    arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options)
                        .expect("formatter")
                        .value(row)
                        .to_string()
                })
                .collect();
            let kind = kinds.as_ref().map_or(RowKind::Insert, |k| {
                RowKind::from_byte(k.value(row)).expect("kind")
            });
            lines.push(format!("{}[{}]", kind.short(), values.join(", ")));
        }
    }
    lines
}

/// In stream mode a LEFT JOIN sends a left row padded at once, takes
/// the padded row back when its first match comes, and sends it again
/// when its last match is taken back (Flink's outer join).
#[test]
fn a_left_join_pads_a_row_until_its_first_match_and_after_its_last() {
    let mut op = join_of(JoinKind::Left, [false, true], false)
        .create(&context(0, 1))
        .expect("join");
    let mut out = Output::default();
    op.on_batch(0, left(&[Some(1), None], &["a", "n"]), &mut out)
        .expect("left");
    assert_eq!(
        printed(&mut out),
        ["+I[1, a, NULL, NULL]", "+I[NULL, n, NULL, NULL]"]
    );
    let inserts = [RowKind::Insert, RowKind::Insert];
    op.on_batch(
        1,
        with_kinds(right(&[Some(1), Some(1)], &[10, 11]), &inserts),
        &mut out,
    )
    .expect("right");
    assert_eq!(
        printed(&mut out),
        ["-D[1, a, NULL, NULL]", "+I[1, a, 1, 10]", "+I[1, a, 1, 11]"]
    );
    let update = [RowKind::UpdateBefore, RowKind::UpdateAfter];
    op.on_batch(
        1,
        with_kinds(right(&[Some(1), Some(1)], &[10, 12]), &update),
        &mut out,
    )
    .expect("right");
    assert_eq!(printed(&mut out), ["-D[1, a, 1, 10]", "+I[1, a, 1, 12]"]);
    let deletes = [RowKind::Delete, RowKind::Delete];
    op.on_batch(
        1,
        with_kinds(right(&[Some(1), Some(1)], &[11, 12]), &deletes),
        &mut out,
    )
    .expect("right");
    assert_eq!(
        printed(&mut out),
        ["-D[1, a, 1, 11]", "-D[1, a, 1, 12]", "+I[1, a, NULL, NULL]"]
    );
    // Taking back a row never kept takes back nothing it did not send.
    op.on_batch(
        1,
        with_kinds(right(&[Some(2)], &[20]), &[RowKind::Delete]),
        &mut out,
    )
    .expect("right");
    assert!(printed(&mut out).is_empty());
}

/// The match counts are state: after a restore, the last match taken
/// back pads the row again.
#[test]
fn match_counts_survive_a_restore() {
    let factory = join_of(JoinKind::Right, [true, false], false);
    let mut op = factory.create(&context(0, 1)).expect("join");
    let mut out = Output::default();
    op.on_batch(1, right(&[Some(1)], &[10]), &mut out)
        .expect("right");
    op.on_batch(
        0,
        with_kinds(left(&[Some(1)], &["a"]), &[RowKind::Insert]),
        &mut out,
    )
    .expect("left");
    assert_eq!(
        printed(&mut out),
        [
            "+I[NULL, NULL, 1, 10]",
            "-D[NULL, NULL, 1, 10]",
            "+I[1, a, 1, 10]"
        ]
    );
    let state = op.snapshot().expect("snapshot").expect("state");
    let mut restored = factory.create(&context(0, 1)).expect("join");
    restored
        .restore(RestoredState {
            tables: state
                .tables
                .iter()
                .map(|t| (t.name.clone(), t.batches.clone()))
                .collect(),
            watermark: state.watermark,
            key_groups: 0..crate::exec::exchange::MAX_PARALLELISM,
        })
        .expect("restore");
    restored
        .on_batch(
            0,
            with_kinds(left(&[Some(1)], &["a"]), &[RowKind::Delete]),
            &mut out,
        )
        .expect("left");
    assert_eq!(
        printed(&mut out),
        ["-D[1, a, 1, 10]", "+I[NULL, NULL, 1, 10]"]
    );
}

/// In batch mode a FULL JOIN pads a row only once the other input has
/// ended, so its result is final rows, with no row kinds.
#[test]
fn in_batch_mode_an_outer_join_pads_once_the_other_input_ends() {
    let mut op = join_of(JoinKind::Full, [false, false], true)
        .create(&context(0, 1))
        .expect("join");
    let mut out = Output::default();
    op.on_batch(0, left(&[Some(1), Some(2)], &["a", "b"]), &mut out)
        .expect("left");
    op.on_batch(1, right(&[Some(1), Some(3)], &[10, 30]), &mut out)
        .expect("right");
    assert_eq!(printed(&mut out), ["+I[1, a, 1, 10]"]);
    op.on_input_end(1, &mut out).expect("end");
    assert_eq!(printed(&mut out), ["+I[2, b, NULL, NULL]"]);
    // A left row after the right input ended is padded at once.
    op.on_batch(0, left(&[Some(3), Some(4)], &["c", "d"]), &mut out)
        .expect("left");
    assert_eq!(
        printed(&mut out),
        ["+I[3, c, 3, 30]", "+I[4, d, NULL, NULL]"]
    );
    op.on_input_end(0, &mut out).expect("end");
    assert!(printed(&mut out).is_empty(), "the right row 3 was joined");
    for message in out.drain() {
        if let super::super::Message::Data(batch) = message {
            assert!(changelog::row_kinds(&batch).is_none());
        }
    }
}

/// A row added and taken back in one batch is not kept; a row never sent
/// takes nothing back.
#[test]
fn a_row_taken_back_in_its_own_batch_is_forgotten_and_one_never_sent_is_ignored() {
    let mut op = join_of(JoinKind::Left, [true, false], false)
        .create(&context(0, 1))
        .expect("join");
    let mut out = Output::default();
    let rows = left(&[Some(1), Some(1), Some(2)], &["a", "a", "b"]);
    let kinds = [RowKind::Insert, RowKind::Delete, RowKind::Delete];
    op.on_batch(0, with_kinds(rows, &kinds), &mut out)
        .expect("left");
    assert_eq!(
        printed(&mut out),
        ["+I[1, a, NULL, NULL]", "-D[1, a, NULL, NULL]"]
    );
    op.on_batch(1, right(&[Some(1)], &[10]), &mut out)
        .expect("right");
    assert!(printed(&mut out).is_empty(), "no left row is kept");
}

/// With a TTL a kept row is forgotten that long after it came, without a
/// retraction; one timer per side and key checks it.
#[test]
fn a_kept_row_is_forgotten_after_the_ttl() {
    let mut plan = join_of(JoinKind::Inner, [false, false], false);
    plan.ttl = Some(60_000);
    let mut op = plan.create(&context(0, 1)).expect("join");
    let mut out = Output::default();
    op.on_batch(0, left(&[Some(1), Some(1)], &["a", "b"]), &mut out)
        .expect("left");
    let timers: Vec<_> = out
        .drain_timers()
        .filter_map(|c| match c {
            crate::ops::timer::TimerChange::Set(t) => Some(t),
            crate::ops::timer::TimerChange::Cancel(_) => None,
        })
        .collect();
    assert_eq!(timers.len(), 1, "one timer for the key");
    op.on_batch(1, right(&[Some(1)], &[10]), &mut out)
        .expect("right");
    assert_eq!(printed(&mut out), ["+I[1, a, 1, 10]", "+I[1, b, 1, 10]"]);
    out.drain_timers().for_each(drop);
    op.on_timer(&timers[0], &mut out).expect("timer");
    assert!(printed(&mut out).is_empty(), "expiry sends nothing");
    op.on_batch(1, right(&[Some(1)], &[11]), &mut out)
        .expect("right");
    assert!(printed(&mut out).is_empty(), "the left rows were forgotten");
}
