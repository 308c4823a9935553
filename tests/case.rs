//! Case files: SQL, input rows and expected output rows, run through the
//! real executor.
//!
//! ```text
//! # What the case shows.
//! input bid (auction BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
//! 1, 2026-01-01 00:00:01
//! ---                                   (starts the table's next file)
//! 2, 2026-01-01 00:00:12
//!
//! output counts (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT)
//! 1, 2026-01-01 00:00:00, 1
//!                                       (`output t (...) updating`: in stream
//!                                       mode a debezium-json changelog whose
//!                                       final rows are these)
//!
//! sql
//! INSERT INTO counts SELECT ... ;
//!
//! late 0                                (optional: rows behind the watermark)
//! late-data                             (optional: those rows, as the late-data
//! {"auction":1,"ts":"2026-01-01T00:00:02"}   output writes them: JSON lines)
//! error                                 (instead of output rows: a message part)
//! unknown column
//! ```
//!
//! Every case runs in every mode unless it says `modes: batch` with a
//! `reason:`, because batch and stream giving the same rows is Sluice's core
//! promise. In batch mode each input file is a Parquet file; in stream mode
//! each input table is a fresh topic on the test broker, each file one
//! partition of it, its rows JSON records, read with
//! `'scan.bounded.mode' = 'latest-offset'` so the stream ends. Outputs are
//! Parquet files in both modes and must hold the same rows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use sluice_engine::sql::{JobStatement, Mode, parse_job};

/// A parsed case file.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub modes: Vec<Mode>,
    pub parallelism: Vec<usize>,
    pub inputs: Vec<Table>,
    pub outputs: Vec<Table>,
    pub sql: String,
    pub error: Option<String>,
    pub late: Option<u64>,
    /// Expected late-data output, as JSON lines.
    pub late_data: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    /// The column list as DDL, watermark included.
    pub columns: String,
    /// Rows as written, one inner list per file.
    pub files: Vec<Vec<String>>,
    /// An output whose rows update in stream mode (`output t (...)
    /// updating`): there it is written as a `debezium-json` changelog, and
    /// its final rows are what the changelog leaves.
    pub updating: bool,
}

