//! Connector options of a table, resolved for the mode the job runs in.
//!
//! Options use Flink's names. An option prefixed `batch.` or `stream.`
//! applies only in that mode and overrides the unprefixed one. A table that
//! names a connector for one mode (`'stream.connector' = 'kafka'`) has, in
//! that mode, only the options prefixed for it: a job file can read Parquet
//! files in a backfill and a topic as a stream without edits. A connector
//! [takes](Options::take) the options it understands.
//!
//! Before any connector is built, the option names of every mode are checked
//! against what the connector knows ([`crate::connector::ConnectorRegistry::check_options`]),
//! so a typo in a `stream.` option fails a batch run too, naming the option
//! as written, its line and column, and the closest known name. Variables,
//! on the other hand, are needed only in the options of the mode that runs:
//! a batch run does not need the `${TOPIC}` of its `stream.topic`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Result, SluiceError};

/// Whether a table is read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Sink,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Source => "source",
            Self::Sink => "sink",
        })
    }
}

/// Batch (bounded inputs, results at the end) or stream (continuous).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Batch,
    Stream,
}

impl Mode {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Batch => "batch.",
            Self::Stream => "stream.",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Batch => "batch",
            Self::Stream => "stream",
        })
    }
}

impl FromStr for Mode {
    type Err = SluiceError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "batch" => Ok(Self::Batch),
            "stream" | "streaming" => Ok(Self::Stream),
            other => Err(SluiceError::config(format!(
                "unknown mode `{other}`: use `batch` or `stream`"
            ))),
        }
    }
}

/// One `'key' = 'value'` of a table's `WITH (...)`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenOption {
    pub key: String,
    /// The value, its variables replaced; as written when one is unset.
    pub value: String,
    /// Where the key is: `file:line:column`.
    pub at: String,
    /// Why the value's variables could not be replaced: an error only in
    /// the mode that uses the option.
    pub unresolved: Option<String>,
}

impl WrittenOption {
    /// An option written at `at`, its value complete.
    pub fn new(key: &str, value: &str, at: &str) -> Self {
        Self {
            key: key.to_string(),
            value: value.to_string(),
            at: at.to_string(),
            unresolved: None,
        }
    }
}

/// The options of one table in one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    table: String,
    values: BTreeMap<String, String>,
    /// Each option's name as written and where, for messages.
    origins: BTreeMap<String, (String, String)>,
}

impl Options {
    /// The options `mode` uses, by the name connectors know them: an option
    /// prefixed with the mode's `batch.` or `stream.` overrides the shared
    /// one, and the other mode's are left out. A table that names a
    /// connector for this mode (`'stream.connector'`) uses only the options
    /// prefixed for it.
    pub fn used(written: &[WrittenOption], mode: Mode) -> Vec<(String, &WrittenOption)> {
        let other = match mode {
            Mode::Batch => Mode::Stream.prefix(),
            Mode::Stream => Mode::Batch.prefix(),
        };
        let own_connector = written
            .iter()
            .any(|w| w.key.strip_prefix(mode.prefix()) == Some("connector"));
        let mut shared = BTreeMap::new();
        let mut overrides = BTreeMap::new();
        for w in written {
            if let Some(key) = w.key.strip_prefix(mode.prefix()) {
                overrides.insert(key.to_string(), w);
            } else if !w.key.starts_with(other) && !own_connector {
                shared.insert(w.key.clone(), w);
            }
        }
        shared.extend(overrides);
        shared.into_iter().collect()
    }

    /// Resolves the `WITH` options of `table` for `mode`. An option this
    /// mode uses must have all its variables set.
    pub fn resolve(table: &str, written: &[WrittenOption], mode: Mode) -> Result<Self> {
        let mut values = BTreeMap::new();
        let mut origins = BTreeMap::new();
        for (key, w) in Self::used(written, mode) {
            if let Some(why) = &w.unresolved {
                return Err(SluiceError::config(format!(
                    "{why} (table `{table}`, option '{}', used in {mode} mode)",
                    w.key
                )));
            }
            origins.insert(key.clone(), (w.key.clone(), w.at.clone()));
            values.insert(key, w.value.clone());
        }
        Ok(Self {
            table: table.to_string(),
            values,
            origins,
        })
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn peek(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Takes an optional option.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.values.remove(key)
    }

    /// Takes an option that must be there.
    pub fn require(&mut self, key: &str) -> Result<String> {
        self.take(key).ok_or_else(|| {
            SluiceError::config(format!(
                "table `{}`: option '{key}' is required",
                self.table
            ))
        })
    }

    /// Takes and parses an option, naming it when the value does not parse.
    pub fn take_parsed<T: FromStr>(&mut self, key: &str, expected: &str) -> Result<Option<T>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                SluiceError::config(format!(
                    "table `{}`: option '{key}' = '{v}' is not {expected}",
                    self.table
                ))
            }),
        }
    }

    /// Takes a duration such as `10s`, `500 ms`, `5 min` or `1h`.
    pub fn take_duration(&mut self, key: &str) -> Result<Option<Duration>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => parse_duration(&v).map(Some).ok_or_else(|| {
                SluiceError::config(format!(
                    "table `{}`: option '{key}' = '{v}' is not a duration (e.g. '10 s', '500 ms')",
                    self.table
                ))
            }),
        }
    }

    /// Takes a memory size such as `32mb`, `512 kb`, `1gb` or a bare number
    /// of bytes (Flink's MemorySize notation; units are powers of 1024).
    pub fn take_memory_size(&mut self, key: &str) -> Result<Option<u64>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => parse_memory_size(&v).map(Some).ok_or_else(|| {
                SluiceError::config(format!(
                    "table `{}`: option '{key}' = '{v}' is not a memory size (e.g. '32mb', '512kb')",
                    self.table
                ))
            }),
        }
    }

    /// Fails, naming it where it is written, if an option is left that the
    /// connector knows but did not take with the others given (a `csv.`
    /// option with `'format' = 'parquet'`). Options of the other role are
    /// left alone, as in Flink, where one table is read and written: a
    /// source passes over `sink.` options, a sink over `scan.` and
    /// `source.` ones.
    pub fn finish(self, connector: &str, role: Role) -> Result<()> {
        let other_role: &[&str] = match role {
            Role::Source => &["sink."],
            Role::Sink => &["scan.", "source."],
        };
        let Some(key) = self
            .values
            .keys()
            .find(|k| !other_role.iter().any(|p| k.starts_with(p)))
        else {
            return Ok(());
        };
        let (written, at) = self
            .origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| (key.clone(), String::new()));
        let at = if at.is_empty() {
            String::new()
        } else {
            format!("{at}: ")
        };
        Err(SluiceError::config(format!(
            "{at}table `{}`: option '{written}' has no effect: the '{connector}' {role} does not use it with the other options given (is it an option of another 'format'?); remove it",
            self.table
        )))
    }

    /// Takes every option under `prefix`, with the prefix removed.
    pub fn take_prefixed(&mut self, prefix: &str) -> BTreeMap<String, String> {
        let keys: Vec<String> = self
            .values
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                let v = self.values.remove(&k)?;
                Some((k[prefix.len()..].to_string(), v))
            })
            .collect()
    }
}

