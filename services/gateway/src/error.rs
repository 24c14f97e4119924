//! The gateway's one error type, mapped to a gRPC status in exactly one place.

/// Every failure of the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed; `field` names the offending field.
    #[error("invalid `{field}`: {reason}")]
    InvalidArgument {
        /// Proto field path.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A valid field the rest of the request rules out (an extractive answer with no
    /// memories); `field` names it.
    #[error("`{field}`: {reason}")]
    FailedPrecondition {
        /// Proto field path.
        field: String,
        /// Why it cannot be served.
        reason: String,
    },
    /// No API key, or an unknown one.
    #[error("{0}")]
    Unauthenticated(String),
    /// The key may not use a namespace.
    #[error("{0}")]
    PermissionDenied(String),
    /// The key is over its request rate, or a queue is full.
    #[error("{message}")]
    Exhausted {
        /// What is exhausted.
        message: String,
        /// Suggested wait before a retry, in milliseconds.
        retry_after_ms: u64,
    },
    /// A stage did not finish within its deadline.
    #[error("the {stage} stage did not finish within {ms} ms")]
    Deadline {
        /// encode, retrieve, generate or write.
        stage: &'static str,
        /// The deadline.
        ms: u64,
    },
    /// No healthy endpoint of a backend.
    #[error("no healthy {0} endpoint")]
    Unavailable(&'static str),
    /// A backend answered with an error.
    #[error("{backend}: {status}")]
    Backend {
        /// memory or generator.
        backend: &'static str,
        /// Its answer.
        status: tonic::Status,
    },
    /// The encoder failed.
    #[error(transparent)]
    Model(#[from] memgpt_models::ModelError),
    /// Anything else.
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// Shorthand for [`GatewayError::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { field: field.into(), reason: reason.into() }
    }

    /// Shorthand for [`GatewayError::FailedPrecondition`].
    pub fn precondition(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::FailedPrecondition { field: field.into(), reason: reason.into() }
    }
}

impl From<memgpt_server_kit::ServeError> for GatewayError {
    fn from(err: memgpt_server_kit::ServeError) -> Self {
        match err {
            memgpt_server_kit::ServeError::Tls(reason) => Self::invalid("tls", reason),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<GatewayError> for tonic::Status {
    fn from(err: GatewayError) -> Self {
        let message = err.to_string();
        match err {
            GatewayError::InvalidArgument { .. } => tonic::Status::invalid_argument(message),
            GatewayError::FailedPrecondition { .. } => tonic::Status::failed_precondition(message),
            GatewayError::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            GatewayError::PermissionDenied(_) => tonic::Status::permission_denied(message),
            GatewayError::Exhausted { retry_after_ms, .. } => {
                let mut status = tonic::Status::resource_exhausted(message);
                if let Ok(v) = retry_after_ms.to_string().parse() {
                    status.metadata_mut().insert("grpc-retry-pushback-ms", v);
                }
                status
            }
            GatewayError::Deadline { .. } => tonic::Status::deadline_exceeded(message),
            GatewayError::Unavailable(_) => tonic::Status::unavailable(message),
            // A backend's verdict on the request keeps its code; its message gains the backend.
            GatewayError::Backend { status, .. } => tonic::Status::new(status.code(), message),
            GatewayError::Model(memgpt_models::ModelError::Overloaded(_)) => {
                tonic::Status::resource_exhausted(message)
            }
            GatewayError::Model(_) | GatewayError::Internal(_) => tonic::Status::internal(message),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = GatewayError> = std::result::Result<T, E>;
