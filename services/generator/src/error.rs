//! The generator service's one error type, mapped to a gRPC status in exactly one place.

/// Every failure of the generator service.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    /// The request is malformed; `field` names the offending field (e.g. `params.top_p`).
    #[error("invalid `{field}`: {reason}")]
    InvalidArgument {
        /// Proto field path.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A valid field the rest of the request rules out; `field` names it.
    #[error("`{field}`: {reason}")]
    FailedPrecondition {
        /// Proto field path.
        field: String,
        /// Why it cannot be served.
        reason: String,
    },
    /// The waiting queue is full; the caller should retry after a short wait.
    #[error("the generator is at capacity ({waiting} requests waiting); retry shortly")]
    Overloaded {
        /// Requests waiting.
        waiting: usize,
        /// Suggested wait before a retry, in milliseconds.
        retry_after_ms: u64,
    },
    /// A feature the request asks for is not available in this build.
    #[error("{0}")]
    Unimplemented(String),
    /// The model is not loaded yet, or the model thread has stopped.
    #[error("generator unavailable: {0}")]
    Unavailable(String),
    /// The model could not be loaded or failed on a valid request.
    #[error(transparent)]
    Model(#[from] memgpt_models::ModelError),
    /// Anything else that went wrong inside the service.
    #[error("internal error: {0}")]
    Internal(String),
}

impl GeneratorError {
    /// Shorthand for [`GeneratorError::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { field: field.into(), reason: reason.into() }
    }

    /// Shorthand for [`GeneratorError::FailedPrecondition`].
    pub fn precondition(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::FailedPrecondition { field: field.into(), reason: reason.into() }
    }
}

impl From<memgpt_server_kit::ServeError> for GeneratorError {
    fn from(err: memgpt_server_kit::ServeError) -> Self {
        match err {
            memgpt_server_kit::ServeError::Tls(reason) => Self::invalid("tls", reason),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<GeneratorError> for tonic::Status {
    fn from(err: GeneratorError) -> Self {
        let message = err.to_string();
        match err {
            GeneratorError::InvalidArgument { .. } => tonic::Status::invalid_argument(message),
            GeneratorError::FailedPrecondition { .. } => tonic::Status::failed_precondition(message),
            GeneratorError::Overloaded { retry_after_ms, .. } => {
                let mut status = tonic::Status::resource_exhausted(message);
                // A retry hint in the metadata, as gRPC's retry pushback does.
                if let Ok(value) = retry_after_ms.to_string().parse() {
                    status.metadata_mut().insert("grpc-retry-pushback-ms", value);
                }
                status
            }
            GeneratorError::Unimplemented(_) => tonic::Status::unimplemented(message),
            GeneratorError::Unavailable(_) => tonic::Status::unavailable(message),
            GeneratorError::Model(memgpt_models::ModelError::InvalidInput { .. }) => tonic::Status::invalid_argument(message),
            GeneratorError::Model(_) | GeneratorError::Internal(_) => tonic::Status::internal(message),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = GeneratorError> = std::result::Result<T, E>;
