//! One error type for the engine, with variants that say whose fault it is.
//!
//! A job's author gets [`SluiceError::Parse`], [`SluiceError::Plan`] or
//! [`SluiceError::Config`] for problems in the job file; bad input data gets
//! [`SluiceError::Schema`] or [`SluiceError::Data`] naming the file or record;
//! storage and network trouble is [`SluiceError::Io`], the one kind a retry may
//! cure ([`SluiceError::is_retryable`]).

use datafusion::error::DataFusionError;

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
    /// Storage or network trouble; may go away on retry.
    ///
    /// The cause is part of the message rather than a `source()`: the
    /// causes' own messages already carry their chains, and reporting both
    /// would say everything twice.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: Box<dyn std::error::Error + Send + Sync>,
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

    pub fn io(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Io {
            context: context.into(),
            cause: Box::new(source),
        }
    }

    /// Whether retrying the same work may succeed (a store or broker hiccup),
    /// as opposed to an error in the job or the data that will recur.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io { .. })
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
