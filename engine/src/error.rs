//! One error type for the engine, with variants that say whose fault it is.
//!
//! A job's author gets [`SluiceError::Parse`], [`SluiceError::Plan`] or
//! [`SluiceError::Config`] for problems in the job file; bad input data gets
//! [`SluiceError::Schema`] or [`SluiceError::Data`] naming the file or record;
//! storage and network trouble is [`SluiceError::Io`], the only kind a retry
//! may cure ([`SluiceError::is_retryable`]), and only when its cause says so
//! ([`may_heal`]): a refused connection or a throttled request may pass, a
//! missing file, a denied permission or a damaged page will not.
//!
//! Messages that quote input data quote at most [`PREVIEW_BYTES`] of it
//! ([`preview`]): one huge bad value must not become a huge message.

use std::error::Error;

use datafusion::error::DataFusionError;
use datafusion::object_store;
use datafusion::parquet::errors::ParquetError;

pub type Result<T, E = SluiceError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum SluiceError {
    /// The job file does not parse. The message starts with `file:line:column`.
    #[error("{0}")]
    Parse(String),
    /// The job parses but cannot be planned: unknown table, column, function,
    /// bad types, or a construct Sluice does not support.
    #[error("{0}")]
    Plan(String),
    /// A connector option, job variable or command-line setting is wrong.
    #[error("{0}")]
    Config(String),
    /// Input data does not fit the declared table (a file's column is missing
    /// or has an incompatible type).
    #[error("{0}")]
    Schema(String),
    /// A record or file could not be decoded.
    #[error("{0}")]
    Data(String),
    /// Storage or network trouble. `retryable` says whether it may go away
    /// on retry, decided from the cause when the error is made.
    ///
    /// The cause is part of the message rather than a `source()`: the
    /// causes' own messages already carry their chains, and reporting both
    /// would say everything twice.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: Box<dyn Error + Send + Sync>,
        retryable: bool,
    },
    /// An error raised while evaluating expressions or aggregates.
    #[error("{context}: {cause}")]
    Execution {
        context: String,
        cause: DataFusionError,
    },
    /// The runtime itself failed (a subtask panicked or a channel closed early).
    #[error("{0}")]
    Runtime(String),
}

impl SluiceError {
    pub fn plan(message: impl Into<String>) -> Self {
        Self::Plan(message.into())
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::Config(message.into())
    }

    /// Storage or network trouble while `context`; whether a retry may
    /// help is read from the cause ([`may_heal`]).
    pub fn io(context: impl Into<String>, source: impl Error + Send + Sync + 'static) -> Self {
        let retryable = may_heal(&source);
        Self::Io {
            context: context.into(),
            cause: Box::new(source),
            retryable,
        }
    }

    /// Whether retrying the same work may succeed (a store or broker hiccup),
    /// as opposed to an error in the job, the data or the permissions that
    /// will recur.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Io {
                retryable: true,
                ..
            }
        )
    }
}

