//! The memory service's one error type, mapped to a gRPC status in exactly one place.

use std::path::PathBuf;

/// Every failure of the memory service.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The request is malformed; `field` names the offending field (e.g. `records[3].vector`).
    #[error("invalid `{field}`: {reason}")]
    InvalidArgument {
        /// Proto field path.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Too many writes in flight; the caller should retry after a short wait.
    #[error("too many writes in flight (limit {limit}); retry shortly")]
    Overloaded {
        /// The configured in-flight write limit.
        limit: usize,
    },
    /// The store is not open yet, or the Qdrant cluster cannot be reached.
    #[error("vector store unavailable: {0}")]
    Unavailable(String),
    /// The data directory cannot be used as configured.
    #[error("data directory {}: {reason}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// The store failed while executing a valid request.
    #[error("vector store failure: {0}")]
    Store(String),
}

impl MemoryError {
    /// Shorthand for [`MemoryError::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { field: field.into(), reason: reason.into() }
    }

    /// Shorthand for [`MemoryError::Store`] from any displayable error.
    pub fn store(err: impl std::fmt::Display) -> Self {
        Self::Store(err.to_string())
    }
}

impl From<memgpt_server_kit::ServeError> for MemoryError {
    fn from(err: memgpt_server_kit::ServeError) -> Self {
        match err {
            memgpt_server_kit::ServeError::Tls(reason) => Self::invalid("tls", reason),
            other => Self::Store(other.to_string()),
        }
    }
}

impl From<MemoryError> for tonic::Status {
    fn from(err: MemoryError) -> Self {
        let message = err.to_string();
        match err {
            MemoryError::InvalidArgument { .. } => tonic::Status::invalid_argument(message),
            MemoryError::Overloaded { .. } => {
                let mut status = tonic::Status::resource_exhausted(message);
                // A retry hint in the metadata, as gRPC's retry pushback does.
                status.metadata_mut().insert("grpc-retry-pushback-ms", "100".parse().unwrap());
                status
            }
            MemoryError::Unavailable(_) => tonic::Status::unavailable(message),
            MemoryError::DataDir { .. } => tonic::Status::failed_precondition(message),
            MemoryError::Store(_) => tonic::Status::internal(message),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = MemoryError> = std::result::Result<T, E>;