/// Parses `10s`, `10 s`, `500ms`, `2 min`, `1h`, `1 d`, or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let ms = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1e3,
        "m" | "min" | "mins" | "minute" | "minutes" => 60e3,
        "h" | "hour" | "hours" => 3_600e3,
        "d" | "day" | "days" => 86_400e3,
        _ => return None,
    };
    Some(Duration::from_secs_f64(number * ms / 1e3))
}

/// Parses `32mb`, `32 MB`, `512k`, `1gb`, `100b` or a bare number of bytes.
pub fn parse_memory_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 0,
        "k" | "kb" | "kibibytes" => 10,
        "m" | "mb" | "mebibytes" => 20,
        "g" | "gb" | "gibibytes" => 30,
        "t" | "tb" | "tebibytes" => 40,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written() -> Vec<WrittenOption> {
        [
            ("connector", "filesystem"),
            ("path", "/a"),
            ("batch.path", "/b"),
            ("stream.format", "json"),
        ]
        .iter()
        .map(|(k, v)| WrittenOption::new(k, v, "job.sql:1:1"))
        .collect()
    }

    #[test]
    fn mode_prefixes_override_and_filter() {
        let batch = Options::resolve("t", &written(), Mode::Batch).expect("batch");
        assert_eq!(batch.peek("connector"), Some("filesystem"));
        assert_eq!(batch.peek("path"), Some("/b"));
        assert_eq!(batch.peek("format"), None);
        let stream = Options::resolve("t", &written(), Mode::Stream).expect("stream");
        assert_eq!(stream.peek("connector"), Some("filesystem"));
        assert_eq!(stream.peek("path"), Some("/a"));
        assert_eq!(stream.peek("format"), Some("json"));
    }

    #[test]
    fn a_connector_of_its_own_brings_only_its_own_options() {
        let written: Vec<WrittenOption> = [
            ("connector", "filesystem"),
            ("path", "/data/bid"),
            ("format", "parquet"),
            ("stream.connector", "kafka"),
            ("stream.topic", "bids"),
            ("stream.format", "json"),
        ]
        .iter()
        .map(|(k, v)| WrittenOption::new(k, v, "job.sql:1:1"))
        .collect();
        let mut batch = Options::resolve("bid", &written, Mode::Batch).expect("batch");
        assert_eq!(batch.take("connector").as_deref(), Some("filesystem"));
        assert_eq!(batch.take("path").as_deref(), Some("/data/bid"));
        let mut stream = Options::resolve("bid", &written, Mode::Stream).expect("stream");
        assert_eq!(stream.take("connector").as_deref(), Some("kafka"));
        assert_eq!(stream.take("format").as_deref(), Some("json"));
        assert_eq!(stream.take("topic").as_deref(), Some("bids"));
        assert_eq!(
            stream.take("path"),
            None,
            "the files' options stay with the files"
        );
        assert_eq!(stream.take("connect.timeout"), None);
    }

    #[test]
    fn only_the_running_mode_needs_its_variables() {
        let mut written = written();
        written.push(WrittenOption {
            key: "stream.topic".into(),
            value: "${TOPIC}".into(),
            at: "job.sql:3:5".into(),
            unresolved: Some("job.sql:3:20: variable `TOPIC` is not set".into()),
        });
        assert!(Options::resolve("bids", &written, Mode::Batch).is_ok());
        let err = Options::resolve("bids", &written, Mode::Stream).expect_err("unset");
        assert_eq!(
            err.to_string(),
            "job.sql:3:20: variable `TOPIC` is not set (table `bids`, option 'stream.topic', used in stream mode)"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("500 ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2 min"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory_size("32mb"), Some(32 << 20));
        assert_eq!(parse_memory_size("512 KB"), Some(512 << 10));
        assert_eq!(parse_memory_size("1g"), Some(1 << 30));
        assert_eq!(parse_memory_size("100"), Some(100));
        assert_eq!(parse_memory_size("1.5mb"), None);
        assert_eq!(parse_memory_size("big"), None);
        assert_eq!(parse_memory_size("99999999999tb"), None, "overflow");
    }
}
