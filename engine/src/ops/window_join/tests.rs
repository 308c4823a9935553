use std::collections::BTreeMap;

use arrow::array::{AsArray, Int64Array, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use datafusion::logical_expr::Operator as BinaryOperator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column};

use super::*;
use crate::ops::Message;

fn side(value: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new(value, DataType::Int64, true),
        Field::new(
            "window_end",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

fn column(name: &str, at: usize) -> Arc<dyn PhysicalExpr> {
    Arc::new(Column::new(name, at))
}

/// `L [kind] JOIN R ON L.k = R.k AND <window bounds> [AND L.v < R.w]` over
/// 10 ms tumbling windows.
fn factory(kind: WindowJoinKind, with_filter: bool) -> WindowJoin {
    let (left, right) = (side("v"), side("w"));
    // Either side may be padded with NULLs, as a FULL JOIN's schema says.
    let fields: Vec<Field> = left
        .fields()
        .iter()
        .chain(right.fields())
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let filter = with_filter.then(|| {
        Arc::new(BinaryExpr::new(
            column("v", 1),
            BinaryOperator::Lt,
            column("w", 4),
        )) as Arc<dyn PhysicalExpr>
    });
    WindowJoin {
        kind,
        window: WindowKind::Tumble { size: 10 },
        keys: [vec![column("k", 0)], vec![column("k", 0)]],
        partitioning: [
            vec![column("k", 0), column("window_end", 2)],
            vec![column("k", 0), column("window_end", 2)],
        ],
        ends: [2, 2],
        filter,
        nulls_equal: false,
        schemas: [left, right],
        schema: Arc::new(Schema::new(fields)),
        carried: [None, None],
    }
}

fn context() -> OperatorContext {
    OperatorContext {
        subtask: 0,
        parallelism: 1,
        parameters: Arc::new(BTreeMap::new()),
        metrics: Arc::default(),
    }
}

/// Rows `(k, value, window_end)` of one side.
fn rows(schema: &SchemaRef, rows: &[(Option<i64>, i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::clone(schema),
        vec![
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.2),
            )),
        ],
    )
    .expect("rows")
}

/// The joined rows sent, as `v/w@end` (`_` for NULL), sorted.
fn joined(out: &mut Output) -> Vec<String> {
    let mut lines = Vec::new();
    for message in out.drain() {
        let Message::Data(batch) = message else {
            continue;
        };
        let value = |c: usize, i: usize| {
            let a = batch.column(c).as_primitive::<Int64Type>();
            match a.is_valid(i) {
                true => a.value(i).to_string(),
                false => "_".to_string(),
            }
        };
        for i in 0..batch.num_rows() {
            let end = match batch.column(2).is_valid(i) {
                true => batch
                    .column(2)
                    .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                    .value(i),
                false => batch
                    .column(5)
                    .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                    .value(i),
            };
            lines.push(format!("{}/{}@{end}", value(1, i), value(4, i)));
        }
    }
    lines.sort();
    lines
}

#[test]
fn a_window_joins_when_the_watermark_passes_its_end_and_pads_what_met_nothing() {
    let factory = factory(WindowJoinKind::Join(JoinKind::Full), true);
    let mut op = factory.create(&context()).expect("operator");
    let (left, right) = (&factory.schemas[0], &factory.schemas[1]);
    let mut out = Output::default();
    op.on_batch(
        0,
        rows(
            left,
            &[
                (Some(1), 1, 10),
                (Some(2), 5, 10),
                (None, 7, 10),
                (Some(1), 2, 20),
            ],
        ),
        &mut out,
    )
    .expect("left");
    // k 2 meets a row whose `w` fails the condition: both are padded.
    op.on_batch(
        1,
        rows(
            right,
            &[(Some(1), 3, 10), (Some(2), 4, 10), (Some(1), 9, 20)],
        ),
        &mut out,
    )
    .expect("right");
    op.on_watermark(8, &mut out).expect("watermark");
    assert_eq!(
        joined(&mut out),
        Vec::<String>::new(),
        "nothing before the end"
    );
    op.on_watermark(9, &mut out).expect("watermark");
    assert_eq!(
        joined(&mut out),
        ["1/3@10", "5/_@10", "7/_@10", "_/4@10"],
        "window 0..10 once the watermark reaches 9"
    );
    // A row of a window that fired is late, and set aside.
    op.on_batch(1, rows(right, &[(Some(1), 3, 10)]), &mut out)
        .expect("late");
    assert_eq!(out.drain_late().map(|b| b.num_rows()).sum::<usize>(), 1);
    op.on_watermark(crate::time::END_OF_TIME, &mut out)
        .expect("end");
    assert_eq!(joined(&mut out), ["2/9@20"]);
}

#[test]
fn windows_not_yet_fired_restore_at_another_parallelism() {
    let factory = factory(WindowJoinKind::Join(JoinKind::Inner), false);
    let mut op = factory.create(&context()).expect("operator");
    let (left, right) = (&factory.schemas[0], &factory.schemas[1]);
    let keys: Vec<(Option<i64>, i64, i64)> = (0..20).map(|k| (Some(k), k, 10)).collect();
    let mut out = Output::default();
    op.on_batch(0, rows(left, &keys), &mut out).expect("left");
    op.on_batch(1, rows(right, &keys), &mut out).expect("right");
    let state = op.snapshot().expect("snapshot").expect("state");
    let tables: BTreeMap<String, Vec<RecordBatch>> = state
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.batches.clone()))
        .collect();
    let max = crate::exec::exchange::MAX_PARALLELISM;
    let mut all = Vec::new();
    for range in [0..max / 3, max / 3..max] {
        let mut restored = factory.create(&context()).expect("operator");
        restored
            .restore(RestoredState {
                tables: tables.clone(),
                watermark: state.watermark,
                key_groups: range,
            })
            .expect("restore");
        let mut out = Output::default();
        restored.on_watermark(9, &mut out).expect("watermark");
        all.extend(joined(&mut out));
    }
    all.sort();
    let mut expected: Vec<String> = (0..20).map(|k| format!("{k}/{k}@10")).collect();
    expected.sort();
    assert_eq!(all, expected, "every key joined once, by one subtask");
}