impl Case {
    pub fn parse(name: &str, text: &str) -> Result<Self, String> {
        let mut case = Case {
            name: name.to_string(),
            modes: vec![Mode::Batch, Mode::Stream],
            parallelism: vec![1, 2],
            inputs: Vec::new(),
            outputs: Vec::new(),
            sql: String::new(),
            error: None,
            late: None,
            late_data: None,
        };
        let mut reason = None;
        enum Section {
            None,
            Input,
            Output,
            Sql,
            Error,
            LateData,
        }
        let mut section = Section::None;
        for (n, line) in text.lines().enumerate() {
            let at = |m: &str| format!("{name}:{}: {m}", n + 1);
            let trimmed = line.trim();
            if let Some(rest) = trimmed.strip_prefix("modes:") {
                case.modes = rest
                    .split([',', ' '])
                    .filter(|m| !m.is_empty())
                    .map(|m| m.parse().map_err(|e| at(&format!("{e}"))))
                    .collect::<Result<_, _>>()?;
            } else if let Some(rest) = trimmed.strip_prefix("reason:") {
                reason = Some(rest.trim().to_string());
            } else if let Some(rest) = trimmed.strip_prefix("parallelism:") {
                case.parallelism = rest
                    .split([',', ' '])
                    .filter(|p| !p.is_empty())
                    .map(|p| p.parse().map_err(|_| at("parallelism must be numbers")))
                    .collect::<Result<_, _>>()?;
            } else if let Some(rest) = line.strip_prefix("input ") {
                case.inputs
                    .push(table_header(rest).ok_or_else(|| at("expected `input name (columns)`"))?);
                section = Section::Input;
            } else if let Some(rest) = line.strip_prefix("output ") {
                case.outputs.push(
                    table_header(rest).ok_or_else(|| at("expected `output name (columns)`"))?,
                );
                section = Section::Output;
            } else if trimmed == "sql" && !line.starts_with(' ') {
                section = Section::Sql;
            } else if trimmed == "error" && !line.starts_with(' ') {
                section = Section::Error;
                case.error = Some(String::new());
            } else if trimmed == "late-data" && !line.starts_with(' ') {
                section = Section::LateData;
                case.late_data = Some(Vec::new());
            } else if let Some(rest) = line.strip_prefix("late ") {
                case.late = Some(rest.trim().parse().map_err(|_| at("late takes a number"))?);
                section = Section::None;
            } else {
                match section {
                    Section::Sql => {
                        case.sql.push_str(line);
                        case.sql.push('\n');
                    }
                    Section::Error if !trimmed.is_empty() => {
                        let e = case.error.get_or_insert_default();
                        if !e.is_empty() {
                            e.push(' ');
                        }
                        e.push_str(trimmed);
                    }
                    Section::LateData if !trimmed.is_empty() => {
                        case.late_data
                            .get_or_insert_default()
                            .push(trimmed.to_string());
                    }
                    Section::Input | Section::Output
                        if !trimmed.is_empty() && !trimmed.starts_with('#') =>
                    {
                        let table = match section {
                            Section::Input => case.inputs.last_mut(),
                            _ => case.outputs.last_mut(),
                        }
                        .ok_or_else(|| at("rows before a table header"))?;
                        if trimmed == "---" {
                            table.files.push(Vec::new());
                        } else {
                            table
                                .files
                                .last_mut()
                                .ok_or_else(|| at("no file"))?
                                .push(trimmed.to_string());
                        }
                    }
                    _ if trimmed.is_empty() || trimmed.starts_with('#') => {}
                    _ => return Err(at(&format!("unexpected line `{trimmed}`"))),
                }
            }
        }
        if case.sql.trim().is_empty() {
            return Err(format!("{name}: no `sql` section"));
        }
        if case.error.as_deref() == Some("") {
            return Err(format!(
                "{name}: the `error` section is empty, so it would match any error: write the part of the message the case expects"
            ));
        }
        let all = [Mode::Batch, Mode::Stream];
        if all.iter().any(|m| !case.modes.contains(m)) && reason.is_none() {
            return Err(format!(
                "{name}: a case that skips a mode must say why with `reason:` (batch and stream must agree)"
            ));
        }
        Ok(case)
    }

