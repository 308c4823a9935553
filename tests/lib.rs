//! Helpers for Sluice's workspace tests: reading what jobs wrote, and
//! formatting rows so results compare as sorted text.

use std::path::Path;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

pub mod case;
pub mod kafka;
pub mod mock;
pub mod reference;

/// Registers the tables `sluice gen nexmark` wrote under `dir` (`person`,
/// `auction`, `bid`, Parquet) with DataFusion, for reference answers.
pub async fn register_nexmark_files(
    ctx: &datafusion::prelude::SessionContext,
    dir: &Path,
) -> Result<(), String> {
    for table in ["person", "auction", "bid"] {
        let path = dir.join(table);
        let path = path
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
        ctx.register_parquet(
            table,
            path,
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await
        .map_err(|e| format!("registering {path}: {e}"))?;
    }
    Ok(())
}

/// Where `CREATE TABLE {table} (` starts in a job's text, and where its
/// closing `\n);` starts.
pub fn table_block(job: &str, table: &str) -> Result<(usize, usize), String> {
    let head = format!("CREATE TABLE {table} (");
    let start = job
        .find(&head)
        .ok_or_else(|| format!("no `{head}` in the job"))?;
    let end = start
        + job[start..]
            .find("\n);")
            .ok_or_else(|| format!("`{head}` does not end"))?;
    Ok((start, end))
}

/// A shipped job with its table `table` reading JSON-lines files instead of
/// Parquet in both modes (the table's `stream.` options, which switch it to
/// a topic, are dropped), cut into splits of `split_size` when given.
pub fn over_json_lines(job: &str, table: &str, split_size: Option<&str>) -> Result<String, String> {
    let (start, end) = table_block(job, table)?;
    let mut options: Vec<String> = job[start..end]
        .lines()
        .filter(|l| !l.trim_start().starts_with("'stream.") && !l.contains("In stream mode"))
        .map(|l| l.replace("'format' = 'parquet'", "'format' = 'json'"))
        .collect();
    if let Some(last) = options.last_mut() {
        *last = last.trim_end_matches(',').to_string();
        if let Some(size) = split_size {
            last.push_str(&format!(",\n  'source.split-size' = '{size}'"));
        }
    }
    Ok(format!(
        "{}{}{}",
        &job[..start],
        options.join("\n"),
        &job[end..]
    ))
}

/// Reads every visible Parquet file under `dir` (skipping `.`/`_` names, as
/// readers of Sluice's output do).
pub fn read_parquet_dir(dir: &Path) -> Result<Vec<RecordBatch>, String> {
    let mut batches = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(_) => return Ok(batches),
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.') && !n.starts_with('_'))
        })
        .collect();
    paths.sort();
    for path in paths {
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for batch in reader {
            batches.push(batch.map_err(|e| format!("{}: {e}", path.display()))?);
        }
    }
    Ok(batches)
}

/// Files under `dir` whose names mark them as staged (not yet committed).
pub fn staged_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Each row as `v1, v2, ...` (NULL for nulls), sorted.
pub fn sorted_rows(batches: &[RecordBatch]) -> Result<Vec<String>, String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        for row in 0..batch.num_rows() {
            let values: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            rows.push(values.join(", "));
        }
    }
    rows.sort();
    Ok(rows)
}

/// The final rows of the `debezium-json` changelog files in `dir` (rows of
/// `schema`): every create added, every delete taking back one equal row
/// created, sorted. A delete of a row never created is an error: an
/// updating result must only take back what it sent. (Order is not
/// checked: the files of several writers have none between them.)
pub fn changelog_rows(
    dir: &Path,
    schema: &arrow::datatypes::SchemaRef,
) -> Result<Vec<String>, String> {
    let (mut creates, mut deletes) = (String::new(), String::new());
    let mut lines = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for line in text.lines() {
            lines += 1;
            let record: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| format!("{}: {e}: {line}", path.display()))?;
            let (image, into) = match record["op"].as_str() {
                Some("c") => (&record["after"], &mut creates),
                Some("d") => (&record["before"], &mut deletes),
                _ => {
                    return Err(format!(
                        "{}: not a create or delete: {line}",
                        path.display()
                    ));
                }
            };
            if !image.is_object() {
                return Err(format!("{}: no row image: {line}", path.display()));
            }
            into.push_str(&image.to_string());
            into.push('\n');
        }
    }
    let decode = |text: &str| -> Result<Vec<String>, String> {
        let reader = arrow::json::ReaderBuilder::new(std::sync::Arc::clone(schema))
            .build(std::io::Cursor::new(text.as_bytes().to_vec()))
            .map_err(|e| e.to_string())?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        sorted_rows(&batches)
    };
    let mut rows = decode(&creates)?;
    for deleted in decode(&deletes)? {
        let at = rows.iter().position(|r| *r == deleted).ok_or_else(|| {
            format!(
                "{}: deletes `{deleted}`, which it never created ({lines} records)",
                dir.display()
            )
        })?;
        rows.remove(at);
    }
    Ok(rows)
}
