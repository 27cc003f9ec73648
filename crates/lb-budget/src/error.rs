//! Errors of this crate.

/// A price table that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PriceTableError {
    /// The file could not be read.
    #[error("cannot read price table {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid JSON.
    #[error("invalid price table {path} at line {line} column {column}: {message}")]
    Json {
        /// The file.
        path: String,
        /// Line of the error, from 1.
        line: usize,
        /// Column of the error, from 1.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// The top level is not an object of model names.
    #[error(
        "invalid price table {path}: the top level must be an object mapping model names to prices"
    )]
    NotAnObject {
        /// The file.
        path: String,
    },
}

/// A budget setting that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct BudgetConfigError {
    /// Where in the config, e.g. `provider_budget_config.openai.time_period`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}