    /// Runs the case once; `Err` describes how it failed.
    pub fn run(&self, mode: Mode, parallelism: usize, dir: &Path) -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let mut job = String::new();
        for input in &self.inputs {
            let schema = schema_of(input)?;
            let batches = input
                .files
                .iter()
                .map(|rows| parse_rows(&schema, rows))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("input {}: {e}", input.name))?;
            let with = match mode {
                Mode::Batch => {
                    let table_dir = dir.join("in").join(&input.name);
                    std::fs::create_dir_all(&table_dir).map_err(|e| e.to_string())?;
                    for (i, batch) in batches.iter().enumerate() {
                        write_parquet(&table_dir.join(format!("part-{i}.parquet")), batch)?;
                    }
                    format!(
                        "'connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet'",
                        table_dir.display()
                    )
                }
                Mode::Stream => {
                    let topic = runtime.block_on(produce_files(&self.name, &batches))?;
                    format!(
                        "'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{}', \
                         'format' = 'json', 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'",
                        crate::kafka::brokers()?
                    )
                }
            };
            job.push_str(&format!(
                "CREATE TABLE {} ({}) WITH ({with});\n",
                input.name, input.columns
            ));
        }
        for output in &self.outputs {
            let format = match (mode, output.updating) {
                (Mode::Stream, true) => "debezium-json",
                _ => "parquet",
            };
            job.push_str(&format!(
                "CREATE TABLE {} ({}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = '{format}');\n",
                output.name,
                output.columns,
                dir.join("out").join(&output.name).display()
            ));
        }
        if self.late_data.is_some() {
            job.push_str(&format!(
                "SET 'sluice.late-data.path' = '{}';\n",
                dir.join("late").display()
            ));
        }
        let header_lines = job.lines().count();
        job.push_str(&self.sql);
        let spec = sluice::JobSpec::from_text(&format!("{}.sql", self.name), &job)
            .with_mode(mode)
            .with_parallelism(parallelism);
        // Both modes take checkpoints all the time: barriers flowing and
        // aligning through the graph, and sinks rolling their files at each,
        // must not change a single row.
        let spec = spec.with_checkpoint_interval(std::time::Duration::from_millis(10));
        let result = runtime.block_on(sluice::run(&spec));
        match (&self.error, result) {
            (Some(expected), Err(e)) => {
                let message = e.to_string();
                if message.contains(expected.as_str()) {
                    Ok(())
                } else {
                    Err(format!(
                        "expected an error containing\n  {expected}\nbut got\n  {message}"
                    ))
                }
            }
            (Some(expected), Ok(_)) => Err(format!(
                "expected an error containing `{expected}`, but the job ran"
            )),
            (None, Err(e)) => Err(format!(
                "the job failed: {e}\n(the case's sql starts at line {} of the generated job)",
                header_lines + 1
            )),
            (None, Ok(result)) => {
                // An empty input can end before the first checkpoint is due.
                let has_rows = self
                    .inputs
                    .iter()
                    .any(|t| t.files.iter().any(|f| !f.is_empty()));
                if mode == Mode::Stream && has_rows && result.checkpoints.is_empty() {
                    return Err("the stream run completed no checkpoint".to_string());
                }
                if let Some(late) = self.late
                    && result.late_rows != late
                {
                    return Err(format!(
                        "expected {late} late rows, counted {}",
                        result.late_rows
                    ));
                }
                if let Some(expected) = &self.late_data {
                    let mut actual = read_lines(&dir.join("late"))?;
                    actual.sort();
                    let mut expected = expected.clone();
                    expected.sort();
                    if actual != expected {
                        return Err(format!(
                            "late data differs\n--- expected\n{}\n--- actual\n{}",
                            expected.join("\n"),
                            actual.join("\n")
                        ));
                    }
                }
                for output in &self.outputs {
                    let out_dir = dir.join("out").join(&output.name);
                    let staged = crate::staged_files(&out_dir);
                    if !staged.is_empty() {
                        return Err(format!(
                            "{}: staged files left uncommitted: {staged:?}",
                            output.name
                        ));
                    }
                    let schema = schema_of(output)?;
                    let actual = if mode == Mode::Stream && output.updating {
                        crate::changelog_rows(&out_dir, &schema)?
                    } else {
                        // Rows compare as text, where an INT passes for a
                        // BIGINT and a DOUBLE for a DECIMAL: the files'
                        // types must be the declared ones.
                        for (file, written) in parquet_schemas(&out_dir)? {
                            same_columns(&schema, &written)
                                .map_err(|e| format!("{}: {file}: {e}", output.name))?;
                        }
                        crate::sorted_rows(&crate::read_parquet_dir(&out_dir)?)?
                    };
                    let rows: Vec<String> = output.files.concat();
                    let expected = crate::sorted_rows(&[parse_rows(&schema, &rows)
                        .map_err(|e| format!("expected rows of {}: {e}", output.name))?])?;
                    if actual != expected {
                        return Err(format!(
                            "{}: rows differ\n--- expected ({})\n{}\n--- actual ({})\n{}",
                            output.name,
                            expected.len(),
                            expected.join("\n"),
                            actual.len(),
                            actual.join("\n")
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

/// The `*.case` files in `dir`, sorted; an error when the directory cannot
/// be read or holds none, so that a suite that finds no cases fails rather
/// than passes.
pub fn case_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let unreadable =
        |e: std::io::Error| format!("cannot read the cases directory {}: {e}", dir.display());
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if path.extension().is_some_and(|e| e == "case") {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(format!("no *.case files in {}", dir.display()));
    }
    paths.sort();
    Ok(paths)
}

/// The Arrow schema of every visible Parquet file in `dir`, with its name.
fn parquet_schemas(dir: &Path) -> Result<Vec<(String, SchemaRef)>, String> {
    let mut schemas = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(schemas);
    };
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let file = std::fs::File::open(entry.path()).map_err(|e| format!("{name}: {e}"))?;
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| format!("{name}: {e}"))?;
        schemas.push((name, Arc::clone(builder.schema())));
    }
    Ok(schemas)
}

/// Whether a file's columns have the declared names and types, in order
/// (nullability aside: a NOT NULL column may be written as nullable).
fn same_columns(declared: &Schema, written: &Schema) -> Result<(), String> {
    let names = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same = declared.fields().len() == written.fields().len()
        && declared
            .fields()
            .iter()
            .zip(written.fields())
            .all(|(d, w)| d.name() == w.name() && same_type(d.data_type(), w.data_type()));
    if same {
        Ok(())
    } else {
        Err(format!(
            "the file's columns are ({}) but the table declares ({})",
            names(written),
            names(declared)
        ))
    }
}

fn same_type(declared: &DataType, written: &DataType) -> bool {
    match (declared, written) {
        (DataType::Struct(d), DataType::Struct(w)) => {
            d.len() == w.len()
                && d.iter()
                    .zip(w.iter())
                    .all(|(d, w)| d.name() == w.name() && same_type(d.data_type(), w.data_type()))
        }
        _ => declared == written,
    }
}

/// The lines of every visible file in `dir`.
fn read_lines(dir: &Path) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).map_err(|e| e.to_string())?;
            lines.extend(text.lines().map(str::to_string));
        }
    }
    Ok(lines)
}

