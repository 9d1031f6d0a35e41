//! The crate's one error type.

use datafusion::error::DataFusionError;

/// Everything that can go wrong in Tessera.
///
/// Errors name the thing that is wrong (a file, a parameter, a shape) so that a user can fix it.
/// At the DataFusion boundary they become [`DataFusionError::External`] (see the `From` impl).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file whose content does not match what it claims or what the user said.
    #[error("{path}: {message}")]
    Format {
        /// The file involved.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A bad dataset spec, option or shape given by the user.
    #[error("invalid dataset spec: {0}")]
    Spec(String),
    /// A bad UDF parameter or a UDF applied to the wrong input.
    #[error("{udf}: {message}")]
    Udf {
        /// The UDF's SQL name.
        udf: String,
        /// What is wrong.
        message: String,
    },
    /// A shape or size mismatch.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Something unsupported (a dtype, a layout).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The query was cancelled.
    #[error("the query was cancelled")]
    Cancelled,
    /// A cluster (Ballista scheduler or executor) failed to start or run.
    #[error("cluster: {0}")]
    Cluster(String),
    /// An error raised by DataFusion or Arrow.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// An error raised by Arrow.
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Result with Tessera's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A format error on `path`.
    pub fn format(path: impl std::fmt::Display, message: impl Into<String>) -> Self {
        Error::Format { path: path.to_string(), message: message.into() }
    }
    /// An I/O error on `path`.
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Error::Io { path: path.to_string(), source }
    }
    /// A UDF error.
    pub fn udf(udf: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Udf { udf: udf.into(), message: message.into() }
    }
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}
