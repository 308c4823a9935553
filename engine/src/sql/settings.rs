//! Job settings: `SET 'key' = 'value'` statements.
//!
//! A setting Sluice reads is one of [`KNOWN`]; a job may also set its own
//! parameters for its functions to read (`job_param('key')`). Any other key
//! is most likely a typo (`'pipeline.nmae'`) or a Flink setting Sluice has
//! no use for, and either way the job would not do what its author meant:
//! [`check`] warns, naming the key and the closest known one.

use super::parser::Located;

/// The job's name: its checkpoints' directory and its summary's title.
pub const PIPELINE_NAME: &str = "pipeline.name";
/// Where rows behind the watermark go (a directory or object store URL).
pub const LATE_DATA_PATH: &str = "sluice.late-data.path";

/// Every setting Sluice reads.
pub const KNOWN: &[&str] = &[
    PIPELINE_NAME,
    LATE_DATA_PATH,
    crate::time::gate::MAX_FUTURE,
    crate::plan::translate::STATE_TTL,
];

/// Warns of a `SET` whose key Sluice does not read and that no function of
/// the job names; `job_text` holds the job's other statements, where a
/// `job_param('key')` would name it.
pub fn check(set: &Located<(String, String)>, job_text: &[String]) {
    let key = set.item.0.as_str();
    if KNOWN.contains(&key) {
        return;
    }
    let quoted = format!("'{key}'");
    if job_text.iter().any(|text| text.contains(&quoted)) {
        return;
    }
    let hint = match crate::suggest::closest(key, KNOWN.iter().copied()) {
        Some(known) => format!("; did you mean '{known}'?"),
        None => format!(
            " (Sluice reads {}; a job's own parameters are read with job_param('key'))",
            KNOWN
                .iter()
                .map(|k| format!("'{k}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    tracing::warn!(
        "{}:{}:{}: SET '{key}': Sluice does not use this setting{hint}",
        set.file,
        set.line,
        set.column
    );
}