fn table_header(rest: &str) -> Option<Table> {
    let (name, columns) = rest.split_once('(')?;
    let (columns, updating) = match columns.trim().strip_suffix(UPDATING) {
        Some(columns) => (columns.trim_end(), true),
        None => (columns.trim(), false),
    };
    let columns = columns.strip_suffix(')')?;
    Some(Table {
        name: name.trim().to_string(),
        columns: columns.to_string(),
        files: vec![Vec::new()],
        updating,
    })
}

/// Ends an output's header whose rows update in stream mode.
const UPDATING: &str = "updating";

/// The Arrow schema of a table's DDL column list (watermark aside).
fn schema_of(table: &Table) -> Result<SchemaRef, String> {
    let ddl = format!("CREATE TABLE {} ({})", table.name, table.columns);
    let job = parse_job("case", &ddl, &|_| None).map_err(|e| e.to_string())?;
    match job.statements.first() {
        Some(JobStatement::CreateTable(t)) => {
            sluice_engine::sql::catalog::table_schema(&t.item).map_err(|e| e.to_string())
        }
        _ => Err("not a table".to_string()),
    }
}

/// Parses rows written as comma-separated values (`NULL` for null).
fn parse_rows(schema: &SchemaRef, rows: &[String]) -> Result<RecordBatch, String> {
    let mut text = String::new();
    for row in rows {
        if row.contains('"') {
            text.push_str(row);
        } else {
            let fields: Vec<&str> = row.split(',').map(str::trim).collect();
            text.push_str(&fields.join(","));
        }
        text.push('\n');
    }
    // Declared NOT NULL or not, expected rows may hold anything: read leniently.
    let lenient = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let mut reader = arrow::csv::ReaderBuilder::new(Arc::clone(&lenient))
        .with_header(false)
        .with_null_regex(regex::Regex::new("^NULL$").map_err(|e| e.to_string())?)
        .build(std::io::Cursor::new(text))
        .map_err(|e| e.to_string())?;
    let mut batches = Vec::new();
    for batch in &mut reader {
        batches.push(batch.map_err(|e| e.to_string())?);
    }
    let batch = arrow::compute::concat_batches(&lenient, &batches).map_err(|e| e.to_string())?;
    RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec()).map_err(|e| e.to_string())
}