/// Whether an I/O failure may heal if the same work is tried again.
///
/// The cause's chain is read from the outside in, and the first link that
/// tells decides: an `std::io::ErrorKind`, an `object_store` error other
/// than `Generic`, a Parquet error other than the store's (decoding and
/// decompressing are about the data), an Arrow error not wrapping another,
/// or a `SluiceError`. A chain in which nothing tells
/// (an HTTP status from a cloud store, a broker's error code) is taken as
/// transient: such errors come from networks and services that recover, and
/// giving up on a job a retry would have saved costs more than three
/// needless retries.
pub fn may_heal(cause: &(dyn Error + 'static)) -> bool {
    let mut link = Some(cause);
    while let Some(e) = link {
        if let Some(verdict) = link_verdict(e) {
            return verdict;
        }
        link = match e.downcast_ref::<std::io::Error>() {
            // An `io::Error`'s `source()` skips the error it wraps.
            Some(io) => io.get_ref().map(|inner| inner as &(dyn Error + 'static)),
            None => e.source(),
        };
    }
    true
}

/// What one link of a cause's chain says about healing, if anything.
fn link_verdict(e: &(dyn Error + 'static)) -> Option<bool> {
    if let Some(e) = e.downcast_ref::<std::io::Error>() {
        return io_kind_heals(e.kind());
    }
    if let Some(e) = e.downcast_ref::<object_store::Error>() {
        // `Generic` wraps what the store's client reported: look inside.
        // Every other variant is a verdict on the request itself (not
        // found, denied, unauthenticated, unsupported, a bad path).
        return match e {
            object_store::Error::Generic { .. } => None,
            _ => Some(false),
        };
    }
    if let Some(e) = e.downcast_ref::<ParquetError>() {
        // Parquet wraps in `External` both the store's errors (fetching
        // bytes) and the decompressors' (damaged pages, often a bare
        // `io::Error`): only the first may pass.
        return match e {
            ParquetError::External(inner) if inner.is::<object_store::Error>() => None,
            _ => Some(false),
        };
    }
    if let Some(e) = e.downcast_ref::<arrow::error::ArrowError>() {
        return match e {
            arrow::error::ArrowError::IoError(..) | arrow::error::ArrowError::ExternalError(_) => {
                None
            }
            _ => Some(false),
        };
    }
    if let Some(e) = e.downcast_ref::<DataFusionError>() {
        return match e {
            DataFusionError::NotImplemented(_)
            | DataFusionError::Internal(_)
            | DataFusionError::Configuration(_)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::SQL(..)
            | DataFusionError::Execution(_)
            | DataFusionError::ResourcesExhausted(_)
            | DataFusionError::Substrait(_) => Some(false),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<SluiceError>() {
        return Some(e.is_retryable());
    }
    None
}

/// Whether an I/O error of this kind may pass: network trouble, timeouts
/// and busy resources may; missing files, denied permissions, bad data and
/// a full disk will not. `None` for kinds that say nothing (`Other`).
fn io_kind_heals(kind: std::io::ErrorKind) -> Option<bool> {
    use std::io::ErrorKind::*;
    match kind {
        ConnectionRefused
        | ConnectionReset
        | ConnectionAborted
        | NotConnected
        | HostUnreachable
        | NetworkUnreachable
        | NetworkDown
        | BrokenPipe
        | AddrInUse
        | AddrNotAvailable
        | TimedOut
        | Interrupted
        | WouldBlock
        | ResourceBusy
        | StaleNetworkFileHandle => Some(true),
        NotFound | PermissionDenied | AlreadyExists | InvalidInput | InvalidData
        | UnexpectedEof | WriteZero | Unsupported | OutOfMemory | NotADirectory | IsADirectory
        | DirectoryNotEmpty | ReadOnlyFilesystem | StorageFull | QuotaExceeded | FileTooLarge
        | NotSeekable | InvalidFilename | TooManyLinks | CrossesDevices | ExecutableFileBusy
        | Deadlock | ArgumentListTooLong => Some(false),
        _ => None,
    }
}

/// Bytes of input data an error message quotes at most.
pub const PREVIEW_BYTES: usize = 256;

/// `text` as an error message may quote it: whole if short, else its
/// first [`PREVIEW_BYTES`] bytes, cut at a character's boundary, followed
/// by `… (N bytes)`. Control characters become spaces, so that a quoted
/// value cannot break a log line.
pub fn preview(text: &str) -> String {
    let mut end = text.len().min(PREVIEW_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    shown(&text[..end], end < text.len(), text.len())
}

/// [`preview`] of raw bytes, which need not be UTF-8 (bytes that are not
/// show as U+FFFD).
pub fn preview_bytes(value: &[u8]) -> String {
    let mut head = &value[..value.len().min(PREVIEW_BYTES)];
    let cut = head.len() < value.len();
    // A character the cut split in two is left out, not shown as U+FFFD.
    if let Err(e) = std::str::from_utf8(head)
        && cut
        && e.error_len().is_none()
    {
        head = &head[..e.valid_up_to()];
    }
    shown(&String::from_utf8_lossy(head), cut, value.len())
}

fn shown(head: &str, cut: bool, total: usize) -> String {
    let head: String = head
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if cut {
        format!("{head}… ({total} bytes)")
    } else {
        head
    }
}

/// Adds context to a DataFusion or Arrow error raised while executing.
pub trait ExecContext<T> {
    fn exec_context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> ExecContext<T> for std::result::Result<T, DataFusionError> {
    fn exec_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|cause| SluiceError::Execution {
            context: context(),
            cause,
        })
    }
}

impl<T> ExecContext<T> for std::result::Result<T, arrow::error::ArrowError> {
    fn exec_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| SluiceError::Execution {
            context: context(),
            cause: DataFusionError::ArrowError(Box::new(e), None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    fn io(kind: ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "test")
    }

    fn store(source: impl Error + Send + Sync + 'static) -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source: Box::new(source),
        }
    }

    #[test]
    fn network_trouble_may_heal() {
        for kind in [
            ErrorKind::ConnectionRefused,
            ErrorKind::ConnectionReset,
            ErrorKind::TimedOut,
            ErrorKind::Interrupted,
            ErrorKind::NetworkUnreachable,
        ] {
            assert!(may_heal(&io(kind)), "{kind:?}");
            assert!(may_heal(&store(io(kind))), "{kind:?} inside a store error");
            assert!(
                SluiceError::io("reading", ParquetError::External(Box::new(store(io(kind)))))
                    .is_retryable(),
                "{kind:?} under Parquet"
            );
        }
    }

    #[test]
    fn missing_files_denied_permissions_and_bad_data_do_not() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::PermissionDenied,
            ErrorKind::InvalidData,
            ErrorKind::UnexpectedEof,
            ErrorKind::StorageFull,
            ErrorKind::ReadOnlyFilesystem,
            ErrorKind::NotADirectory,
        ] {
            assert!(!may_heal(&io(kind)), "{kind:?}");
            assert!(!may_heal(&store(io(kind))), "{kind:?} inside a store error");
            // An `io::Error` wrapping another is judged by the wrapped one.
            assert!(
                !may_heal(&std::io::Error::other(store(io(kind)))),
                "{kind:?} wrapped"
            );
        }
        let denied = object_store::Error::PermissionDenied {
            path: "a".into(),
            source: Box::new(io(ErrorKind::Other)),
        };
        assert!(!SluiceError::io("reading a", denied).is_retryable());
        let missing = object_store::Error::NotFound {
            path: "a".into(),
            source: Box::new(io(ErrorKind::TimedOut)),
        };
        assert!(!may_heal(&missing), "the variant decides, not its source");
        let unauthenticated = object_store::Error::Unauthenticated {
            path: "a".into(),
            source: Box::new(io(ErrorKind::Other)),
        };
        assert!(!may_heal(&unauthenticated));
        assert!(!may_heal(&ParquetError::General(
            "invalid page header".into()
        )));
        assert!(!may_heal(&ParquetError::EOF("truncated".into())));
        // A damaged compressed page, as zstd reports it.
        assert!(!may_heal(&ParquetError::External(Box::new(
            std::io::Error::other("Unknown frame descriptor")
        ))));
        assert!(!may_heal(&arrow::error::ArrowError::JsonError(
            "bad".into()
        )));
        assert!(!may_heal(&arrow::error::ArrowError::IoError(
            "writing".into(),
            io(ErrorKind::PermissionDenied)
        )));
        assert!(may_heal(&arrow::error::ArrowError::IoError(
            "writing".into(),
            io(ErrorKind::BrokenPipe)
        )));
        assert!(!may_heal(&DataFusionError::Plan("no".into())));
    }

    /// What nothing in the chain explains (an HTTP status, a broker's
    /// code, a bare message) counts as transient.
    #[test]
    fn an_unexplained_cause_may_heal() {
        assert!(may_heal(&std::io::Error::other("the store is unavailable")));
        assert!(may_heal(&store(std::fmt::Error)));
        assert!(SluiceError::io("x", SluiceError::io("y", io(ErrorKind::TimedOut))).is_retryable());
        assert!(!SluiceError::io("x", SluiceError::Data("bad".into())).is_retryable());
        assert!(!SluiceError::Data("bad".into()).is_retryable());
        assert!(!SluiceError::config("bad").is_retryable());
    }

    #[test]
    fn previews_are_capped_on_a_character_boundary() {
        assert_eq!(preview("short"), "short");
        assert_eq!(preview("a\nb\tc"), "a b c");
        let long = "é".repeat(PREVIEW_BYTES);
        let shown = preview(&long);
        assert!(
            shown.ends_with(&format!("… ({} bytes)", long.len())),
            "{shown}"
        );
        let head = shown.split('…').next().unwrap_or_default();
        assert_eq!(head.len(), PREVIEW_BYTES, "whole characters up to the cap");
        assert!(head.chars().all(|c| c == 'é'));
        let odd = format!("x{long}");
        let head = preview(&odd);
        let head = head.split('…').next().unwrap_or_default();
        assert_eq!(
            head.len(),
            PREVIEW_BYTES - 1,
            "a split character is left out"
        );

        assert_eq!(preview_bytes(b"ok\xff"), "ok\u{fffd}");
        let bytes = odd.as_bytes();
        let shown = preview_bytes(bytes);
        assert!(!shown.contains('\u{fffd}'), "{shown}");
        assert!(
            shown.ends_with(&format!("… ({} bytes)", bytes.len())),
            "{shown}"
        );
        assert!(shown.len() < PREVIEW_BYTES + 30);
    }
}
