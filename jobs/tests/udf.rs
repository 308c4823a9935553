//! Function libraries: opened once per job with its parameters, closed at the end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{AsArray, Int64Array};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use sluice::udf::{FunctionContext, FunctionLibrary};

/// Adds a configured offset; records its lifecycle.
#[derive(Default)]
struct Offsets {
    opened: AtomicUsize,
    closed: AtomicUsize,
    seen: Mutex<Option<String>>,
}

impl FunctionLibrary for Offsets {
    fn open(&self, context: &FunctionContext) -> sluice_engine::Result<Vec<Arc<ScalarUDF>>> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        let offset: i64 = context
            .parameters
            .get("offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        *self.seen.lock().expect("lock") = context.parameters.get("offset").cloned();
        Ok(vec![Arc::new(create_udf(
            "add_offset",
            vec![DataType::Int64],
            DataType::Int64,
            Volatility::Immutable,
            Arc::new(move |args: &[ColumnarValue]| {
                let values = args[0].to_array(1)?;
                let out: Int64Array = values
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| v.map(|v| v + offset))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }),
        ))])
    }

    fn close(&self) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_library_gets_job_parameters_and_is_closed_after_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    sluice::generate::game::generate(&input, 100, 1, 1, sluice::generate::FileFormat::Parquet)
        .expect("generate");
    let out = dir.path().join("out");
    let job = format!(
        "SET 'offset' = '1';\n\
         CREATE TABLE events (player_id BIGINT, event STRING) WITH ('connector' = 'filesystem', 'path' = '{}/events', 'format' = 'parquet');\n\
         CREATE TABLE o (shifted BIGINT, p STRING) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');\n\
         INSERT INTO o SELECT add_offset(player_id), job_param('offset') FROM events WHERE player_id = 3;",
        input.display(),
        out.display()
    );
    let library = Arc::new(Offsets::default());
    let spec = sluice::JobSpec::from_text("offsets.sql", &job)
        .with_var("offset", "1000")
        .with_library(Arc::clone(&library) as Arc<dyn FunctionLibrary>)
        .with_parallelism(2);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let result = runtime.block_on(sluice::run(&spec)).expect("run");
    assert!(result.rows_out > 0, "player 3 has events");
    assert_eq!(library.opened.load(Ordering::SeqCst), 1);
    assert_eq!(library.closed.load(Ordering::SeqCst), 1);
    assert_eq!(
        library.seen.lock().expect("lock").as_deref(),
        Some("1000"),
        "--set overrides SET"
    );

    let mut seen = 0;
    for entry in std::fs::read_dir(&out).expect("output") {
        let entry = entry.expect("entry");
        // Readers skip hidden names: `_SUCCESS`, staged parts.
        if entry.file_name().to_string_lossy().starts_with(['_', '.']) {
            continue;
        }
        let file = std::fs::File::open(entry.path()).expect("open");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .expect("parquet");
        for batch in reader {
            let batch = batch.expect("batch");
            let shifted = batch.column(0).as_primitive::<Int64Type>();
            let param = batch.column(1).as_string::<i32>();
            for i in 0..batch.num_rows() {
                assert_eq!(shifted.value(i), 1003);
                assert_eq!(param.value(i), "1000");
                seen += 1;
            }
        }
    }
    assert_eq!(seen as u64, result.rows_out);

    // A job that fails to plan closes what it opened, too.
    let bad = sluice::JobSpec::from_text("bad.sql", "INSERT INTO nowhere SELECT 1")
        .with_library(Arc::clone(&library) as Arc<dyn FunctionLibrary>);
    assert!(runtime.block_on(sluice::run(&bad)).is_err());
    assert_eq!(library.opened.load(Ordering::SeqCst), 2);
    assert_eq!(library.closed.load(Ordering::SeqCst), 2);
}