/// Writes each batch's rows as JSON records to its own partition of a new
/// topic; returns the topic.
async fn produce_files(case: &str, batches: &[RecordBatch]) -> Result<String, String> {
    let topic =
        crate::kafka::new_topic(&format!("case-{case}"), batches.len().max(1) as i32).await?;
    for (partition, batch) in batches.iter().enumerate() {
        let mut buffer = Vec::new();
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut buffer);
        writer.write(batch).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
        drop(writer);
        let values: Vec<Vec<u8>> = buffer
            .split(|b| *b == b'\n')
            .take(batch.num_rows())
            .map(<[u8]>::to_vec)
            .collect();
        crate::kafka::produce(&topic, partition as i32, &values).await?;
    }
    Ok(topic)
}

fn write_parquet(path: &PathBuf, batch: &RecordBatch) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)
        .map_err(|e| e.to_string())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{Field, TimeUnit};

    use super::*;

    fn declared(columns: &str) -> SchemaRef {
        schema_of(&Table {
            name: "o".to_string(),
            columns: columns.to_string(),
            files: Vec::new(),
            updating: false,
        })
        .expect("declared")
    }

    #[test]
    fn written_columns_must_have_the_declared_types() {
        let schema = declared("n BIGINT, amount DECIMAL(10, 2), ts TIMESTAMP(3), r ROW<a INT>");
        let written = |n: DataType, amount: DataType| {
            Schema::new(vec![
                Field::new("n", n, true),
                Field::new("amount", amount, true),
                Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
                Field::new(
                    "r",
                    DataType::Struct(vec![Field::new("a", DataType::Int32, false)].into()),
                    true,
                ),
            ])
        };
        assert_eq!(
            same_columns(
                &schema,
                &written(DataType::Int64, DataType::Decimal128(10, 2))
            ),
            Ok(())
        );
        let err = same_columns(
            &schema,
            &written(DataType::Int32, DataType::Decimal128(10, 2)),
        )
        .expect_err("an INT for a BIGINT");
        assert!(err.contains("n Int32"), "{err}");
        assert!(
            same_columns(&schema, &written(DataType::Int64, DataType::Float64)).is_err(),
            "a DOUBLE for a DECIMAL"
        );
        let renamed = Schema::new(vec![Field::new("m", DataType::Int64, true)]);
        assert!(same_columns(&declared("n BIGINT"), &renamed).is_err());
        assert!(same_columns(&declared("n BIGINT, x INT"), &renamed).is_err());
    }

    #[test]
    fn an_empty_error_section_is_refused() {
        let text = "input t (b BIGINT)\noutput o (b BIGINT)\n\nsql\nINSERT INTO o SELECT b FROM t;\n\nerror\n\n";
        let err = Case::parse("empty_error", text).expect_err("matches any error");
        assert!(err.contains("the `error` section is empty"), "{err}");
        let text = text.replace("error\n\n", "error\nColumn count\n");
        let case = Case::parse("error", &text).expect("parses");
        assert_eq!(case.error.as_deref(), Some("Column count"));
    }

    #[test]
    fn a_missing_or_empty_cases_directory_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        let err = case_files(&missing).expect_err("missing");
        assert!(err.contains("cannot read the cases directory"), "{err}");
        let err = case_files(dir.path()).expect_err("empty");
        assert!(err.contains("no *.case files"), "{err}");
        std::fs::write(dir.path().join("a.case"), "").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "").expect("write");
        assert_eq!(case_files(dir.path()), Ok(vec![dir.path().join("a.case")]));
    }
}
