//! Gateway errors as an OpenAI client expects them: the HTTP status, and
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::GatewayError;

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI's `type`: invalid_request_error, authentication_error, permission_error,
    /// not_found_error, rate_limit_error, server_error, timeout_error.
    pub kind: &'static str,
    /// OpenAI's `code`, where one fits (invalid_api_key, model_not_found, ...).
    pub code: Option<&'static str>,
    /// The offending field.
    pub param: Option<String>,
    /// What is wrong.
    pub message: String,
    /// Suggested wait before a retry.
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: Option<&'static str>, param: Option<String>, message: impl Into<String>) -> Self {
        Self { status, kind, code, param, message: message.into(), retry_after_ms: None }
    }

    /// 400: the request is malformed.
    pub fn invalid(param: Option<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", None, param, message)
    }

    /// 404: no such route.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", Some("not_found"), None, message)
    }

    /// 404: no such model, as OpenAI answers it.
    pub fn unknown_model(model: &str, known: &[String]) -> Self {
        let message = format!("The model `{model}` does not exist; this server has {}", known.join(", "));
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", Some("model_not_found"), Some("model".into()), message)
    }

    /// 413: the body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        let message = format!("the request body exceeds the limit of {limit} bytes");
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", Some("request_too_large"), None, message)
    }

    /// The body of the error, also sent as the last event of a broken stream.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl From<GatewayError> for ApiError {
    fn from(err: GatewayError) -> Self {
        let message = err.to_string();
        let retry_after_ms = match &err {
            GatewayError::Exhausted { retry_after_ms, .. } => Some(*retry_after_ms),
            _ => None,
        };
        let (status, kind, code, param) = match err {
            GatewayError::InvalidArgument { field, .. } => (StatusCode::BAD_REQUEST, "invalid_request_error", None, Some(field)),
            GatewayError::FailedPrecondition { field, .. } => (StatusCode::BAD_REQUEST, "invalid_request_error", Some("failed_precondition"), Some(field)),
            GatewayError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "authentication_error", Some("invalid_api_key"), None),
            GatewayError::PermissionDenied(_) => (StatusCode::FORBIDDEN, "permission_error", Some("permission_denied"), None),
            GatewayError::Exhausted { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", Some("rate_limit_exceeded"), None),
            GatewayError::Deadline { .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout_error", Some("timeout"), None),
            GatewayError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "server_error", Some("service_unavailable"), None),
            GatewayError::Backend { status, .. } => backend(status.code()),
            GatewayError::Model(memgpt_models::ModelError::Overloaded(_)) => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", Some("overloaded"), None),
            GatewayError::Model(_) | GatewayError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, None),
        };
        Self { status, kind, code, param, message, retry_after_ms }
    }
}

/// A backend's gRPC verdict as an HTTP status.
fn backend(code: tonic::Code) -> (StatusCode, &'static str, Option<&'static str>, Option<String>) {
    use tonic::Code;
    match code {
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => (StatusCode::BAD_REQUEST, "invalid_request_error", None, None),
        Code::NotFound => (StatusCode::NOT_FOUND, "not_found_error", None, None),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", Some("overloaded"), None),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "server_error", Some("service_unavailable"), None),
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "timeout_error", Some("timeout"), None),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "permission_error", None, None),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "authentication_error", None, None),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, None),
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        let (status_code, kind, code, _) = backend(status.code());
        // The gateway's own checks say "invalid `field`: reason" (a precondition "`field`: reason").
        let message = status.message();
        let param = message.strip_prefix("invalid `").or_else(|| message.strip_prefix('`')).and_then(|rest| rest.split_once('`')).map(|(field, _)| field.to_string());
        let retry_after_ms = status.metadata().get("grpc-retry-pushback-ms").and_then(|v| v.to_str().ok()?.parse().ok());
        Self { status: status_code, kind, code, param, message: status.message().to_string(), retry_after_ms }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(ms) = self.retry_after_ms {
            let headers = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).max(1).to_string()) {
                headers.insert(axum::http::header::RETRY_AFTER, v);
            }
            if let Ok(v) = HeaderValue::from_str(&ms.to_string()) {
                headers.insert("retry-after-ms", v);
            }
        }
        response
    }
}
